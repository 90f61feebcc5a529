"""Plain line mode, for pipes and scripts: input lines from a file descriptor, framed by
chat.protocol.LineDecoder on a daemon thread; server lines written to stdout as they are, made
terminal-safe and without colour."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Final

from chat.client.connection import RECV_CHUNK_BYTES
from chat.client.render import terminal_safe
from chat.protocol import DELIMITER, ENCODING, LineDecoder, LineTooLong

log = logging.getLogger(__name__)

# Only bounds what a runaway producer could make us hold; the server judges the line's length.
MAX_INPUT_LINE_BYTES: Final = 1 << 20


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
        decoder = LineDecoder(MAX_INPUT_LINE_BYTES)
        while True:
            try:
                chunk = os.read(self._input_fd, RECV_CHUNK_BYTES)
            except OSError as exc:  # e.g. standard input closed altogether
                log.debug("input unreadable: %s", exc)
                chunk = b""
            if not chunk:
                break
            self._pass_on(loop, decoder.feed(chunk))
        if decoder.buffered_bytes:  # a last line without its newline still counts
            self._pass_on(loop, decoder.feed(DELIMITER))
        loop.call_soon_threadsafe(self._lines.put_nowait, None)

    def _pass_on(self, loop: asyncio.AbstractEventLoop, lines: list[bytes | LineTooLong]) -> None:
        for line in lines:
            if isinstance(line, LineTooLong):
                log.warning("an input line over %d bytes was not sent", MAX_INPUT_LINE_BYTES)
                continue
            text = line.decode(ENCODING, errors="replace")
            loop.call_soon_threadsafe(self._lines.put_nowait, text)

    async def ask(self, prompt: str) -> str | None:
        """The next input line (the prompt is not shown); None once the input has ended."""
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
