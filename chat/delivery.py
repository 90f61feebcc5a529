"""How bytes reach clients: the queued writer loops (default) and the original inline design.

This module is what the server calls; the outbox state machine and the ledger are chat/outbox.py,
the writer loops chat/writer.py.

Both strategies offer the same operations to the server: `send` (to one client), `broadcast`
(chat lines to many), `kill` (disconnect now, e.g. a slow consumer), `retire` (the reader thread is
done: flush briefly, then close), `farewell` (a last line to everyone, then disconnect all) and
`counters` (for /stats).

Queued: every client has an outbox whose life is an explicit state machine (`BoxState`,
`TRANSITIONS`). A sender appends one encoded blob per read's worth of lines to each recipient's
outbox and wakes a writer loop only when that outbox goes from IDLE to READY. The writer loop joins
whatever is queued for a client into one non-blocking `send`; what the kernel refuses waits for
writability in a selector (STALLED). The writer loops own every socket operation except the reader
thread's `recv` (shutdown and close included), so a socket is never closed under a concurrent
send. No lock is held across a blocking call: box locks and the ledger lock guard only memory.

Slow consumers are judged by what the kernel refuses, never by the writer loops' own lag:
- a box waiting in the ready queue is never cut, whatever it holds;
- a STALLED box is cut when its backlog grows more than `max_pending` above the lowest it has been
  since the stall began (what was queued when the stall began is the writers' lag, not the
  reader's doing), or when the kernel has accepted no byte for `write_deadline_s`;
- all queued bytes, at their real cost, stay under one `max_queued_total` budget: over it, the
  biggest holders are evicted, stalled ones first, as Redis's maxmemory-clients does.

Inline: the original assignment's design, kept as the benchmarks' baseline. The sender's thread
writes each message to each recipient with a blocking `sendall`, under that recipient's lock; one
stalled reader blocks every sender that reaches it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from chat.outbox import (
    CHUNK_OVERHEAD_BYTES,
    MAX_QUEUED_TOTAL_BYTES,
    OPEN,
    RETIRE_LINGER_S,
    STALLED,
    TRANSITIONS,
    WRITE_DEADLINE_S,
    BoxState,
    BoxStateError,
    CutReason,
    Ledger,
    Outbox,
    QueuedOutbox,
    Stream,
    owes,
)
from chat.writer import WriterLoop, hang_up

__all__ = [  # what the server, the tests and the docs name from here
    "CHUNK_OVERHEAD_BYTES",
    "MAX_QUEUED_TOTAL_BYTES",
    "RETIRE_LINGER_S",
    "TRANSITIONS",
    "WRITE_DEADLINE_S",
    "BoxState",
    "BoxStateError",
    "CutReason",
    "Delivery",
    "InlineDelivery",
    "Outbox",
    "QueuedDelivery",
    "QueuedOutbox",
    "WriterLoop",
    "make_delivery",
]

log = logging.getLogger("chat.server")


BoxT = TypeVar("BoxT", bound=Outbox)


class Delivery(Protocol[BoxT]):
    """What the server needs from a delivery strategy (each has its own outbox class)."""

    def outbox(self, sock: Stream, on_overflow: Callable[[], None]) -> BoxT: ...
    def send(self, box: BoxT, data: bytes) -> None: ...
    def broadcast(
        self, sender: BoxT | None, recipients: Iterable[BoxT], lines: Sequence[bytes]
    ) -> int: ...
    def kill(self, box: BoxT, last_line: bytes) -> None: ...
    def retire(self, box: BoxT) -> None: ...
    def farewell(self, boxes: Sequence[BoxT], line: bytes, timeout_s: float) -> None: ...
    def bytes_out(self) -> int: ...
    def counters(self) -> dict[str, int]: ...
    def congested(self) -> bool: ...
    def wait_for_writers(self, timeout_s: float) -> None: ...
    def close(self) -> None: ...


class QueuedDelivery:
    """The default: outboxes with explicit state, coalesced non-blocking writes from writer
    loops, slow consumers judged by what the kernel refuses, one memory budget for all."""

    def __init__(
        self,
        max_pending: int,
        writers: int = 1,
        *,
        write_deadline_s: float = WRITE_DEADLINE_S,
        max_queued_total: int = MAX_QUEUED_TOTAL_BYTES,
    ) -> None:
        self.max_pending = max_pending
        self.ledger = Ledger(max_queued_total)
        self._loops = [WriterLoop(i, self.ledger, write_deadline_s) for i in range(writers)]
        self.ledger.stalled = lambda: sum(loop.stalled_bytes for loop in self._loops)
        self._next = 0
        self._evicting = threading.Lock()
        for loop in self._loops:
            loop.thread.start()

    def outbox(self, sock: Stream, on_overflow: Callable[[], None]) -> QueuedOutbox:
        self._next = (self._next + 1) % len(self._loops)
        box = QueuedOutbox(sock, on_overflow, self.max_pending, self._loops[self._next])
        with self.ledger.lock:
            self.ledger.boxes.add(box)
        return box

    def send(self, box: QueuedOutbox, data: bytes) -> None:
        added = box.enqueue(data, len(data) + CHUNK_OVERHEAD_BYTES)
        if added and self.ledger.add(added):
            self._evict()

    def broadcast(
        self,
        sender: QueuedOutbox | None,
        recipients: Iterable[QueuedOutbox],
        lines: Sequence[bytes],
    ) -> int:
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        cost = len(data) + CHUNK_OVERHEAD_BYTES
        added = count = 0
        for box in recipients:
            if box is not sender:
                added += box.enqueue(data, cost)
                count += 1
        if added and self.ledger.add(added):  # one ledger update per broadcast, not per box
            self._evict()
        return count

    def kill(self, box: QueuedOutbox, last_line: bytes) -> None:
        freed = box.request_kill(last_line)
        if freed:
            self.ledger.add(-freed)

    def retire(self, box: QueuedOutbox) -> None:
        box.request_retire()

    def congested(self) -> bool:
        """Are the writers so far behind that senders should wait (`wait_for_writers`)?"""
        return self.ledger.congested()

    def wait_for_writers(self, timeout_s: float) -> None:
        """Block (holding nothing) until the writers' lag is down to half the high water, or
        `timeout_s` passes."""
        ledger = self.ledger
        with ledger.lock:
            ledger.waiting += 1
            try:
                ledger.room.wait(timeout_s)
            finally:
                ledger.waiting -= 1

    def farewell(self, boxes: Sequence[QueuedOutbox], line: bytes, timeout_s: float) -> None:
        """Queue `line` after what each client already has and nothing after it, wait (bounded)
        for it to go out, disconnect."""
        added = sum(box.seal(line) for box in boxes)
        if added:
            self.ledger.add(added)
        started = time.monotonic()
        while time.monotonic() < started + timeout_s / 2 and any(box.cost for box in boxes):
            time.sleep(0.01)
        # Who still has a backlog would not get the goodbye in time: drop the backlog, finish
        # the line in flight, and send the goodbye next (once: only if still queued).
        for box in boxes:
            if box.cost:
                self.ledger.add(-box.request_kill(line, only_if_queued=True))
        while time.monotonic() < started + timeout_s and any(owes(box) for box in boxes):
            time.sleep(0.01)
        for box in boxes:
            self.kill(box, b"")

    def bytes_out(self) -> int:
        return sum(loop.bytes_out for loop in self._loops)

    def counters(self) -> dict[str, int]:
        """For /stats: queued bytes (real cost), stalled clients now, cuts by reason so far."""
        ledger = self.ledger
        return {
            "queued_bytes": max(0, ledger.total),  # briefly negative when a send beats its count
            "stalled_clients": sum(loop.stalled_count() for loop in self._loops),
            "evicted": ledger.evicted,
            "cut_hard_limit": ledger.cut_hard_limit,
            "cut_write_deadline": ledger.cut_write_deadline,
        }

    def close(self) -> None:
        for loop in self._loops:
            loop.stop()
        for loop in self._loops:
            loop.thread.join(0.2)  # daemon threads: shutdown's time budget matters more

    def _evict(self) -> None:
        """Over the budget: cut the biggest holders, stalled ones first, until back under it."""
        if not self._evicting.acquire(blocking=False):
            return  # another thread is already evicting for the same excess
        try:
            with self.ledger.lock:
                excess = self.ledger.total - self.ledger.limit
                boxes = list(self.ledger.boxes)
            if excess <= 0:
                return
            holders = [box for box in boxes if box.state in OPEN and box.cost > 0]
            holders.sort(key=lambda box: (box.state is STALLED, box.cost), reverse=True)
            for box in holders:
                if excess <= 0:
                    break
                excess -= box.cost
                box.cut(CutReason.MEMORY_BUDGET)
        finally:
            self._evicting.release()


class InlineOutbox(Outbox):
    """The inline strategy's per-client state: a lock that is held across a blocking send."""

    __slots__ = ("lock", "closed", "sent_bytes")

    def __init__(self, sock: Stream, on_overflow: Callable[[], None]) -> None:
        super().__init__(sock, on_overflow)
        self.lock = threading.Lock()
        self.closed = False
        self.sent_bytes = 0  # written by sender threads, under `lock`


