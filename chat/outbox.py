"""One client's outbox and the ledger of everything queued: the state machine of queued delivery.

An outbox's life is an explicit state machine (`BoxState`, `TRANSITIONS`), changed only under the
box's lock; a transition the table does not list fails loudly. The `Ledger` counts every queued
byte at its real cost against one budget and tells senders when the writers lag. chat/writer.py
moves boxes through their states; chat/delivery.py is what the server calls.
"""

from __future__ import annotations

import enum
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chat.writer import WriterLoop

# Sends never block a writer (or the TLS layer's flush): what the kernel refuses waits.
SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class Stream(Protocol):
    """What an outbox writes to and its session reads from: a plain client's socket itself, or a
    TLS client's chat.tls.TlsStream (same calls, encrypted on the way)."""

    def recv(self, bufsize: int, /) -> bytes: ...
    def send(self, data: bytes | memoryview, flags: int = ..., /) -> int: ...
    def sendall(self, data: bytes, /) -> None: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...


RETIRE_LINGER_S = 1.0  # how long a leaving client's last lines may take to flush
# What one queued chunk costs beyond its payload: the bytes object's header and its list slot.
# Without it 10,000 one-line replies of 30 bytes would be counted as 300 KB while holding 710 KB.
CHUNK_OVERHEAD_BYTES = sys.getsizeof(b"") + struct.calcsize("P")
# A reader whose kernel buffers stay full this long without taking a byte is gone or hostile.
# Longer than TCP's retransmission back-off after a few losses (1+2+4+8 s) and than a stopped
# process or a laptop lid needs to come back; between NATS's 10 s write_deadline and Redis's 60 s
# pub/sub soft limit. At the flood budget's rate it also bounds what one stalled client can hold.
WRITE_DEADLINE_S = 30.0
# All clients' queued bytes (real cost) together. Healthy delivery holds little (the 100-sender
# burst is about 2 MB per reader); 512 MiB is 32 clients stalled at the 16 MiB hard limit at once,
# and leaves a 2 GB machine room for 10,000 threads' stacks. Shared broadcast blobs are charged
# to every box that holds them, so real memory stays below this figure.
MAX_QUEUED_TOTAL_BYTES = 512 * 1024 * 1024
# Writer lag (queued bytes the kernel has not refused: the writers' own backlog) above this share
# of the budget makes senders wait for the writers, so the server's lag never grows into the
# budget and costs a healthy reader its connection; they go on once it is under half of it.
CONGESTED_SHARE = 4  # high water: max_queued_total / 4 (128 MiB by default)
MAX_SEND_BYTES = 1 << 20  # one send's join is bounded so a huge backlog never costs a huge copy


class BoxState(enum.Enum):
    """Where one queued outbox is in its life. Changed only under the box's lock."""

    IDLE = "idle"  # open, nothing queued, not with its writer loop
    READY = "ready"  # open, handed to its writer loop (in the ready queue or being flushed)
    STALLED = "stalled"  # open, the kernel refused bytes: waiting for writability in the selector
    KILLING = "killing"  # cut: the writer loop will send the last line and shut the socket down
    DEAD = "dead"  # shut down, queue dropped; waiting for the reader thread to retire it
    RETIRING = "retiring"  # the reader thread is done: flush for a moment, then close
    CLOSING = "closing"  # retired after a cut (or cut while retiring): close at once
    CLOSED = "closed"  # the socket is closed; nothing happens any more

    # Members are singletons: identity is equality. Enum's own __hash__ is a Python call, paid on
    # every state check of every enqueue; object's is not.
    __hash__ = object.__hash__


# The states as module names. On Python 3.11 reading a member through its class (`BoxState.IDLE`)
# costs about 150 ns and a module name about 15; a delivery reads several.
IDLE = BoxState.IDLE
READY = BoxState.READY
STALLED = BoxState.STALLED
KILLING = BoxState.KILLING
DEAD = BoxState.DEAD
RETIRING = BoxState.RETIRING
CLOSING = BoxState.CLOSING
CLOSED = BoxState.CLOSED
# Who moves a box: senders (IDLE->READY), the server (kill: ->KILLING/CLOSING), the reader thread
# (retire: ->RETIRING/CLOSING) and the writer loop (everything else).
TRANSITIONS: dict[BoxState, frozenset[BoxState]] = {
    IDLE: frozenset({READY, KILLING, RETIRING}),
    READY: frozenset({IDLE, STALLED, KILLING, RETIRING, DEAD}),
    STALLED: frozenset({IDLE, READY, KILLING, RETIRING, DEAD}),
    KILLING: frozenset({DEAD, CLOSING}),
    DEAD: frozenset({CLOSING}),
    RETIRING: frozenset({CLOSING, CLOSED}),
    CLOSING: frozenset({CLOSED}),
    CLOSED: frozenset(),
}
OPEN = frozenset({IDLE, READY, STALLED})
ACCEPTING = OPEN | {RETIRING}  # states in which enqueued bytes are kept


