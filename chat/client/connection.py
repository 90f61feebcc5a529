"""The connection to the server: connecting, whole decoded lines in (framed by
chat.protocol.LineDecoder) and text lines out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Final

from chat.client.render import CLIENT_PREFIX
from chat.protocol import ENCODING, LineDecoder, LineTooLong, encode_line

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
RECV_CHUNK_BYTES: Final = 65536
# The server keeps its own lines short; this only bounds what a misbehaving peer could make us hold.
MAX_SERVER_LINE_BYTES: Final = 1 << 20


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
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None = None) -> Connection:
        """Connect (over TLS with the context `tls`), or raise ConnectFailed with a one-sentence
        reason."""
        where = f"{host}:{port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls is not None else None
                ),
                CONNECT_TIMEOUT_S,
            )
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or "not trusted"
            raise ConnectFailed(
                f"cannot connect to {where}: its TLS certificate is not trusted: {reason}"
                " (--ca FILE names the certificate authority to trust)"
            ) from None
        except ssl.SSLError as exc:
            reason = str(exc.reason or exc).lower().replace("_", " ")
            raise ConnectFailed(
                f"cannot connect to {where}: TLS handshake failed: {reason} (is it a TLS port?)"
            ) from None
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
