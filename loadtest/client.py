"""The gevent-friendly TCP ChatClient a ChatUser drives, and the failures it reports.

It only talks the chat protocol, times what it does, reports through Locust's `events.request.fire`
(handed in, so no Locust import here) and records what it receives in a DeliveryLedger.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import time
from collections.abc import Callable

import gevent

from chat.probe import parse_probe, probe_text
from chat.protocol import LINE_TOO_LONG, LineDecoder, encode_line, parse_server_line
from chat.texts import EN, RU
from loadtest.ledger import LAG_BUCKET_NS, DeliveryLedger

log = logging.getLogger("chat_user")

SHUTDOWN_NOTICES = frozenset({EN["shutdown"], RU["shutdown"]})

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
    """An `! ` line from the server."""


class Disconnected(Exception):
    """The connection ended without this side asking."""


class DeliveryProblem(Exception):
    """Found by the end-of-run check."""


class ChatClient:
    """One person's connection: joins, sends probe messages, and reads every line in a greenlet.

    Measures and reports through `fire` (Locust's events.request.fire); records what it receives
    in `ledger`. Under Locust, sockets are gevent's, so a blocked call yields to the other users.
    """

    def __init__(
        self,
        address: tuple[str, int],
        name: str,
        ledger: DeliveryLedger,
        fire: Callable[..., None],
        wall_clock: bool = False,
        deliver_sample: int = 1,
        to_arrival: bool = True,
    ) -> None:
        self.address = address
        self.name = name
        self.ledger = ledger
        self.connected = False
        self.seen: dict[str, list[int]] = {}  # sender -> [first seq, highest seq, new, repeats]
        self.sent_seq = 0
        self._fire = fire
        self._wall_clock = wall_clock
        self._clock = time.time_ns if wall_clock else time.monotonic_ns
        self._to_arrival = to_arrival and ARRIVAL_STAMPS
        self._sample = max(1, deliver_sample)
        self._countdown = self._sample
        self._sock: socket.socket | None = None
        self._decoder = LineDecoder(SERVER_LINE_LIMIT_BYTES)
        self._reader: gevent.Greenlet | None = None
        self._closing = False
        self._last_problem = ""  # last error line or shutdown notice: why the server hung up

    def connect(self, timeout_s: float) -> bool:
        """Connect and join; reports `connect` (connect + handshake time). False on failure."""
        start = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        sock = None
        try:
            sock = socket.create_connection(self.address, timeout=timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(encode_line(self.name))
            early = self._await_welcome(sock, deadline)
        except (OSError, JoinRefused, Disconnected) as exc:
            if sock is not None:
                sock.close()
            self.ledger.counts["connect_failures"] += 1
            self._report("connect", start, 0, exc)
            return False
        sock.settimeout(None)
        self._report("connect", start, 0)
        self._sock, self.connected = sock, True
        self.ledger.counts["connects"] += 1
        self.ledger.receivers.append(self)
        now = self._clock()
        for raw in early:
            self._on_line(raw, now)
        self._reader = gevent.spawn(self._read_forever, sock)
        return True

    def _await_welcome(self, sock: socket.socket, deadline: float) -> list:
        """Read until the welcome (it names us); returns the lines that came after it."""
        marker = f"{self.name}!"  # "welcome, NAME! ..." in every language the server speaks
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
                if raw is LINE_TOO_LONG:
                    continue
                text = raw.decode("utf-8", "replace")
                if text.startswith("! "):
                    raise JoinRefused(text[2:])
                if text.startswith("* ") and marker in text:
                    return lines[i + 1 :]

    def send_probe(self, size: int) -> None:
        """Send the next probe message; reports `send` (time to hand it to the socket)."""
        seq = self.sent_seq + 1
        data = encode_line(probe_text(seq, self._clock(), size))
        start = time.perf_counter()
        try:
            self._sock.sendall(data)  # type: ignore[union-attr]
        except OSError as exc:
            self._report("send", start, len(data), exc)
            self._lost(f"send failed: {type(exc).__name__}")
            return
        self._report("send", start, len(data))
        self.sent_seq = seq
        self.ledger.sent[self.name] = seq

    def close(self) -> None:
        """Leave (`/quit`) and close; the reader ends quietly."""
        self._closing = True
        self.connected = False
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.sendall(b"/quit\n")
            except OSError:
                pass
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

    def _arrival(self, ancillary: list) -> int:
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

    def _on_line(self, raw: bytes | object, now_ns: int) -> None:
        """The per-line path: keep it lean, it runs for every delivery to every user."""
        if raw is LINE_TOO_LONG:
            self.ledger.foreign_lines += 1
            return
        line = parse_server_line(raw.decode("utf-8", "replace"))  # type: ignore[union-attr]
        if line.kind == "chat":
            probe = parse_probe(line.text)
            if probe is None:
                self.ledger.foreign_lines += 1
                return
            seq, sent_ns = probe
            sender: str = line.name  # type: ignore[assignment]
            state = self.seen.get(sender)
            if state is None:
                self.seen[sender] = [seq, seq, 1, 0]
            elif seq > state[1]:
                state[1] = seq
                state[2] += 1
            else:
                state[3] += 1
            ledger = self.ledger
            ledger.deliveries += 1
            self._countdown -= 1
            if self._countdown:
                return
            self._countdown = self._sample
            if ledger.timed(sender, self._wall_clock):
                latency_ms = max(0, now_ns - sent_ns) / 1e6
                self._fire(
                    request_type=REQUEST_TYPE,
                    name="deliver",
                    response_time=latency_ms,
                    response_length=len(raw) + 1,  # type: ignore[arg-type]
                    exception=None,
                    context={},
                )
            else:
                ledger.untimed += 1
        elif line.kind == "error":
            self._last_problem = line.text
            self.ledger.counts["errors"] += 1
            self._fail("error", ServerError(line.text))
        elif line.kind == "notice":
            if line.text in SHUTDOWN_NOTICES:
                self._last_problem = line.text
        else:
            self.ledger.foreign_lines += 1

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
        self._fail("disconnect", Disconnected(reason + last))

    def _report(self, name: str, start: float, length: int, exc: BaseException | None = None):
        self._fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exc,
            context={},
        )

    def _fail(self, name: str, exc: BaseException) -> None:
        self._fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=None,
            response_length=0,
            exception=exc,
            context={},
        )
