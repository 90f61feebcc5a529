"""The terminal client's pure parts: showing other people's text safely, styling, options.

No process and no socket here; the client run through pipes is tested in test_client_piped.py,
on a terminal in test_client_terminal.py (each maps the rest of the client's promises).

Promises (README.md "A two-terminal session" and after, docs/CLIENT.md) -> tests:

- defaults --host 127.0.0.1 --port 5555, --name asked
    -> test_defaults_match_the_original_client
- `--help` lists the options; a bad option is a usage error, status 2
    -> test_bad_option_values_are_usage_errors
    -> test_client_piped.py: test_help_option_lists_the_options,
       test_bad_option_is_a_usage_error_with_status_2
- own lines in the history as `you: ...`, `/msg` as `you -> NAME (private): ...`
    -> test_own_lines_show_messages_private_messages_and_commands_apart
    -> test_client_terminal.py: test_own_messages_are_shown_in_the_history_and_sent
- the client's own lines start `~ `, which no server line can
    -> test_client_and_own_lines_can_never_be_taken_for_a_server_line
    -> test_client_terminal.py: test_help_lists_the_commands
- notice cyan, error red, private magenta, names bold, own dim
    -> test_notices_errors_and_chat_are_styled_apart_on_colour_terminals
- NO_COLOR=1 or TERM=dumb: plain text
    -> test_colour_only_on_a_terminal_and_never_with_no_color
    -> test_client_terminal.py: test_no_color_turns_styling_off_on_a_terminal
- control characters made visible (`^[[2J`, `\\x9b`, `<U+202E>`, tabs)
    -> test_escape_sequences_become_visible_caret_forms and the four pure tests after it
    -> test_client_terminal.py:
       test_escape_sequence_from_another_user_never_reaches_the_terminal_raw
- nobody can clear, recolour or rewrite your screen
    -> test_other_users_escapes_are_neutralised_even_inside_styled_lines
    -> test_client_terminal.py: test_escape_sequence_cannot_clear_or_colour_another_users_screen
"""

from __future__ import annotations

import unicodedata

import pytest
from client_helpers import (
    EVIL,
    EVIL_VISIBLE,
)
from hypothesis import given
from hypothesis import strategies as st

from chat.client import (
    BIDI_CONTROLS,
    CLIENT_PREFIX,
    LOCAL_HELP,
    SGR_RESET,
    format_client_line,
    format_own_line,
    format_server_line,
    parse_args,
    terminal_safe,
    wants_colour,
)
from chat.protocol import name_problem, parse_server_line

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


# --- options ------------------------------------------------------------------------------------


def test_defaults_match_the_original_client() -> None:
    args = parse_args([])
    assert (args.host, args.port, args.name) == ("127.0.0.1", 5555, None)


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