class BoxStateError(RuntimeError):
    """A transition TRANSITIONS does not list: a bug in this module, never a client's doing."""


class CutReason(enum.Enum):
    """Why a client was disconnected as a slow consumer; `box.cut_reason` during on_overflow."""

    HARD_LIMIT = "hard limit"  # the backlog grew over max_pending while the kernel refused
    WRITE_DEADLINE = "write deadline"  # the kernel took no byte for write_deadline_s
    MEMORY_BUDGET = "memory budget"  # evicted as the biggest holder over max_queued_total


class Outbox:
    """What the server holds for one client: the socket and the slow-consumer callback."""

    __slots__ = ("sock", "on_overflow")

    def __init__(self, sock: Stream, on_overflow: Callable[[], None]) -> None:
        self.sock = sock
        self.on_overflow = on_overflow


class Ledger:
    """All queued bytes (real cost) against one budget, shared by every writer loop.

    Each box's own cost is exact under its lock; the total moves once per send, per broadcast and
    per writer pass (not per recipient), under one short lock, so accounting costs nothing
    noticeable. It may run ahead of the boxes by what one writer pass freed.
    """

    def __init__(self, limit: int) -> None:
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)  # senders waiting for the writers' lag to fall
        self.waiting = 0
        self.limit = limit
        self.high_water = limit // CONGESTED_SHARE
        self.total = 0
        self.stalled: Callable[[], int] = lambda: 0  # queued bytes the kernel refused, all loops
        self.boxes: set[QueuedOutbox] = set()  # every box not yet CLOSED, for eviction
        self.evicted = 0
        self.cut_hard_limit = 0
        self.cut_write_deadline = 0

    def add(self, cost: int) -> bool:
        """Count `cost` more (negative: less); True when the total is now over the budget."""
        with self.lock:
            self.total += cost
            if cost < 0 and self.waiting and self.lag() <= self.high_water // 2:
                self.room.notify_all()
            return self.total > self.limit

    def lag(self) -> int:
        """Queued bytes not refused by any kernel: what the writers have yet to get to."""
        return self.total - self.stalled()

    def congested(self) -> bool:
        """Is the writers' lag over the high water? Cheap while the total is under it."""
        return self.total > self.high_water and self.lag() > self.high_water

    def count_cut(self, reason: CutReason) -> None:
        with self.lock:
            if reason is CutReason.HARD_LIMIT:
                self.cut_hard_limit += 1
            elif reason is CutReason.WRITE_DEADLINE:
                self.cut_write_deadline += 1
            else:
                self.evicted += 1


