"""Terminal chat client: `python -m chat.client` or `chat-client`.

It connects (127.0.0.1:5555 by default), asks for a name, then sends and receives at the same
time. On a terminal the input line is a prompt_toolkit prompt that incoming lines are printed
above, so they never tear what the user is typing. When standard input is not a terminal it runs
in plain line mode: each input line is sent, each received line printed, end of input leaves.

Everything another user wrote passes through `terminal_safe` before it is shown, so nobody can
clear or rewrite someone else's screen. Lines the client writes itself start with `~ `, which no
server line does (names cannot hold `~`; notices start `* `, errors `! `).

Exit status: 0 when the user leaves (`leave`, `/quit`, Ctrl-D, Ctrl-C, end of input), 1 when the
server refuses or drops the connection (or piped input ends before any name was accepted), 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, TextIO

from chat.protocol import (
    ENCODING,
    Command,
    Leave,
    LineDecoder,
    LineTooLong,
    Message,
    encode_line,
    parse_client_line,
    parse_server_line,
    text_problem,
)

log = logging.getLogger("chat.client")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5555
MAX_PORT: Final = 65535
CONNECT_TIMEOUT_S: Final = 10.0
# After `leave`, wait this long for the server to close so lines already in flight get shown.
LEAVE_GRACE_S: Final = 2.0
RECV_CHUNK_BYTES: Final = 65536
# The server keeps its own lines short; this only bounds what a misbehaving peer could make us hold.
MAX_SERVER_LINE_BYTES: Final = 1 << 20
TAB_AS_SPACES: Final = "    "

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1

NAME_PROMPT: Final = "your name: "
CHAT_PROMPT: Final = "> "
# Starts every line the client shows of its own; the server never sends a line starting with it.
CLIENT_PREFIX: Final = "~ "
OWN_NAME: Final = "you"
LOCAL_HELP: Final = (
    "Ctrl-D (on an empty line) or Ctrl-C also leave",
    f"your lines show as `{OWN_NAME}: text` and `{OWN_NAME} -> NAME (private): text`;"
    f" lines starting `{CLIENT_PREFIX.strip()}` come from this client, not the server",
)
NO_NAME_ACCEPTED: Final = "the input ended before a name was accepted"

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


def format_server_line(line: str, colour: bool) -> str:
    """One line from the server as the terminal shows it: sanitised, styled by kind."""
    parsed = parse_server_line(line)
    if parsed.kind == "chat":
        name = _paint(terminal_safe(parsed.name or ""), "name", colour)
        return f"{name}: {terminal_safe(parsed.text)}"
    if parsed.kind == "private":
        who = _paint(f"{terminal_safe(parsed.name or '')} (private)", "private", colour)
        return f"{who}: {terminal_safe(parsed.text)}"
    # Notices and errors keep the server's own wording and prefix; colour tells them apart.
    return _paint(terminal_safe(line), parsed.kind, colour)


def format_own_line(text: str, colour: bool) -> str:
    """A line the user sent, as their own history shows it (the server never echoes it):
    `you: text` for a message, `you -> NAME (private): text` for `/msg`, other commands as typed
    (no server line starts with `/`)."""
    parsed = parse_client_line(text)
    shown = text
    if isinstance(parsed, Message):
        shown = f"{OWN_NAME}: {parsed.text}"
    elif isinstance(parsed, Command) and parsed.name == "msg":
        target, _, body = parsed.arg.partition(" ")
        if target and body.strip():
            shown = f"{OWN_NAME} -> {target} (private): {body}"
    elif not isinstance(parsed, Command):  # refused by the server as sent; shown as it was typed
        shown = f"{OWN_NAME}: {text}"
    return _paint(terminal_safe(shown), "own", colour)


def format_client_line(text: str, colour: bool) -> str:
    """A line of the client's own (a hint, a problem it noticed): `~ text`."""
    return _paint(CLIENT_PREFIX + text, "client", colour)


# --- the connection -----------------------------------------------------------------------------


class ConnectFailed(Exception):
    """The server could not be reached; str() is the sentence the user reads."""


class ServerGone(Exception):
    """The server closed the connection or it broke."""


