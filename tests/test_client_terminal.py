"""The terminal client on a terminal, driven as a user drives it: a pseudo-terminal (pexpect), and
a pseudo-terminal rendered by pyte (a VT100 emulator, so no system terminal program is needed).

Each test starts its own server (tests/conftest.py) on 127.0.0.1 and talks to the client from a
raw-socket peer (tests/client_helpers.py). Every process started here is stopped by PID, and
every wait is bounded.

Promises (README.md "A two-terminal session" and after, docs/CLIENT.md) -> tests; the rest are
mapped in test_client.py and test_client_piped.py:

- `--name` skips the question (neither the server's nor ours is shown); refused, you are asked
    -> test_accepted_name_option_shows_no_name_question_on_the_screen
    -> test_refused_name_option_falls_back_to_the_question
    -> test_client_piped.py: test_name_option_skips_the_question
- a refused name: the reason, asked again
    -> test_terminal_asks_the_name_again_with_the_servers_reason
- the input line stays; messages print above it
    -> test_incoming_message_does_not_tear_the_line_being_typed
- own lines in the history as `you: ...`, `/msg` as `you -> NAME (private): ...`
    -> test_own_messages_are_shown_in_the_history_and_sent
    -> test_client.py: test_own_lines_show_messages_private_messages_and_commands_apart
- the client's own lines start `~ `, which no server line can
    -> test_help_lists_the_commands
    -> test_client.py: test_client_and_own_lines_can_never_be_taken_for_a_server_line
- NO_COLOR=1 or TERM=dumb: plain text
    -> test_no_color_turns_styling_off_on_a_terminal
    -> test_client.py: test_colour_only_on_a_terminal_and_never_with_no_color
- `text` reaches everyone else as `NAME: text`
    -> test_own_messages_are_shown_in_the_history_and_sent
    -> test_client_piped.py: test_piped_lines_reach_others_and_end_of_input_leaves
- `/msg NAME text` reaches only NAME, shown as `you -> NAME (private): text`
    -> test_private_message_reaches_only_its_addressee_and_shows_in_the_history
- `/help`: the client's keys, then the server's commands
    -> test_help_lists_the_commands
- leave, /quit, Ctrl-D, Ctrl-C leave with status 0
    -> test_terminal_session_ends_cleanly_with_status_0
    -> test_ctrl_c_at_the_name_question_exits_0
    -> test_client_piped.py: test_interrupt_signal_leaves_cleanly_with_status_0
- server unreachable or gone: one sentence, status 1
    -> test_refused_connection_on_a_terminal_exits_1
    -> test_terminal_client_says_when_the_server_goes_away_and_exits_1
    -> test_client_piped.py: test_refused_connection_exits_1_with_one_sentence,
       test_server_going_away_exits_1_with_one_sentence
- control characters made visible (`^[[2J`, `\\x9b`, `<U+202E>`, tabs)
    -> test_escape_sequence_from_another_user_never_reaches_the_terminal_raw
    -> test_client.py: test_escape_sequences_become_visible_caret_forms and the pure tests after it
- nobody can clear, recolour or rewrite your screen
    -> test_escape_sequence_cannot_clear_or_colour_another_users_screen
    -> test_client.py: test_other_users_escapes_are_neutralised_even_inside_styled_lines
"""

from __future__ import annotations

import pytest
from client_helpers import (
    EVIL,
    REORDERING,
    REORDERING_VISIBLE,
    exit_status,
    pty_output,
)

from chat.client import (
    SGR_BY_STYLE,
)
from harness import ServerProcess, free_port


@pytest.fixture
def server(english_server: ServerProcess) -> ServerProcess:
    """Here `server` is a server process speaking English (tests/conftest.py's is in-process)."""
    return english_server


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


def test_no_color_turns_styling_off_on_a_terminal(server: ServerProcess, pty_client) -> None:
    child = pty_client(server.port, "--name", "bob", NO_COLOR="1")
    child.expect_exact("* welcome, bob!")
    child.sendline("hello")
    child.expect_exact("you: hello")
    output = pty_output(child)
    for sgr in SGR_BY_STYLE.values():
        assert f"\x1b[{sgr}m".encode() not in output


# --- a real terminal emulator: pyte renders the screen ------------------------------------------


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
