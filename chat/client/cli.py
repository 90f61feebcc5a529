"""The command line: options (argparse, bad values are usage errors), logging, choosing the
terminal or the plain interface, and `main`, the entry point of `python -m chat.client` and the
`chat-client` script."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import logging
import os
import ssl
import sys
from typing import Final, TextIO

from chat.client.connection import ConnectFailed, Connection, ServerGone
from chat.client.plain import PlainUI
from chat.client.render import wants_colour
from chat.client.session import (
    EXIT_FAILURE,
    EXIT_OK,
    SERVER_CLOSED,
    ChatSession,
    Outcome,
    UserInterface,
    is_leave,
)
from chat.client.tui import TerminalUI
from chat.password import PASSWORD_ENV
from chat.protocol import password_line, text_problem
from chat.tls import client_context

# The package's logger: every module's logger is below it, so -v turns all of them on.
log = logging.getLogger("chat.client")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5555
MAX_PORT: Final = 65535


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options in `argv` (default: the command line); exits with status 2 on a bad one."""
    parser = argparse.ArgumentParser(
        prog="chat-client",
        description=(
            "Terminal client for the chat server. On a terminal, type messages at the prompt; "
            "leave, /quit, Ctrl-D or Ctrl-C end the session and /help lists the commands. "
            "With piped input, the first line is the name (unless --name is given), every "
            "other line is sent, and the end of input leaves."
        ),
    )
    parser.add_argument(
        "--host", type=_host, default=DEFAULT_HOST, help="server address (%(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"server port, 1-{MAX_PORT} (%(default)s)"
    )
    parser.add_argument(
        "--name", type=_chat_name, help="your chat name; skips the question unless it is refused"
    )
    parser.add_argument(
        "--tls", action="store_true", help="connect over TLS (the system's trusted CAs)"
    )
    parser.add_argument(
        "--ca", metavar="FILE", help="trust the certificate authority in FILE (PEM); implies --tls"
    )
    parser.add_argument(
        "--password",
        action="store_true",
        help=f"the server needs a password: from ${PASSWORD_ENV}, else asked without echo "
        f"(it is sent whenever ${PASSWORD_ENV} is set)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug log on stderr")
    return parser.parse_args(argv)


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_PORT}, not {port}")
    return port


def _chat_name(text: str) -> str:
    # Only what the line protocol itself cannot carry; the server judges the rest and says why.
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if text_problem(text) is not None:
        raise argparse.ArgumentTypeError("must be one line without control characters")
    if is_leave(text):
        raise argparse.ArgumentTypeError(f"{text.strip()!r} would leave the chat at once")
    return text


class _CurrentStderrHandler(logging.StreamHandler[TextIO]):
    """Logs to whatever sys.stderr is at the time, so that under the prompt's patched stderr
    log lines are printed above the input line instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # handle() holds the handler's lock around emit
        super().emit(record)


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _stdout_is_terminal() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


def _keep_stdin_descriptor_taken() -> None:
    # Started with descriptor 0 closed, the socket could be given 0 and be read as our input.
    try:
        os.fstat(0)
    except OSError:
        os.open(os.devnull, os.O_RDONLY)


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client's TLS context (`--tls`, `--ca`), or None for plain text; ConnectFailed when
    the CA file cannot be used."""
    if not (args.tls or args.ca):
        return None
    try:
        return client_context(args.ca)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConnectFailed(f"cannot use --ca {args.ca}: {reason}") from None


def password(args: argparse.Namespace, interactive: bool) -> str | None:
    """The password to present: $CHAT_PASSWORD, else asked without echo with --password."""
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    if not args.password:
        return None
    if not interactive:
        raise ConnectFailed(f"--password with piped input needs ${PASSWORD_ENV}")
    return getpass.getpass("password: ")


async def run_client(args: argparse.Namespace, interactive: bool) -> Outcome:
    """Connect and run one session in terminal or plain line mode."""
    try:
        secret = password(args, interactive)
        conn = await Connection.open(args.host, args.port, tls_context(args))
        if secret is not None:  # before anything else, as the server expects it
            await conn.send(password_line(secret))
    except ConnectFailed as exc:
        return Outcome(EXIT_FAILURE, str(exc))
    except ServerGone:
        return SERVER_CLOSED
    ui: UserInterface
    try:
        ui = (
            TerminalUI(colour=wants_colour(os.environ, is_terminal=True))
            if interactive
            else PlainUI()
        )
    except ImportError:
        log.warning("prompt_toolkit is missing (pip install '.[client]'), using plain line mode")
        ui = PlainUI()
    with ui.active():
        return await ChatSession(conn, ui, args.name).run()


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    args = parse_args(argv)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("chat-client: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    if args.verbose:
        log.setLevel(logging.DEBUG)  # ours only: asyncio's debug lines are noise here
    _keep_stdin_descriptor_taken()
    interactive = _stdin_is_terminal() and _stdout_is_terminal()
    if not interactive and isinstance(sys.stdout, io.TextIOWrapper):
        # Whatever the locale, a received line must never stop the client with an encoding error.
        sys.stdout.reconfigure(errors="replace")
    try:
        outcome = asyncio.run(run_client(args, interactive))
    except KeyboardInterrupt:
        outcome = Outcome(EXIT_OK)
    if outcome.message:
        print(outcome.message, file=sys.stderr)
    return outcome.status
