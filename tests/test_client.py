"""The terminal client, driven as a user drives it: through pipes, a pseudo-terminal, and a
pseudo-terminal rendered by pyte (a VT100 emulator, so no system terminal program is needed).

Each test starts its own server (tests/conftest.py) on 127.0.0.1 and talks to the client from a
raw-socket peer. Every process started here is stopped by PID, and every wait is bounded.
No test here splits reads on purpose: the client frames with chat.protocol.LineDecoder, whose
every split point tests/test_protocol.py replays, and the server re-frames every line, so a
split towards the client cannot be forced without a fake server.

Promises (README.md "A two-terminal session" and after, docs/CLIENT.md) -> tests:

- defaults --host 127.0.0.1 --port 5555, --name asked
    -> test_defaults_match_the_original_client
- `--help` lists the options; a bad option is a usage error, status 2
    -> test_help_option_lists_the_options
    -> test_bad_option_is_a_usage_error_with_status_2
    -> test_bad_option_values_are_usage_errors
- `-v` debug log on stderr
    -> test_verbose_option_logs_debug_lines_on_stderr
- `chat-client` script runs the same client
    -> test_console_script_runs_the_same_client
- `--name` skips the question (neither the server's nor ours is shown); refused, you are asked
    -> test_name_option_skips_the_question
    -> test_accepted_name_option_shows_no_name_question_on_the_screen
    -> test_refused_name_option_falls_back_to_the_question
- a refused name: the reason, asked again
    -> test_terminal_asks_the_name_again_with_the_servers_reason
- the input line stays; messages print above it
    -> test_incoming_message_does_not_tear_the_line_being_typed
- own lines in the history as `you: ...`, `/msg` as `you -> NAME (private): ...`
    -> test_own_messages_are_shown_in_the_history_and_sent
    -> test_own_lines_show_messages_private_messages_and_commands_apart
- the client's own lines start `~ `, which no server line can
    -> test_client_and_own_lines_can_never_be_taken_for_a_server_line
    -> test_help_lists_the_commands
- notice cyan, error red, private magenta, names bold, own dim
    -> test_notices_errors_and_chat_are_styled_apart_on_colour_terminals
- NO_COLOR=1 or TERM=dumb: plain text
    -> test_no_color_turns_styling_off_on_a_terminal
    -> test_colour_only_on_a_terminal_and_never_with_no_color
- `text` reaches everyone else as `NAME: text`
    -> test_own_messages_are_shown_in_the_history_and_sent
    -> test_piped_lines_reach_others_and_end_of_input_leaves
- `/msg NAME text` reaches only NAME, shown as `you -> NAME (private): text`
    -> test_private_message_reaches_only_its_addressee_and_shows_in_the_history
- `/help`: the client's keys, then the server's commands
    -> test_help_lists_the_commands
- leave, /quit, Ctrl-D, Ctrl-C leave with status 0
    -> test_terminal_session_ends_cleanly_with_status_0
    -> test_ctrl_c_at_the_name_question_exits_0
    -> test_interrupt_signal_leaves_cleanly_with_status_0
- server unreachable or gone: one sentence, status 1
    -> test_refused_connection_exits_1_with_one_sentence
    -> test_refused_connection_on_a_terminal_exits_1
    -> test_server_going_away_exits_1_with_one_sentence
    -> test_terminal_client_says_when_the_server_goes_away_and_exits_1
- control characters made visible (`^[[2J`, `\\x9b`, `<U+202E>`, tabs)
    -> test_escape_sequences_become_visible_caret_forms and the four pure tests after it
    -> test_escape_sequence_from_another_user_never_reaches_the_terminal_raw
- nobody can clear, recolour or rewrite your screen
    -> test_escape_sequence_cannot_clear_or_colour_another_users_screen
    -> test_other_users_escapes_are_neutralised_even_inside_styled_lines
- piped: first line the name, lines sent, server lines printed safely, no colour
    -> test_piped_session_prints_the_welcome_and_exits_0
    -> test_piped_client_prints_what_others_send_safely
- piped: end of input leaves, status 0
    -> test_piped_lines_reach_others_and_end_of_input_leaves
    -> test_empty_input_leaves_at_once_with_status_0
- piped: `/quit` ends, later lines not sent
    -> test_quit_command_ends_a_piped_session_and_later_lines_are_not_sent
- piped: refused name, next line tried; input ends first: status 1, the reason printed once
    -> test_piped_refused_name_is_followed_by_the_next_line_as_name
    -> test_piped_refused_name_then_end_of_input_exits_1_with_the_reason_once
- piped: waits up to 2 s after leaving for lines in flight
    -> (none: needs a server that delays its close)
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pyte
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.client import (
    BIDI_CONTROLS,
    CLIENT_PREFIX,
    LOCAL_HELP,
    NO_NAME_ACCEPTED,
    SGR_BY_STYLE,
    SGR_RESET,
    format_client_line,
    format_own_line,
    format_server_line,
    parse_args,
    terminal_safe,
    wants_colour,
)
from chat.protocol import LineDecoder, encode_line, name_problem, parse_server_line
from harness import ServerProcess, free_port
from harness import start_chat_server as start_server

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 10.0
PIPE_RUN_TIMEOUT_S = 20.0
EVIL = "\x1b[2J\x1b[31mevil"
EVIL_VISIBLE = "^[[2J^[[31mevil"
# Our server refuses control characters in chat text (docs/PROTOCOL.md, "Text"), so end-to-end
# tests send what it still relays and a terminal must not obey: bidi controls that reorder the
# line. terminal_safe's handling of ESC and C1 controls, which other servers may relay, is tested
# on the function itself.
REORDERING = "\u202eesrever \u2066isolate\u2069"
REORDERING_VISIBLE = "<U+202E>esrever <U+2066>isolate<U+2069>"


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A server speaking English whatever the machine's locale, stopped by PID afterwards."""
    proc = start_server("--quiet", "--lang", "en")
    try:
        yield proc
    finally:
        proc.stop()