class Connection:
    """The chat socket as whole decoded lines in and text lines out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = LineDecoder(MAX_SERVER_LINE_BYTES)
        self._ready: list[str] = []

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        """Connect, or raise ConnectFailed with a one-sentence reason."""
        where = f"{host}:{port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except ConnectionRefusedError:
            raise ConnectFailed(
                f"cannot connect to {where}: connection refused (is the server running?)"
            ) from None
        except TimeoutError:
            raise ConnectFailed(f"cannot connect to {where}: timed out") from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectFailed(f"cannot connect to {where}: {reason}") from None
        log.debug("connected to %s", where)
        return cls(reader, writer)

    async def read_line(self) -> str | None:
        """The next line from the server, or None once it has closed the connection."""
        while not self._ready:
            try:
                chunk = await self._reader.read(RECV_CHUNK_BYTES)
            except OSError as exc:
                log.debug("receive failed: %s", exc)
                return None
            if not chunk:
                return None
            self._ready.extend(self._decode(line) for line in self._decoder.feed(chunk))
        return self._ready.pop(0)

    @staticmethod
    def _decode(line: bytes | LineTooLong) -> str:
        if isinstance(line, LineTooLong):
            dropped = f"a line over {MAX_SERVER_LINE_BYTES} bytes from the server was dropped"
            return CLIENT_PREFIX + dropped
        return line.decode(ENCODING, errors="replace")

    async def send(self, text: str) -> None:
        """Send one line; ServerGone if the connection is already broken."""
        try:
            self._writer.write(encode_line(text))
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:  # RuntimeError: the transport is closing
            raise ServerGone(str(exc)) from None

    def close(self, farewell: str | None = None) -> None:
        """Close, sending `farewell` first when given (best effort: we are leaving anyway)."""
        with contextlib.suppress(OSError, RuntimeError):
            if farewell is not None and not self._writer.is_closing():
                self._writer.write(encode_line(farewell))
            self._writer.close()


# --- user interfaces ----------------------------------------------------------------------------


class UserInterface(Protocol):
    """Where input comes from and where lines go: a terminal prompt or plain pipes."""

    interactive: bool

    async def ask(self, prompt: str) -> str | None:
        """The next line the user entered; None when they are done (end of input, Ctrl-D/C)."""
        ...

    def show_server_line(self, line: str) -> None: ...

    def show_own_line(self, text: str) -> None: ...

    def show_local_help(self) -> None: ...


class TerminalUI:
    """A prompt_toolkit prompt; incoming lines are printed above it (see `active`)."""

    interactive = True

    def __init__(self, colour: bool) -> None:
        from prompt_toolkit import PromptSession  # only the terminal mode needs it

        self.colour = colour
        # The prompt is erased on Enter and the line shown again as history, in the same style
        # as everything else, so the screen reads as one conversation.
        self._session: PromptSession[str] = PromptSession(erase_when_done=True)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """While active, stdout writes go above the prompt without disturbing what is typed."""
        from prompt_toolkit.patch_stdout import patch_stdout

        # raw=True lets our own colour codes through; other people's text is already sanitised.
        with patch_stdout(raw=True):
            yield

    async def ask(self, prompt: str) -> str | None:
        try:
            return await self._session.prompt_async(prompt)
        except (EOFError, KeyboardInterrupt):
            return None

    def show_server_line(self, line: str) -> None:
        print(format_server_line(line, self.colour), flush=True)

    def show_own_line(self, text: str) -> None:
        print(format_own_line(text, self.colour), flush=True)

    def show_local_help(self) -> None:
        for line in LOCAL_HELP:
            print(format_client_line(line, self.colour), flush=True)


class PlainUI:
    """Line mode for pipes and scripts: input lines from a file descriptor, output lines as is."""

    interactive = False

    def __init__(self, input_fd: int = 0) -> None:
        self._input_fd = input_fd
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._ended = False
        self._output_broken = False
        loop = asyncio.get_running_loop()
        # A daemon thread, reading the raw descriptor: a blocked read must never delay exit.
        threading.Thread(
            target=self._read_input, args=(loop,), name="chat-client-stdin", daemon=True
        ).start()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield

    def _read_input(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._input_fd, RECV_CHUNK_BYTES)
            except OSError as exc:  # e.g. standard input closed altogether
                log.debug("input unreadable: %s", exc)
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                loop.call_soon_threadsafe(self._lines.put_nowait, _decode_input(line))
        if pending:  # a last line without its newline still counts
            loop.call_soon_threadsafe(self._lines.put_nowait, _decode_input(pending))
        loop.call_soon_threadsafe(self._lines.put_nowait, None)

    async def ask(self, prompt: str) -> str | None:
        if self._ended:
            return None
        line = await self._lines.get()
        self._ended = line is None
        return line

    def show_server_line(self, line: str) -> None:
        self._write(terminal_safe(line))

    def show_own_line(self, text: str) -> None:
        """Scripts read only what others sent; their own lines are already in their input."""

    def show_local_help(self) -> None:
        """The server's /help answer is the whole list in plain mode."""

    def _write(self, text: str) -> None:
        if self._output_broken:
            return
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # Whoever read our output has gone; keep chatting, stop writing.
            self._output_broken = True


def _decode_input(line: bytes) -> str:
    return line.removesuffix(b"\r").decode(ENCODING, errors="replace")


# --- the session --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a session ended: the exit status and the sentence to tell the user, if any."""

    status: int
    message: str | None = None


SERVER_CLOSED: Final = Outcome(EXIT_FAILURE, "connection closed by the server")


def _is_leave(text: str) -> bool:
    parsed = parse_client_line(text)
    return isinstance(parsed, Leave) or (isinstance(parsed, Command) and parsed.name == "quit")


def _is_help(text: str) -> bool:
    parsed = parse_client_line(text)
    return isinstance(parsed, Command) and parsed.name == "help"