class InlineDelivery:
    """The original design: the sender's thread writes every message to every socket, blocking."""

    def __init__(self) -> None:
        self._retired_bytes = 0
        self._live: set[InlineOutbox] = set()
        self._lock = threading.Lock()

    def outbox(self, sock: Stream, on_overflow: Callable[[], None]) -> InlineOutbox:
        box = InlineOutbox(sock, on_overflow)
        with self._lock:
            self._live.add(box)
        return box

    def send(self, box: InlineOutbox, data: bytes) -> None:
        with box.lock:  # held across a blocking send: the defect this baseline exists to show
            if box.closed:
                return
            try:
                box.sock.sendall(data)
                box.sent_bytes += len(data)
            except OSError:
                pass

    def broadcast(
        self,
        sender: InlineOutbox | None,
        recipients: Iterable[InlineOutbox],
        lines: Sequence[bytes],
    ) -> int:
        targets = [box for box in recipients if box is not sender]
        for line in lines:
            for box in targets:
                self.send(box, line)
        return len(targets)

    def kill(self, box: InlineOutbox, last_line: bytes) -> None:
        hang_up(box.sock, last_line)

    def retire(self, box: InlineOutbox) -> None:
        self.kill(box, b"")  # wakes any sender blocked on this socket
        with box.lock:
            box.closed = True
            box.sock.close()
        with self._lock:
            self._live.discard(box)
            self._retired_bytes += box.sent_bytes

    def farewell(self, boxes: Sequence[InlineOutbox], line: bytes, timeout_s: float) -> None:
        for box in boxes:
            self.kill(box, line)

    def bytes_out(self) -> int:
        with self._lock:
            return self._retired_bytes + sum(box.sent_bytes for box in self._live)

    def counters(self) -> dict[str, int]:
        """The same keys as queued delivery; nothing is queued here, so nothing is cut."""
        return dict.fromkeys(
            ("queued_bytes", "stalled_clients", "evicted", "cut_hard_limit", "cut_write_deadline"),
            0,
        )

    def congested(self) -> bool:
        """Never: each sender writes every message itself, there is no writer to wait for."""
        return False

    def wait_for_writers(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass


def make_delivery(
    kind: str,
    max_pending: int,
    writers: int,
    *,
    write_deadline_s: float = WRITE_DEADLINE_S,
    max_queued_total: int = MAX_QUEUED_TOTAL_BYTES,
) -> Delivery[Any]:
    """The strategy the server was told to use (`--delivery`), with its limits."""
    if kind == "queued":
        return QueuedDelivery(
            max_pending,
            writers,
            write_deadline_s=write_deadline_s,
            max_queued_total=max_queued_total,
        )
    if kind == "inline":
        return InlineDelivery()
    raise ValueError(f"unknown delivery strategy: {kind}")
