"""The gevent-friendly TCP ChatClient a ChatUser drives, and the failures it reports.

It only talks the chat protocol, times what it does, reports through Locust's `events.request`
hook (handed in, so no Locust import here) and records what it receives in a DeliveryLedger.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import sys
import time
from typing import TYPE_CHECKING

import gevent

from chat.probe import parse_probe_times, probe_text
from chat.protocol import (
    LEAVE_LINE,
    Accepted,
    ClientHandshake,
    LineDecoder,
    LineTooLong,
    NameRefused,
    encode_line,
    parse_server_line,
    password_line,
)
from chat.texts import CATALOGUES
from loadtest.ledger import LAG_BUCKET_NS, DeliveryLedger, ReceiverTally

if TYPE_CHECKING:
    from locust.event import EventHook

log = logging.getLogger("chat_user")

SHUTDOWN_NOTICES = frozenset(catalogue["shutdown"] for catalogue in CATALOGUES.values())

REQUEST_TYPE = "chat"
# Linux stamps each received segment with its arrival time (SO_TIMESTAMPNS, CLOCK_REALTIME).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ARRIVAL_STAMPS = sys.platform.startswith("linux")
CMSG_BYTES = 64
_TIMESPEC = struct.Struct("qq")
RECV_BYTES = 64 * 1024
SERVER_LINE_LIMIT_BYTES = 64 * 1024  # a server line is a name plus one client line, far below this


class JoinRefused(Exception):
    """The server answered the name with an error line."""


class ServerError(Exception):
    """An error line from the server."""


class Disconnected(Exception):
    """The connection ended without this side asking."""


class DeliveryProblem(Exception):
    """Found by the end-of-run check."""


JOIN_FAILURES = (OSError, JoinRefused, Disconnected)  # what a `connect` failure is


class ChatClient:
    """One person's connection: joins, sends probe messages, and reads every line in a greenlet.

    Measures and reports through `request` (Locust's events.request); records what it receives in
    `ledger`, its own tallies in `tally`. Under Locust, sockets are gevent's, so a blocked call
    yields to the other users.
    """

    def __init__(
        self,
        address: tuple[str, int],
        name: str,
        ledger: DeliveryLedger,
        request: EventHook,
        wall_clock: bool = False,
        deliver_sample: int = 1,
        to_arrival: bool = True,
        tls: ssl.SSLContext | None = None,
        password: str | None = None,
    ) -> None:
        self.address = address
        self._tls = tls
        self._hello = encode_line(password_line(password)) if password is not None else b""
        self.name = name
        self.ledger = ledger
        self.tally = ReceiverTally()
        self.sent_seq = 0
        self._request = request
        self._wall_clock = wall_clock
        self._clock = time.time_ns if wall_clock else time.monotonic_ns
        self._to_arrival = to_arrival and ARRIVAL_STAMPS and tls is None  # recvmsg: plain only
        self._sample = max(1, deliver_sample)
        self._countdown = self._sample
        self._sock: socket.socket | None = None
        self._decoder = LineDecoder(SERVER_LINE_LIMIT_BYTES)
        self._reader: gevent.Greenlet | None = None
        self._closing = False
        self._last_problem = ""  # last error line or shutdown notice: why the server hung up

    @property
    def connected(self) -> bool:
        """Joined and not gone; kept in the tally, where the end-of-run check reads it."""
        return self.tally.connected

    @connected.setter
    def connected(self, value: bool) -> None:
        self.tally.connected = value

    def connect(self, timeout_s: float) -> bool:
        """Connect and join; reports `connect` (connect + handshake time). False on failure."""
        deadline = time.monotonic() + timeout_s
        sock: socket.socket | None = None
        early: list[bytes | LineTooLong] = []
        with self._request.measure(REQUEST_TYPE, "connect") as outcome:
            sock = socket.create_connection(self.address, timeout=timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.address[0])
            sock.sendall(self._hello + encode_line(self.name))
            early = self._await_welcome(sock, deadline)
        failure = outcome["exception"]
        if failure is not None:
            if sock is not None:
                sock.close()
            if not isinstance(failure, JOIN_FAILURES):
                raise failure  # a bug here, not the server's answer: let it show
            self.ledger.counts["connect_failures"] += 1
            return False
        assert sock is not None
        sock.settimeout(None)
        self._sock, self.connected = sock, True
        self.ledger.counts["connects"] += 1
        self.ledger.receivers.append(self.tally)
        now = self._clock()
        for raw in early:
            self._on_line(raw, now)
        self._reader = gevent.spawn(self._read_forever, sock)
        return True

    def _await_welcome(self, sock: socket.socket, deadline: float) -> list[bytes | LineTooLong]:
        """Read until the server accepts the name; returns the lines that came after the welcome."""
        handshake = ClientHandshake()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no welcome from the server in time")
            sock.settimeout(remaining)
            data = sock.recv(RECV_BYTES)
            if not data:
                raise Disconnected("closed by the server while joining")
            lines = self._decoder.feed(data)
            for i, raw in enumerate(lines):
                if isinstance(raw, LineTooLong):
                    continue
                answer = handshake.line_received(raw.decode("utf-8", "replace"))
                if isinstance(answer, NameRefused):
                    raise JoinRefused(answer.reason)
                if isinstance(answer, Accepted):
                    return lines[i + 1 :]

    def send_probe(self, size: int, late_s: float = 0.0) -> None:
        """Send the next probe message; reports `send` (time to hand it to the socket).

        `late_s`: how far behind its schedule the sender is; the probe then carries the time it
        was due as well, and receivers count latency from it too (corrected).
        """
        seq = self.sent_seq + 1
        now = self._clock()
        intended = now - int(late_s * 1e9) if late_s > 0 else None
        data = encode_line(probe_text(seq, now, size, intended_ns=intended))
        sock = self._sock
        assert sock is not None, "send_probe while not connected"
        with self._request.measure(REQUEST_TYPE, "send", response_length=len(data)) as outcome:
            sock.sendall(data)
        failure = outcome["exception"]
        if failure is not None:
            if not isinstance(failure, OSError):
                raise failure
            self._lost(f"send failed: {type(failure).__name__}")
            return
        self.sent_seq = seq
        self.ledger.sent[self.name] = seq

    def close(self) -> None:
        """Leave and close; the reader ends quietly."""
        self._closing = True
        self.connected = False
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(encode_line(LEAVE_LINE))
            sock.close()
        if self._reader is not None:
            self._reader.kill(block=False)

    def on_data(self, chunk: bytes, now_ns: int) -> None:
        """Bytes from the server, as they came; `now_ns` is when they arrived (the probe clock)."""
        for raw in self._decoder.feed(chunk):
            self._on_line(raw, now_ns)

    def _read_forever(self, sock: socket.socket) -> None:
        reason = "closed by the server"
        try:
            if self._to_arrival:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                except OSError:
                    self._to_arrival = False
            while True:
                if self._to_arrival:
                    data, ancillary, _, _ = sock.recvmsg(RECV_BYTES, CMSG_BYTES)
                    now = self._arrival(ancillary)
                else:
                    data, now = sock.recv(RECV_BYTES), self._clock()
                if not data:
                    break
                self.on_data(data, now)
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        except Exception as exc:  # a bug here must not leave a user that silently stopped reading
            log.exception("reader of %s failed", self.name)
            reason = f"reader failed: {type(exc).__name__}"
        self._lost(reason)

    def _arrival(self, ancillary: list[tuple[int, int, bytes]]) -> int:
        """When the read's last segment reached this machine, on the probe clock."""
        now = self._clock()
        for _level, kind, data in ancillary:
            if kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                lag = max(0, time.time_ns() - seconds * 1_000_000_000 - nanoseconds)
                bucket = lag // LAG_BUCKET_NS
                self.ledger.read_lag[bucket] = self.ledger.read_lag.get(bucket, 0) + 1
                return now - lag
        return now

    def _on_line(self, raw: bytes | LineTooLong, now_ns: int) -> None:
        """The per-line path: keep it lean, it runs for every delivery to every user."""
        if isinstance(raw, LineTooLong):
            self.ledger.foreign_lines += 1
            return
        line = parse_server_line(raw.decode("utf-8", "replace"))
        if line.kind == "chat":
            probe = parse_probe_times(line.text)
            if probe is None or line.name is None:
                self.ledger.foreign_lines += 1
                return
            self._on_probe(line.name, *probe, len(raw) + 1, now_ns)
        elif line.kind == "error":
            self._last_problem = line.text
            self.ledger.counts["errors"] += 1
            self._fire("error", None, 0, ServerError(line.text))
        elif line.kind == "notice":
            if line.text in SHUTDOWN_NOTICES:
                self._last_problem = line.text
        else:
            self.ledger.foreign_lines += 1

    def _on_probe(
        self, sender: str, seq: int, sent_ns: int, intended_ns: int, length: int, now_ns: int
    ) -> None:
        """Count a delivery; every `deliver_sample`-th one is also a timed `deliver` request."""
        self.tally.heard(sender, seq)
        ledger = self.ledger
        ledger.deliveries += 1
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self._sample
        if ledger.timed(sender, self._wall_clock):
            uncorrected = max(0, now_ns - sent_ns)
            ledger.record_latency(max(0, now_ns - intended_ns), uncorrected)
            self._fire("deliver", uncorrected / 1e6, length, None)
        else:
            ledger.untimed += 1

    def _lost(self, reason: str) -> None:
        """The connection is gone; a failure unless this side closed it."""
        if self._closing or not self.connected:
            return
        self.connected = False
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self.ledger.counts["disconnects"] += 1
        last = f" (last from server: {self._last_problem})" if self._last_problem else ""
        self._fire("disconnect", None, 0, Disconnected(reason + last))

    def _fire(
        self, name: str, response_time: float | None, length: int, exc: BaseException | None
    ) -> None:
        """A request whose time is not a span of this process's work (or that has none)."""
        self._request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=response_time,
            response_length=length,
            exception=exc,
            context={},
        )