class Peer:
    """Another chat user on a raw socket, speaking the protocol by hand."""

    def __init__(self, address: tuple[str, int], name: str) -> None:
        self.sock = socket.create_connection(address, timeout=WAIT_S)
        self._decoder = LineDecoder(1 << 20)
        self._pending: list[str] = []
        self.send(name)
        self.expect(f"* welcome, {name}!")

    def send(self, text: str) -> None:
        self.sock.sendall(encode_line(text))

    def expect(self, fragment: str, timeout_s: float = WAIT_S) -> str:
        """Read lines until one contains `fragment`; return it."""
        deadline = time.monotonic() + timeout_s
        while True:
            while self._pending:
                line = self._pending.pop(0)
                if fragment in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"peer never received {fragment!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before {fragment!r}")
            self._pending += [bytes(x).decode() for x in self._decoder.feed(chunk)]

    def sync(self) -> None:
        """Return once the server has handled everything this peer sent before."""
        self.send("/who")
        self.expect("* online (")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peers() -> Iterator[Callable[[tuple[str, int], str], Peer]]:
    made: list[Peer] = []

    def make(address: tuple[str, int], name: str) -> Peer:
        made.append(Peer(address, name))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def client_args(port: int, *extra: str) -> list[str]:
    return ["-m", "chat.client", "--host", "127.0.0.1", "--port", str(port), *extra]