class QueuedOutbox(Outbox):
    """One client's queue and state. `lock` guards state, chunks, cost, stall_floor, last_line;
    `leftover` and `registered` belong to the writer loop alone."""

    __slots__ = (
        "lock",
        "state",
        "chunks",
        "cost",
        "max_pending",
        "stall_floor",
        "last_line",
        "retire_at",
        "cut_reason",
        "loop",
        "leftover",
        "registered",
        "sealed",
    )

    def __init__(
        self,
        sock: Stream,
        on_overflow: Callable[[], None],
        max_pending: int,
        loop: WriterLoop,
    ) -> None:
        super().__init__(sock, on_overflow)
        self.lock = threading.Lock()
        self.state = BoxState.IDLE
        self.chunks: list[bytes] = []
        self.cost = 0  # queued chunks plus the leftover being sent, at CHUNK_OVERHEAD_BYTES each
        self.max_pending = max_pending
        self.stall_floor = 0  # the lowest `cost` since the current stall began
        self.last_line = b""  # what to send before hanging up; consumed when sent
        self.retire_at = 0.0
        self.cut_reason: CutReason | None = None
        self.loop = loop
        self.leftover: bytes | memoryview | None = None
        self.registered = False
        self.sealed = False  # a last line is queued (the server's goodbye): nothing goes after it

    def to(self, new: BoxState) -> None:
        """Move to `new`; the caller holds the lock. Unlisted transitions fail loudly."""
        if new not in TRANSITIONS[self.state]:
            raise BoxStateError(f"outbox {self.state.name} -> {new.name}")
        self.state = new

    def enqueue(self, data: bytes, cost: int) -> int:
        """Queue `data` (costing `cost`); wake the writer loop if the box was IDLE.

        Returns the cost added (0 if dropped). Never blocks on I/O; cuts the client when a
        stalled backlog grows past max_pending.
        """
        with self.lock:
            state = self.state
            if state not in ACCEPTING or self.sealed:
                return 0
            over = state is STALLED and self.cost + cost - self.stall_floor > self.max_pending
            if not over:
                self.chunks.append(data)
                self.cost += cost
                if state is not IDLE:
                    return cost
                self.state = READY  # IDLE -> READY (listed); per delivery, so without to()
        if over:
            self.cut(CutReason.HARD_LIMIT)
            return 0
        self.loop.schedule(self)
        return cost

    def seal(self, last_line: bytes) -> int:
        """Queue `last_line` after what is queued and accept nothing after it; the cost added."""
        added = self.enqueue(last_line, len(last_line) + CHUNK_OVERHEAD_BYTES)
        with self.lock:
            self.sealed = True
        return added

    def request_kill(self, last_line: bytes, only_if_queued: bool = False) -> int:
        """Drop the queue and hand the box to its writer loop to hang up; returns the cost freed.
        With `only_if_queued`, `last_line` is sent only if the queue still holds it (it was
        sealed with it and the writer has not taken it yet), so it never goes out twice."""
        with self.lock:
            if only_if_queued and not self.chunks:
                last_line = b""
            if self.state in OPEN:
                self.to(KILLING)
            elif self.state is RETIRING:
                self.to(CLOSING)
            else:
                return 0
            self.last_line = last_line
            freed = self._drop_chunks()
        self.loop.schedule(self)
        return freed

    def request_retire(self) -> None:
        """The reader thread is done: flush briefly then close, or close at once if cut."""
        with self.lock:
            if self.state in OPEN:
                self.retire_at = time.monotonic() + RETIRE_LINGER_S
                self.to(RETIRING)
            elif self.state in (KILLING, DEAD):
                self.to(CLOSING)
            else:
                return
        self.loop.schedule(self)

    def cut(self, reason: CutReason) -> None:
        """Disconnect as a slow consumer: the server's callback (its line, its count), then make
        sure the box is going even if the callback chose not to kill it."""
        with self.lock:
            if self.cut_reason is not None or self.state not in ACCEPTING:
                return
            self.cut_reason = reason
        self.loop.ledger.count_cut(reason)
        self.on_overflow()
        self.loop.ledger.add(-self.request_kill(b""))

    def _drop_chunks(self) -> int:
        """Forget what is queued (caller holds the lock); returns its cost. The leftover being
        sent stays counted until the writer loop drops it."""
        freed = sum(len(chunk) for chunk in self.chunks) + CHUNK_OVERHEAD_BYTES * len(self.chunks)
        self.chunks = []
        self.cost -= freed
        return freed


def closed(box: QueuedOutbox) -> bool:
    return box.state is CLOSED


def owes(box: QueuedOutbox) -> bool:
    """Has the box still something to send (queued, in flight, or a last line)?"""
    return bool(box.cost or box.last_line)


def drop_all(box: QueuedOutbox) -> int:
    """Forget the queue and the leftover being sent (caller holds box.lock); returns the cost."""
    freed, box.cost, box.chunks = box.cost, 0, []
    return freed


def settle_idle(box: QueuedOutbox) -> None:
    """Nothing is queued (caller holds box.lock): an open box goes IDLE, so the next enqueue
    wakes the writer loop again. Other states keep their course."""
    if box.state is READY or box.state is STALLED:
        box.state = IDLE  # both listed; once per delivery, so without to()


def take(box: QueuedOutbox) -> tuple[bytes | None, int]:
    """Up to MAX_SEND_BYTES of queued chunks as one bytes (caller holds box.lock), and the chunk
    overhead that joining them freed; (None, 0) when nothing is queued."""
    chunks = box.chunks
    if not chunks:
        settle_idle(box)
        return None, 0
    count = len(chunks)
    if count == 1:
        box.chunks = []
        return chunks[0], 0
    if box.cost <= MAX_SEND_BYTES:  # all of it fits (cost >= payload): no count per chunk
        box.chunks = []
        data = b"".join(chunks)
    else:
        size = count = 0
        while count < len(chunks) and size < MAX_SEND_BYTES:
            size += len(chunks[count])
            count += 1
        box.chunks = chunks[count:]
        data = b"".join(chunks[:count])
    merged = CHUNK_OVERHEAD_BYTES * (count - 1)  # the join is one object, counted once
    box.cost -= merged
    return data, merged
