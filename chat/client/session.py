"""One session with the server: joining (chat.protocol.ClientHandshake decides how a name went),
then what the user's lines become while server lines keep arriving, and how it all ended.

The user interface is anything shaped like `UserInterface`: chat.client.tui on a terminal,
chat.client.plain for pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final, Protocol

from chat.client.connection import Connection, ServerGone
from chat.protocol import (
    HELP_COMMAND,
    LEAVE_LINE,
    Accepted,
    ClientHandshake,
    Command,
    Leave,
    NameRefused,
    parse_client_line,
)

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1

# After `leave`, wait this long for the server to close so lines already in flight get shown.
LEAVE_GRACE_S: Final = 2.0

NAME_PROMPT: Final = "your name: "
CHAT_PROMPT: Final = "> "
NO_NAME_ACCEPTED: Final = "the input ended before a name was accepted"


class UserInterface(Protocol):
    """Where input comes from and where lines go: a terminal prompt or plain pipes."""

    @property
    def interactive(self) -> bool:
        """True when a person answers the questions (a terminal), False for pipes and scripts."""
        ...

    def active(self) -> contextlib.AbstractContextManager[None]:
        """The context the session runs in (the terminal prompt keeps its line at the bottom)."""
        ...

    async def ask(self, prompt: str) -> str | None:
        """The next line the user entered; None when they are done (end of input, Ctrl-D/C)."""
        ...

    def show_server_line(self, line: str) -> None:
        """Show a line the server sent (another user's words, a notice, an error)."""
        ...

    def show_own_line(self, text: str) -> None:
        """Show a line the user just sent, as their history has it."""
        ...

    def show_local_help(self) -> None:
        """Show what the client itself adds to the server's /help."""
        ...


@dataclass(frozen=True)
class Outcome:
    """How a session ended: the exit status and the sentence to tell the user, if any."""

    status: int
    message: str | None = None


SERVER_CLOSED: Final = Outcome(EXIT_FAILURE, "connection closed by the server")


def is_leave(text: str) -> bool:
    """Whether sending `text` would end the session (`leave`, `/quit`)."""
    return isinstance(parse_client_line(text), Leave)


def is_help(text: str) -> bool:
    """Whether `text` asks the server for its command list."""
    parsed = parse_client_line(text)
    return isinstance(parsed, Command) and parsed.name == HELP_COMMAND


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
        """Join, then chat until the user leaves or the server goes; how it ended."""
        receiver = asyncio.create_task(self._receive())
        try:
            outcome = await self._join()
            return outcome if outcome is not None else await self._chat()
        except ServerGone:
            return SERVER_CLOSED
        finally:
            self._show_held()
            # Reached on Ctrl-C outside the prompt too (the task is cancelled): say goodbye.
            self.conn.close(farewell=None if self._leaving or self._gone.is_set() else LEAVE_LINE)
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

    async def _answer(self, handshake: ClientHandshake) -> Accepted | NameRefused:
        """Read server lines until one says how the name just sent went."""
        while True:
            outcome = handshake.line_received(await self._next_handshake_line())
            if outcome is not None:
                return outcome

    def _show_held(self, skip_greeting: bool = False) -> None:
        """Show the lines held back while a --name was pending; from now on, show as they come."""
        held, self._held = self._held or [], None
        for line in held[1:] if skip_greeting else held:
            self.ui.show_server_line(line)

    async def _join(self) -> Outcome | None:
        """Greeting and name; None once a name is accepted, else how the session ended."""
        handshake = ClientHandshake()
        greeting = handshake.line_received(await self._next_handshake_line())
        if isinstance(greeting, NameRefused):  # e.g. server full; it closes next
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
            if is_leave(name):
                return await self._leave()
            await self.conn.send(name)
            if isinstance(await self._answer(handshake), Accepted):
                self._show_held(skip_greeting=True)
                self._handshake_lines = None
                return None
            name, refused = None, True

    async def _chat(self) -> Outcome:
        while True:
            text = await self._ask(CHAT_PROMPT)
            if text is None or is_leave(text):
                return await self._leave()
            if not text.strip():
                continue
            await self.conn.send(text)
            self.ui.show_own_line(text)
            if is_help(text):
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
            await self.conn.send(LEAVE_LINE)
            await self._wait_for_close()
        return Outcome(EXIT_OK)

    async def _wait_for_close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gone.wait(), LEAVE_GRACE_S)
