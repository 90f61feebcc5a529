"""The lock-out attacker (issue 9): many connections from many addresses that never name
themselves, silent or dribbling, reopened when closed; and a legitimate client's timed join.
bench/test_hostile_connections.py's lock-out case runs them."""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.swarm import CONNECT_WAVE
from chat.protocol import (
    ENCODING,
    LINE_TOO_LONG,
    NOTICE_PREFIX,
    QUIT_COMMAND,
    Accepted,
    ClientHandshake,
    LineDecoder,
    command_line,
    encode_line,
)

LEGIT_TIMEOUT_S = 10.0
# What a closed attacker connection last read, by the server's refusal texts (chat/texts.py).
CLOSE_REASONS = (
    ("too many connections from your address", "refused_address_busy"),
    ("too many new connections from your address", "refused_address_rate"),
    ("server full", "refused_full"),
    ("waiting for a name", "pushed_out"),
    ("no name received", "handshake_timeout"),
)


@dataclass
class Slot:
    """One connection the attacker wants open: silent or dribbling, from one source address."""

    kind: str
    host: str
    sock: socket.socket | None = None
    state: str = "idle"  # idle, connecting, open
    greeted: bool = False
    tail: bytes = b""
    retry_at: float = 0.0


@dataclass
class Crowd:
    """The lock-out attacker: many connections, one epoll loop, never a name.

    A dribbling connection sends one byte of a name (never its end) every `dribble_s`; a
    connection the server closes is opened again after `retry_s`, as a real attacker would.
    """

    address: tuple[str, int]
    slots: list[Slot]
    dribble_s: float
    retry_s: float
    closed: Counter = field(default_factory=Counter)
    opened: int = 0
    admitted: int = 0
    connect_failed: int = 0

    def __post_init__(self) -> None:
        self.poll = select.epoll()
        self.by_fd: dict[int, Slot] = {}
        self.connecting = 0
        self.next_dribble = 0.0

    def open_now(self) -> int:
        return sum(1 for s in self.slots if s.state == "open")

    def run(self, until: float) -> None:
        """Open, dribble, read refusals and reopen until `until` (monotonic seconds)."""
        while (now := time.monotonic()) < until:
            for slot in self.slots:
                if self.connecting >= CONNECT_WAVE:
                    break
                if slot.state == "idle" and slot.retry_at <= now:
                    self._open(slot)
            if now >= self.next_dribble:
                for slot in self.slots:
                    if slot.kind == "dribbling" and slot.state == "open":
                        self._send(slot, b"a")
                self.next_dribble = now + self.dribble_s
            for fd, mask in self.poll.poll(0.05):
                slot = self.by_fd.get(fd)
                if slot is not None:
                    self._event(slot, mask)

    def _open(self, slot: Slot) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((slot.host, 0))
        err = sock.connect_ex(self.address)
        self.opened += 1
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.connect_failed += 1
            slot.retry_at = time.monotonic() + self.retry_s
            return
        slot.sock, slot.state, slot.greeted, slot.tail = sock, "connecting", False, b""
        self.connecting += 1
        self.by_fd[sock.fileno()] = slot
        self.poll.register(sock.fileno(), select.EPOLLOUT | select.EPOLLIN)

    def _event(self, slot: Slot, mask: int) -> None:
        assert slot.sock is not None
        if slot.state == "connecting":
            self.connecting -= 1
            if slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.connect_failed += 1
                self._drop(slot, None)
                return
            slot.state = "open"
            self.poll.modify(slot.sock.fileno(), select.EPOLLIN)
        if not mask & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
            return
        try:
            data = slot.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            if not slot.greeted and data.startswith(NOTICE_START):
                slot.greeted = True
                self.admitted += 1
            slot.tail = (slot.tail + data)[-512:]
            return
        self._drop(slot, close_reason(slot.tail))

    def _send(self, slot: Slot, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a closed one is noticed by the read that follows
            slot.sock.send(data)  # type: ignore[union-attr]

    def _drop(self, slot: Slot, reason: str | None) -> None:
        if reason is not None:
            self.closed[reason] += 1
        assert slot.sock is not None
        fd = slot.sock.fileno()
        self.poll.unregister(fd)
        del self.by_fd[fd]
        slot.sock.close()
        slot.sock, slot.state = None, "idle"
        slot.retry_at = time.monotonic() + self.retry_s

    def close(self) -> None:
        for slot in self.slots:
            if slot.sock is not None:
                slot.sock.close()
        self.poll.close()


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
NOTICE_START = NOTICE_PREFIX.encode(ENCODING)  # the greeting, at the start of the first read


def close_reason(tail: bytes) -> str:
    text = tail.decode("utf-8", "replace")
    for words, reason in CLOSE_REASONS:
        if words in text:
            return reason
    return "closed_without_reason"


def legit_join(address: tuple[str, int], name: str) -> float | None:
    """Seconds from connect to the welcome for a client from 127.0.0.1; None if refused."""
    start = time.monotonic()
    deadline = start + LEGIT_TIMEOUT_S
    try:
        with socket.create_connection(address, timeout=LEGIT_TIMEOUT_S) as sock:
            sock.sendall(encode_line(name))
            decoder, handshake = LineDecoder(), ClientHandshake()
            outcome = None
            while outcome is None and time.monotonic() < deadline:
                data = sock.recv(4096)
                if not data:
                    return None
                for raw in decoder.feed(data):
                    if outcome is None and raw is not LINE_TOO_LONG:
                        outcome = handshake.line_received(raw.decode(ENCODING, "replace"))
            if not isinstance(outcome, Accepted):
                return None
            elapsed = time.monotonic() - start
            sock.sendall(encode_line(command_line(QUIT_COMMAND)))
            return elapsed
    except OSError:
        return None