class ChatSession:
    """One connection's life: greeting, naming, then sending and receiving at once."""

    def __init__(self, conn: Connection, ui: UserInterface, name: str | None) -> None:
        self.conn = conn
        self.ui = ui
        self.name = name
        self._gone = asyncio.Event()
        # Until a name is accepted, the answers to it are read from here as well as shown.
        self._handshake_lines: asyncio.Queue[str | None] | None = asyncio.Queue()
        # With --name the greeting asks for a name nobody needs to type: lines are held here
        # until the server answers that name, then shown without the greeting if it accepted.
        self._held: list[str] | None = [] if name is not None else None
        self._leaving = False

    async def run(self) -> Outcome:
        receiver = asyncio.create_task(self._receive())
        try:
            outcome = await self._join()
            return outcome if outcome is not None else await self._chat()
        except ServerGone:
            return SERVER_CLOSED
        finally:
            self._show_held()
            # Reached on Ctrl-C outside the prompt too (the task is cancelled): say goodbye.
            self.conn.close(farewell=None if self._leaving or self._gone.is_set() else "leave")
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    async def _receive(self) -> None:
        try:
            while (line := await self.conn.read_line()) is not None:
                if self._held is not None:
                    self._held.append(line)
                else:
                    self.ui.show_server_line(line)
                if self._handshake_lines is not None:
                    self._handshake_lines.put_nowait(line)
        finally:
            log.debug("server closed the connection")
            self._gone.set()
            if self._handshake_lines is not None:
                self._handshake_lines.put_nowait(None)

    async def _next_handshake_line(self) -> str:
        assert self._handshake_lines is not None
        line = await self._handshake_lines.get()
        if line is None:
            raise ServerGone
        return line

    def _show_held(self, skip_greeting: bool = False) -> None:
        """Show the lines held back while a --name was pending; from now on, show as they come."""
        held, self._held = self._held or [], None
        for line in held[1:] if skip_greeting else held:
            self.ui.show_server_line(line)

    async def _join(self) -> Outcome | None:
        """Greeting and name; None once a name is accepted, else how the session ended."""
        greeting = await self._next_handshake_line()
        if parse_server_line(greeting).kind == "error":  # e.g. server full; it closes next
            self._show_held()
            await self._wait_for_close()
            return SERVER_CLOSED
        name, refused = self.name, False
        while True:
            if name is None:
                self._show_held()  # the greeting says what a name may hold: show it first
                name = await self._ask(NAME_PROMPT)
            if name is None:
                if refused and not self.ui.interactive:
                    return Outcome(EXIT_FAILURE, NO_NAME_ACCEPTED)  # the reason is shown above
                return await self._leave()
            if not name.strip():  # the server ignores blank lines: it would never answer
                name = None
                continue
            if _is_leave(name):
                return await self._leave()
            await self.conn.send(name)
            answer = parse_server_line(await self._next_handshake_line())
            if answer.kind != "error":
                self._show_held(skip_greeting=True)
                self._handshake_lines = None
                return None
            name, refused = None, True

    async def _chat(self) -> Outcome:
        while True:
            text = await self._ask(CHAT_PROMPT)
            if text is None or _is_leave(text):
                return await self._leave()
            if not text.strip():
                continue
            await self.conn.send(text)
            self.ui.show_own_line(text)
            if _is_help(text):
                self.ui.show_local_help()

    async def _ask(self, prompt: str) -> str | None:
        """The user's next line, unless the server goes away first (then ServerGone)."""
        if self._gone.is_set():
            raise ServerGone
        ask = asyncio.ensure_future(self.ui.ask(prompt))
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({ask, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not ask.done():
                ask.cancel()
                # Let the prompt restore the terminal before anything else is printed.
                await asyncio.gather(ask, return_exceptions=True)
        if ask.cancelled():
            raise ServerGone
        return ask.result()

    async def _leave(self) -> Outcome:
        self._leaving = True
        with contextlib.suppress(ServerGone):
            await self.conn.send("leave")
            await self._wait_for_close()
        return Outcome(EXIT_OK)

    async def _wait_for_close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gone.wait(), LEAVE_GRACE_S)


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    if _is_leave(text):
        raise argparse.ArgumentTypeError(f"{text.strip()!r} would leave the chat at once")
    return text


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Logs to whatever sys.stderr is at the time, so that under the prompt's patched stderr
    log lines are printed above the input line instead of through it."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


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


async def run_client(args: argparse.Namespace, interactive: bool) -> Outcome:
    """Connect and run one session in terminal or plain line mode."""
    try:
        conn = await Connection.open(args.host, args.port)
    except ConnectFailed as exc:
        return Outcome(EXIT_FAILURE, str(exc))
    ui: TerminalUI | PlainUI
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
    if not interactive and sys.stdout is not None:
        # Whatever the locale, a received line must never stop the client with an encoding error.
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    try:
        outcome = asyncio.run(run_client(args, interactive))
    except KeyboardInterrupt:
        outcome = Outcome(EXIT_OK)
    if outcome.message:
        print(outcome.message, file=sys.stderr)
    return outcome.status


if __name__ == "__main__":
    sys.exit(main())
