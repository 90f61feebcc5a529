"""A minimal chat peer on a raw socket: join, send lines, wait for lines, every wait bounded.

It speaks through chat.protocol only (framing, the client handshake, the `/stats` reply), so it
joins a server speaking any language.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Callable

from chat.protocol import (
    STATS_COMMAND,
    ClientHandshake,
    LineDecoder,
    command_line,
    encode_line,
    password_line,
    stats_reply,
)


class Peer:
    """A raw-socket chat client for tests: send lines, wait for lines, all with deadlines."""

    def __init__(
        self,
        address: tuple[str, int],
        name: str | None = None,
        timeout_s: float = 5.0,
        source: str | None = None,
        tls: ssl.SSLContext | None = None,
        password: str | None = None,
    ):
        """Connect (from the loopback address `source`, e.g. an attacker's 127.0.0.2; over TLS
        with the client context `tls`) and read the greeting; with `password`, present it; with
        `name`, join as that name."""
        bind = (source, 0) if source else None
        sock = socket.create_connection(address, timeout=timeout_s, source_address=bind)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=address[0])
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.decoder = LineDecoder(1 << 20)
        self.lines: deque[str] = deque()
        self.closed = False
        self.timeout_s = timeout_s
        self.received_bytes = 0  # everything the server sent this peer, framing included
        self.handshake = ClientHandshake()
        self.expect(lambda line: self.handshake.line_received(line) is None)  # the greeting
        if password is not None:
            self.send(password_line(password))
        if name is not None:
            self.join(name)

    def join(self, name: str) -> str:
        """Send `name`; return the line that accepted (welcome) or refused it."""
        self.send(name)
        return self.expect(lambda line: self.handshake.line_received(line) is not None)

    def send(self, text: str) -> None:
        self.sock.sendall(encode_line(text))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_more(self, deadline: float) -> bool:
        """Read once; False once the server closed the connection or the deadline passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.closed:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.received_bytes += len(data)
        self.lines.extend(line.decode() for line in self.decoder.feed(data))
        return True

    def expect(self, predicate: Callable[[str], object], timeout_s: float | None = None) -> str:
        """Consume lines until one matches; returns it. AssertionError (with what came) if none."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        seen: list[str] = []
        while True:
            while self.lines:
                line = self.lines.popleft()
                seen.append(line)
                if predicate(line):
                    return line
            if not self._read_more(deadline):
                raise AssertionError(f"no matching line; got {seen!r}, closed={self.closed}")

    def expect_line(self, text: str, timeout_s: float | None = None) -> str:
        return self.expect(lambda line: line == text, timeout_s)

    def barrier(self) -> list[str]:
        """Send `/stats` and return every line that arrived before its (one-line) reply.

        The server answers a client's lines in order and an outbox is first in, first out, so
        whatever the server had queued for this peer before it read the `/stats` comes first: an
        exact "nothing else arrived" check, where waiting a while would only be a likely one.
        """
        self.send(command_line(STATS_COMMAND))
        before: list[str] = []
        self.expect(lambda line: stats_reply(line) is not None or before.append(line))
        return before

    def collect(self, quiet_s: float = 0.3) -> list[str]:
        """Everything that arrives until the connection is quiet for `quiet_s`."""
        out = []
        while True:
            out.extend(self.lines)
            self.lines.clear()
            if not self._read_more(time.monotonic() + quiet_s):
                out.extend(self.lines)
                self.lines.clear()
                return out

    def wait_closed(self, timeout_s: float = 5.0) -> list[str]:
        """Read until the server closes the connection; returns the lines that came first."""
        deadline = time.monotonic() + timeout_s
        while self._read_more(deadline):
            pass
        assert self.closed, "server did not close the connection"
        out = list(self.lines)
        self.lines.clear()
        return out

    def close(self) -> None:
        self.sock.close()
