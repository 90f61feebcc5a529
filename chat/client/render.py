"""How the client shows text: terminal-safe forms of other people's text, styles, and the one
function per kind of line (a server line, the user's own line, a line of the client's own).

Pure functions of strings: no terminal, socket or event loop here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from chat.protocol import (
    PRIVATE_MARK,
    Command,
    Message,
    chat_line,
    parse_client_line,
    parse_server_line,
    private_message,
)

TAB_AS_SPACES: Final = "    "

# Starts every line the client shows of its own; the server never sends a line starting with it.
CLIENT_PREFIX: Final = "~ "
OWN_NAME: Final = "you"
LOCAL_HELP: Final = (
    "Ctrl-D (on an empty line) or Ctrl-C also leave",
    f"your lines show as `{OWN_NAME}: text` and `{OWN_NAME} -> NAME (private): text`;"
    f" lines starting `{CLIENT_PREFIX.strip()}` come from this client, not the server",
)

# --- showing other people's text safely ---------------------------------------------------------

# Bidi embeddings, overrides and isolates can reorder what follows them on screen ("Trojan
# Source"); the plain marks (U+200E, U+200F) cannot, so real right-to-left text keeps them.
BIDI_CONTROLS: Final = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))


def _visible_forms() -> dict[int, str]:
    table = {code: "^" + chr(code + 0x40) for code in range(0x20)}  # ESC becomes ^[
    table[0x7F] = "^?"
    table.update({code: f"\\x{code:02x}" for code in range(0x80, 0xA0)})  # C1, e.g. CSI 0x9b
    table.update({code: f"<U+{code:04X}>" for code in BIDI_CONTROLS})
    table[ord("\t")] = TAB_AS_SPACES
    return table


_VISIBLE_FORMS: Final = _visible_forms()


def terminal_safe(text: str) -> str:
    """`text` with every terminal control character replaced by a visible form.

    C0 controls and DEL use caret notation (ESC is `^[`), C1 controls `\\x9b`, bidi overrides
    `<U+202E>`; a tab becomes spaces. What is left cannot move the cursor, clear the screen,
    change colours or reorder the line, whatever the terminal.
    """
    return text.translate(_VISIBLE_FORMS)


# --- styling ------------------------------------------------------------------------------------

# Basic SGR codes every ANSI terminal knows; nothing here depends on the terminal's palette size.
SGR_BY_STYLE: Final = {
    "name": "1",  # bold
    "private": "35",  # magenta
    "notice": "36",  # cyan
    "error": "1;31",  # bold red
    "own": "2",  # dim
    "client": "33",  # yellow
}
SGR_RESET: Final = "\x1b[0m"


def wants_colour(env: Mapping[str, str], is_terminal: bool) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (no-color.org) or TERM=dumb."""
    return is_terminal and not env.get("NO_COLOR") and env.get("TERM", "") != "dumb"


def _paint(text: str, style: str, colour: bool) -> str:
    return f"\x1b[{SGR_BY_STYLE[style]}m{text}{SGR_RESET}" if colour else text


# --- each kind of line --------------------------------------------------------------------------


def format_server_line(line: str, colour: bool) -> str:
    """One line from the server as the terminal shows it: sanitised, styled by kind."""
    parsed = parse_server_line(line)
    if parsed.kind == "chat":
        name = _paint(terminal_safe(parsed.name or ""), "name", colour)
        return chat_line(name, terminal_safe(parsed.text))
    if parsed.kind == "private":
        who = _paint(terminal_safe(parsed.name or "") + PRIVATE_MARK, "private", colour)
        return chat_line(who, terminal_safe(parsed.text))
    # Notices and errors keep the server's own wording and prefix; colour tells them apart.
    return _paint(terminal_safe(line), parsed.kind, colour)


def format_own_line(text: str, colour: bool) -> str:
    """A line the user sent, as their own history shows it (the server never echoes it):
    `you: text` for a message, `you -> NAME (private): text` for `/msg`, other commands as typed
    (no server line starts with `/`)."""
    parsed = parse_client_line(text)
    shown = text
    if isinstance(parsed, Message):
        shown = chat_line(OWN_NAME, parsed.text)
    elif isinstance(parsed, Command):
        private = private_message(parsed)
        if private is not None:
            target, body = private
            shown = chat_line(f"{OWN_NAME} -> {target}{PRIVATE_MARK}", body)
    else:  # refused by the server as sent; shown as it was typed
        shown = chat_line(OWN_NAME, text)
    return _paint(terminal_safe(shown), "own", colour)


def format_client_line(text: str, colour: bool) -> str:
    """A line of the client's own (a hint, a problem it noticed): `~ text`."""
    return _paint(CLIENT_PREFIX + text, "client", colour)