def client_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update({"LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}, **overrides)
    return env


def run_piped(port: int, stdin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The client with `stdin` piped in, run to completion (killed if it outlives the bound)."""
    return subprocess.run(
        [sys.executable, *client_args(port, *extra)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=client_env(),
        timeout=PIPE_RUN_TIMEOUT_S,
    )


@pytest.fixture
def popen_client() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start piped clients that stay open; each one is killed by PID at the end if still alive."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, *client_args(port, *extra)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=client_env(),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT_S)


@pytest.fixture
def pty_client() -> Iterator[Callable[..., pexpect.spawn]]:
    """Spawn clients on a pseudo-terminal, 24x100; closed (killed by PID if need be) afterwards."""
    started: list[pexpect.spawn] = []

    def spawn(port: int, *extra: str, **env: str) -> pexpect.spawn:
        # Nothing here answers prompt_toolkit's cursor position requests; `terminal` does.
        child = pexpect.spawn(
            sys.executable,
            client_args(port, *extra),
            cwd=str(REPO),
            env=client_env(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", **env),
            dimensions=(24, 100),
            timeout=WAIT_S,
        )
        child.logfile_read = io.BytesIO()
        started.append(child)
        return child

    yield spawn
    for child in started:
        child.close(force=True)


def pty_output(child: pexpect.spawn) -> bytes:
    return child.logfile_read.getvalue()


def exit_status(child: pexpect.spawn) -> int:
    """Wait for the child to end on its own (bounded) and return its exit status."""
    child.expect(pexpect.EOF, timeout=WAIT_S)
    child.close()
    assert child.signalstatus is None, f"killed by signal {child.signalstatus}"
    return child.exitstatus


class Terminal:
    """The client on a pseudo-terminal, its output rendered by pyte, a VT100 emulator: the screen
    a user would see, read as text and colours. pyte answers the cursor position requests that
    prompt_toolkit sends, as a real terminal does."""

    ROWS, COLUMNS = 24, 100

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(REPO),
            env=env,
            dimensions=(self.ROWS, self.COLUMNS),
            timeout=WAIT_S,
        )
        self.screen = pyte.Screen(self.COLUMNS, self.ROWS)
        self.screen.write_process_input = self._answer  # type: ignore[method-assign]
        self.stream = pyte.ByteStream(self.screen)

    def _answer(self, data: str) -> None:
        self.child.send(data.encode())

    def _pump(self, timeout_s: float) -> None:
        """Feed whatever the client wrote within `timeout_s` to the emulator."""
        with contextlib.suppress(pexpect.TIMEOUT):
            self.stream.feed(self.child.read_nonblocking(65536, timeout=timeout_s))

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> list[str]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            self._pump(0.05)
            if predicate(self.lines()):
                return self.lines()
        raise AssertionError(f"screen never showed {what}:\n" + "\n".join(self.lines()))

    def colours_of(self, row: int) -> set[str]:
        """The foreground colours used on screen row `row`."""
        return {char.fg for char in self.screen.buffer[row].values()}

    def type(self, text: str) -> None:
        self.child.send(text)

    def press_enter(self) -> None:
        self.child.send("\r")

    def close(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    """Start clients on an emulated terminal; each is closed (killed by PID) at the end."""
    started: list[Terminal] = []

    def start(port: int, *extra: str) -> Terminal:
        started.append(
            Terminal([sys.executable, *client_args(port, *extra)], client_env(TERM="xterm"))
        )
        return started[-1]

    yield start
    for term in started:
        term.close()


# --- showing other people's text safely (pure) --------------------------------------------------


def test_escape_sequences_become_visible_caret_forms() -> None:
    assert terminal_safe(EVIL) == EVIL_VISIBLE


def test_every_c0_and_c1_control_and_del_is_replaced() -> None:
    controls = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)]))
    shown = terminal_safe(controls)
    assert not any(unicodedata.category(ch) == "Cc" for ch in shown)
    assert "^[" in shown and "^M" in shown and "^?" in shown and "\\x9b" in shown


def test_bidi_overrides_are_made_visible() -> None:
    assert terminal_safe("abc\u202edef") == "abc<U+202E>def"


def test_tab_becomes_spaces() -> None:
    assert terminal_safe("a\tb") == "a    b"


def test_ordinary_text_in_any_script_passes_unchanged() -> None:
    text = "привет, 世界! émoji 👋 and right-to-left \u200fשלום"
    assert terminal_safe(text) == text


@given(st.text())
def test_safe_text_never_holds_a_control_character(text: str) -> None:
    shown = terminal_safe(text)
    assert not any(unicodedata.category(ch) == "Cc" for ch in shown)
    assert not any(ord(ch) in BIDI_CONTROLS for ch in shown)


def test_notices_errors_and_chat_are_styled_apart_on_colour_terminals() -> None:
    chat = format_server_line("alice: hi", colour=True)
    notice = format_server_line("* alice joined the chat", colour=True)
    error = format_server_line("! no such user: zed", colour=True)
    assert chat.endswith(": hi") and "\x1b[1malice" in chat
    assert notice == "\x1b[36m* alice joined the chat" + SGR_RESET
    assert error == "\x1b[1;31m! no such user: zed" + SGR_RESET
    private = format_server_line("alice (private): psst", colour=True)
    assert private == "\x1b[35malice (private)" + SGR_RESET + ": psst"
    assert format_own_line("hello", colour=True) == "\x1b[2myou: hello" + SGR_RESET


def test_without_colour_lines_are_shown_as_the_server_sent_them() -> None:
    for line in ("alice: hi", "bob (private): psst", "* alice joined", "! refused"):
        assert format_server_line(line, colour=False) == line
    assert format_own_line("hello", colour=False) == "you: hello"


def test_own_lines_show_messages_private_messages_and_commands_apart() -> None:
    assert format_own_line("/msg bob hi there", colour=False) == "you -> bob (private): hi there"
    assert format_own_line("//slash", colour=False) == "you: /slash"  # sent as a literal /
    assert format_own_line("/who", colour=False) == "/who"  # a command, not said to anyone
    assert format_own_line("/msg bob", colour=False) == "/msg bob"  # the server says the usage
    assert format_own_line("/msg bob hi", colour=True) == (
        "\x1b[2myou -> bob (private): hi" + SGR_RESET
    )


def test_client_and_own_lines_can_never_be_taken_for_a_server_line() -> None:
    assert name_problem(CLIENT_PREFIX.strip()) is not None  # no user can be called `~`
    client_lines = [format_client_line(line, colour=False) for line in LOCAL_HELP]
    assert all(line.startswith(CLIENT_PREFIX) for line in client_lines)
    assert format_client_line("x", colour=True) == "\x1b[33m~ x" + SGR_RESET
    for line in [*client_lines, format_own_line("/msg bob hi", colour=False)]:
        # Neither a chat line nor a notice or error the server sent: parsed, it is "unknown".
        parsed = parse_server_line(line)
        assert parsed.kind == "notice" and parsed.text == line, line


def test_other_users_escapes_are_neutralised_even_inside_styled_lines() -> None:
    line = format_server_line(f"mallory: {EVIL}", colour=True)
    assert EVIL_VISIBLE in line and "\x1b[2J" not in line


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    assert wants_colour({"TERM": "xterm"}, is_terminal=True)
    assert not wants_colour({"TERM": "xterm"}, is_terminal=False)
    assert not wants_colour({"TERM": "xterm", "NO_COLOR": "1"}, is_terminal=True)
    assert not wants_colour({"TERM": "dumb"}, is_terminal=True)


def test_defaults_match_the_original_client() -> None:
    args = parse_args([])
    assert (args.host, args.port, args.name) == ("127.0.0.1", 5555, None)


# --- plain line mode: pipes ---------------------------------------------------------------------


def test_piped_session_prints_the_welcome_and_exits_0(server: ServerProcess) -> None:
    result = run_piped(server.port, "alice\nhello\nleave\n")
    assert result.returncode == 0, result.stderr
    assert "* welcome, alice!" in result.stdout
    assert result.stderr == ""


def test_piped_lines_reach_others_and_end_of_input_leaves(server: ServerProcess, peers) -> None:
    bob = peers(server.address, "bob")
    result = run_piped(server.port, "alice\nhello bob\n")
    assert result.returncode == 0, result.stderr
    assert bob.expect("alice: hello bob") == "alice: hello bob"
    bob.expect("* alice left the chat")


def test_piped_client_prints_what_others_send_safely(
    server: ServerProcess, peers, popen_client
) -> None:
    bob = peers(server.address, "bob")
    alice = popen_client(server.port)
    alice.stdin.write("alice\n")
    alice.stdin.flush()
    bob.expect("* alice joined the chat")
    bob.send(f"hi {EVIL}")
    bob.expect("! line refused: control characters")  # the server itself keeps ESC out
    bob.send(f"hi {REORDERING}")
    bob.sync()
    out, err = alice.communicate("", timeout=PIPE_RUN_TIMEOUT_S)
    assert alice.returncode == 0, err
    assert f"bob: hi {REORDERING_VISIBLE}" in out.splitlines()
    assert "\x1b" not in out and "\u202e" not in out and "evil" not in out


def test_piped_refused_name_is_followed_by_the_next_line_as_name(
    server: ServerProcess, peers
) -> None:
    bob = peers(server.address, "alice")
    result = run_piped(server.port, "alice\nalice2\nhello\n")
    assert result.returncode == 0, result.stderr
    assert "! name refused: alice is taken, try another" in result.stdout
    assert "* welcome, alice2!" in result.stdout
    bob.expect("alice2: hello")


def test_piped_refused_name_then_end_of_input_exits_1_with_the_reason_once(
    server: ServerProcess, peers
) -> None:
    peers(server.address, "alice")
    result = run_piped(server.port, "alice\n")
    assert result.returncode == 1
    assert (result.stdout + result.stderr).count("alice is taken") == 1
    assert "! name refused: alice is taken, try another" in result.stdout.splitlines()
    assert result.stderr.strip() == NO_NAME_ACCEPTED


def test_name_option_skips_the_question(server: ServerProcess, peers) -> None:
    bob = peers(server.address, "bob")
    result = run_piped(server.port, "first line is a message\n", "--name", "carol")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("* welcome, carol!")  # no "send your name" before it
    assert "send your name" not in result.stdout
    bob.expect("carol: first line is a message")


def test_empty_input_leaves_at_once_with_status_0(server: ServerProcess) -> None:
    result = run_piped(server.port, "")
    assert result.returncode == 0, result.stderr


def test_quit_command_ends_a_piped_session_and_later_lines_are_not_sent(
    server: ServerProcess, peers
) -> None:
    bob = peers(server.address, "bob")
    result = run_piped(server.port, "alice\n/quit\nnot sent\n")
    assert result.returncode == 0, result.stderr
    bob.expect("* alice left the chat")
    bob.sync()  # had "not sent" been sent, it would have arrived before the /who answer


def test_server_going_away_exits_1_with_one_sentence(server: ServerProcess, popen_client) -> None:
    alice = popen_client(server.port, "--name", "alice")
    assert alice.stdout.readline().startswith("* welcome, alice!")  # the first line: no greeting
    server.stop()
    out, err = alice.communicate(timeout=PIPE_RUN_TIMEOUT_S)  # stdin stays open until now
    assert alice.returncode == 1
    assert err.strip() == "connection closed by the server"


def test_refused_connection_exits_1_with_one_sentence() -> None:
    port = free_port()
    result = run_piped(port, "alice\n")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)"
    )


def test_bad_option_is_a_usage_error_with_status_2() -> None:
    result = run_piped(5555, "", "--port", "99999")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "chat-client: error: argument --port: must be 1-65535, not 99999"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "argument --port: must be 1-65535, not 0"),
        (["--port", "-1"], "argument --port: must be 1-65535, not -1"),
        (["--port", "x"], "argument --port: not a port number: 'x'"),
        (["--host", " "], "argument --host: must not be empty"),
        (["--name", ""], "argument --name: must not be empty"),
        (["--name", "al\nice"], "argument --name: must be one line without control characters"),
        (["--name", "/quit"], "argument --name: '/quit' would leave the chat at once"),
    ],
)
def test_bad_option_values_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(args)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"chat-client: error: {message}"


def test_verbose_option_logs_debug_lines_on_stderr(server: ServerProcess) -> None:
    result = run_piped(server.port, "alice\n", "-v")
    assert result.returncode == 0
    assert f"chat-client: connected to 127.0.0.1:{server.port}" in result.stderr.splitlines()
    assert "* welcome, alice!" in result.stdout


def test_help_option_lists_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chat.client", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=PIPE_RUN_TIMEOUT_S,
    )
    assert result.returncode == 0
    for option in ("--host", "--port", "--name"):
        assert option in result.stdout


# --- a real terminal: pseudo-terminal via pexpect -----------------------------------------------


def test_terminal_asks_the_name_again_with_the_servers_reason(
    server: ServerProcess, peers, pty_client
) -> None:
    peers(server.address, "alice")
    child = pty_client(server.port)
    child.expect_exact("your name:")
    child.sendline("alice")
    child.expect_exact("name refused: alice is taken")
    child.expect_exact("your name:")
    child.sendline("bob")
    child.expect_exact("* welcome, bob!")


def test_own_messages_are_shown_in_the_history_and_sent(
    server: ServerProcess, peers, pty_client
) -> None:
    alice = peers(server.address, "alice")
    child = pty_client(server.port, "--name", "bob")
    child.expect_exact("* welcome, bob!")
    child.sendline("hello alice")
    child.expect_exact("you: hello alice")
    alice.expect("bob: hello alice")


def test_private_message_reaches_only_its_addressee_and_shows_in_the_history(
    server: ServerProcess, peers, pty_client
) -> None:
    alice = peers(server.address, "alice")
    carol = peers(server.address, "carol")
    child = pty_client(server.port, "--name", "bob")
    child.expect_exact("* welcome, bob!")
    carol.expect("* bob joined the chat")
    child.sendline("/msg alice psst")
    child.expect_exact("you -> alice (private): psst")
    assert alice.expect("psst") == "bob (private): psst"
    carol.send("/who")  # replies keep their order: had carol got "psst", it would come first
    assert carol.expect("").startswith("* online (")


def test_help_lists_the_commands(server: ServerProcess, pty_client) -> None:
    child = pty_client(server.port, "--name", "bob")
    child.expect_exact("* welcome, bob!")
    child.sendline("/help")
    child.expect_exact("~ Ctrl-D")  # the client's own keys first, then the server's command list
    child.expect_exact("/msg NAME text")


@pytest.mark.parametrize(
    ("how", "keys"),
    [("leave", "leave\r"), ("/quit", "/quit\r"), ("Ctrl-D", "\x04"), ("Ctrl-C", "\x03")],
)
def test_terminal_session_ends_cleanly_with_status_0(
    server: ServerProcess, peers, pty_client, how: str, keys: str
) -> None:
    alice = peers(server.address, "alice")
    child = pty_client(server.port, "--name", "bob")
    child.expect_exact("* welcome, bob!")
    child.expect_exact(">")
    child.send(keys)
    assert exit_status(child) == 0, how
    alice.expect("* bob left the chat")
    assert b"Traceback" not in pty_output(child)


def test_ctrl_c_at_the_name_question_exits_0(server: ServerProcess, pty_client) -> None:
    child = pty_client(server.port)
    child.expect_exact("your name:")
    child.sendcontrol("c")
    assert exit_status(child) == 0


def test_terminal_client_says_when_the_server_goes_away_and_exits_1(
    server: ServerProcess, pty_client
) -> None:
    child = pty_client(server.port, "--name", "bob")
    child.expect_exact("* welcome, bob!")
    child.expect_exact(">")
    child.send("half typed")
    server.stop()
    child.expect_exact("connection closed by the server")
    assert exit_status(child) == 1
    assert b"Traceback" not in pty_output(child)


def test_refused_connection_on_a_terminal_exits_1(pty_client) -> None:
    child = pty_client(free_port(), "--name", "bob")
    child.expect_exact("connection refused")
    assert exit_status(child) == 1


def test_escape_sequence_from_another_user_never_reaches_the_terminal_raw(
    server: ServerProcess, peers, pty_client
) -> None:
    mallory = peers(server.address, "mallory")
    child = pty_client(server.port, "--name", "bob")
    child.expect_exact("* welcome, bob!")
    mallory.expect("* bob joined the chat")
    mallory.send(EVIL + " \u009b2J")
    mallory.expect("! line refused: control characters")  # the server itself keeps these out
    mallory.send(REORDERING)
    child.expect_exact(REORDERING_VISIBLE)
    output = pty_output(child)
    assert b"\x1b[2J" not in output and b"evil" not in output
    assert "\u009b".encode() not in output and "\u202e".encode() not in output


# --- a real terminal emulator: pyte renders the screen ---------------------------------------


def test_incoming_message_does_not_tear_the_line_being_typed(
    server: ServerProcess, peers, terminal
) -> None:
    alice = peers(server.address, "alice")
    term = terminal(server.port, "--name", "bob")
    term.wait_for(lambda s: any(line.startswith("* welcome, bob!") for line in s), "welcome")
    alice.expect("* bob joined the chat")
    term.type("half typed words")
    term.wait_for(lambda s: "> half typed words" in s, "the typed text")

    alice.send("incoming while typing")
    # Polled until both are there: a look may fall between the message and the redrawn prompt.
    screen = term.wait_for(
        lambda s: "alice: incoming while typing" in s and "> half typed words" in s,
        "the message above the typed text",
    )
    assert screen.index("alice: incoming while typing") < screen.index("> half typed words")
    assert [line for line in screen if line][-1] == "> half typed words"

    term.type(" and the rest")
    term.press_enter()
    alice.expect("bob: half typed words and the rest")
    term.wait_for(lambda s: "you: half typed words and the rest" in s, "own line in history")


def test_accepted_name_option_shows_no_name_question_on_the_screen(
    server: ServerProcess, terminal
) -> None:
    term = terminal(server.port, "--name", "bob")
    screen = term.wait_for(lambda s: any(line.startswith("* welcome, bob!") for line in s), "hi")
    term.wait_for(lambda s: ">" in s, "the chat prompt")
    assert [line for line in term.lines() if line] == ["* welcome, bob! 1 online: bob", ">"], screen


def test_escape_sequence_cannot_clear_or_colour_another_users_screen(
    server: ServerProcess, peers, terminal
) -> None:
    mallory = peers(server.address, "mallory")
    term = terminal(server.port, "--name", "bob")
    term.wait_for(lambda s: any(line.startswith("* welcome, bob!") for line in s), "welcome")
    mallory.expect("* bob joined the chat")
    mallory.send(EVIL)
    mallory.expect("! line refused: control characters")
    mallory.send(f"after {REORDERING}")
    screen = term.wait_for(lambda s: f"mallory: after {REORDERING_VISIBLE}" in s, "the line")
    assert not any("evil" in line for line in screen)
    assert any(line.startswith("* welcome, bob!") for line in screen), "screen was cleared"
    welcome_row = next(i for i, line in enumerate(screen) if line.startswith("* welcome, bob!"))
    assert term.colours_of(welcome_row) == {"cyan"}  # the emulator does render colours
    row = screen.index(f"mallory: after {REORDERING_VISIBLE}")
    assert term.colours_of(row) == {"default"}


def test_interrupt_signal_leaves_cleanly_with_status_0(
    server: ServerProcess, peers, popen_client
) -> None:
    alice = peers(server.address, "alice")
    bob = popen_client(server.port, "--name", "bob")
    alice.expect("* bob joined the chat")
    bob.send_signal(signal.SIGINT)
    _, err = bob.communicate(timeout=PIPE_RUN_TIMEOUT_S)
    assert bob.returncode == 0
    assert err == ""
    alice.expect("* bob left the chat")


def test_no_color_turns_styling_off_on_a_terminal(server: ServerProcess, pty_client) -> None:
    child = pty_client(server.port, "--name", "bob", NO_COLOR="1")
    child.expect_exact("* welcome, bob!")
    child.sendline("hello")
    child.expect_exact("you: hello")
    output = pty_output(child)
    for sgr in SGR_BY_STYLE.values():
        assert f"\x1b[{sgr}m".encode() not in output


def test_refused_name_option_falls_back_to_the_question(
    server: ServerProcess, peers, pty_client
) -> None:
    peers(server.address, "alice")
    child = pty_client(server.port, "--name", "alice")
    child.expect_exact("send your name")  # refused: now the rules are worth reading
    child.expect_exact("name refused: alice is taken")
    child.expect_exact("your name:")
    child.sendline("bob")
    child.expect_exact("* welcome, bob!")


def test_console_script_runs_the_same_client(server: ServerProcess) -> None:
    script = Path(sys.executable).with_name("chat-client")
    # `make test` installs the project (pip install -e '.[dev]'), script included.
    assert script.exists(), f"{script} is missing: install the project with pip install -e ."
    result = subprocess.run(
        [str(script), "--port", str(server.port)],
        input="alice\nleave\n",
        capture_output=True,
        text=True,
        env=client_env(),
        timeout=PIPE_RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert "* welcome, alice!" in result.stdout
