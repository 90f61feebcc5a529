"""The terminal client in plain line mode, its input and output piped, as scripts drive it.

Each test starts its own server (tests/conftest.py) on 127.0.0.1 and talks to the client from a
raw-socket peer (tests/client_helpers.py). Every process started here is stopped by PID, and
every wait is bounded. No test here splits reads on purpose: the client frames with
chat.protocol.LineDecoder, whose every split point tests/test_protocol.py replays, and the server
re-frames every line, so a split towards the client cannot be forced without a fake server.

Promises (README.md "A two-terminal session" and after, docs/CLIENT.md) -> tests; the rest are
mapped in test_client.py and test_client_terminal.py:

- `--help` lists the options; a bad option is a usage error, status 2
    -> test_help_option_lists_the_options
    -> test_bad_option_is_a_usage_error_with_status_2
    -> test_client.py: test_bad_option_values_are_usage_errors
- `-v` debug log on stderr
    -> test_verbose_option_logs_debug_lines_on_stderr
- `chat-client` script runs the same client
    -> test_console_script_runs_the_same_client
- `--name` skips the question (neither the server's nor ours is shown); refused, you are asked
    -> test_name_option_skips_the_question
    -> test_client_terminal.py: test_accepted_name_option_shows_no_name_question_on_the_screen,
       test_refused_name_option_falls_back_to_the_question
- `text` reaches everyone else as `NAME: text`
    -> test_piped_lines_reach_others_and_end_of_input_leaves
    -> test_client_terminal.py: test_own_messages_are_shown_in_the_history_and_sent
- leave, /quit, Ctrl-D, Ctrl-C leave with status 0
    -> test_interrupt_signal_leaves_cleanly_with_status_0
    -> test_client_terminal.py: test_terminal_session_ends_cleanly_with_status_0,
       test_ctrl_c_at_the_name_question_exits_0
- server unreachable or gone: one sentence, status 1
    -> test_refused_connection_exits_1_with_one_sentence
    -> test_server_going_away_exits_1_with_one_sentence
    -> test_client_terminal.py: test_refused_connection_on_a_terminal_exits_1,
       test_terminal_client_says_when_the_server_goes_away_and_exits_1
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

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import (
    EVIL,
    PIPE_RUN_TIMEOUT_S,
    REORDERING,
    REORDERING_VISIBLE,
    REPO,
    client_env,
    run_piped,
)

from chat.client import (
    NO_NAME_ACCEPTED,
)
from harness import ServerProcess, free_port


@pytest.fixture
def server(english_server: ServerProcess) -> ServerProcess:
    """Here `server` is a server process speaking English (tests/conftest.py's is in-process)."""
    return english_server


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


# --- the command line ---------------------------------------------------------------------------


def test_bad_option_is_a_usage_error_with_status_2() -> None:
    result = run_piped(5555, "", "--port", "99999")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "chat-client: error: argument --port: must be 1-65535, not 99999"
    )
    assert "Traceback" not in result.stderr


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
