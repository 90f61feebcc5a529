"""Terminal chat client: `python -m chat.client` or `chat-client`.

It connects (127.0.0.1:5555 by default), asks for a name, then sends and receives at the same
time. On a terminal the input line is a prompt_toolkit prompt that incoming lines are printed
above, so they never tear what the user is typing. When standard input is not a terminal it runs
in plain line mode: each input line is sent, each received line printed, end of input leaves.

Everything another user wrote passes through `terminal_safe` before it is shown, so nobody can
clear or rewrite someone else's screen. Lines the client writes itself start with `~ `, which no
server line does (names cannot hold `~`; notices and errors have their own prefixes).

Exit status: 0 when the user leaves (`leave`, `/quit`, Ctrl-D, Ctrl-C, end of input), 1 when the
server refuses or drops the connection (or piped input ends before any name was accepted), 2 for a
usage error.

One module per concern, each importing only those listed before it:

    render.py      terminal-safe text, styles, how each kind of line is shown
    connection.py  connecting, lines in (chat.protocol.LineDecoder) and out
    session.py     joining (chat.protocol.ClientHandshake), what the user's lines become
    tui.py         the prompt_toolkit interface, on a terminal
    plain.py       plain line mode, for pipes and scripts
    cli.py         options, logging, `main`
"""

from chat.client.cli import main, parse_args
from chat.client.render import (
    BIDI_CONTROLS,
    CLIENT_PREFIX,
    LOCAL_HELP,
    SGR_BY_STYLE,
    SGR_RESET,
    format_client_line,
    format_own_line,
    format_server_line,
    terminal_safe,
    wants_colour,
)
from chat.client.session import NO_NAME_ACCEPTED

__all__ = [
    "BIDI_CONTROLS",
    "CLIENT_PREFIX",
    "LOCAL_HELP",
    "NO_NAME_ACCEPTED",
    "SGR_BY_STYLE",
    "SGR_RESET",
    "format_client_line",
    "format_own_line",
    "format_server_line",
    "main",
    "parse_args",
    "terminal_safe",
    "wants_colour",
]
