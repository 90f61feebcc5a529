"""How bytes reach clients: the queued writer loops (default) and the original inline design.

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

import contextlib
import enum
import logging
import math
import selectors
import socket
import struct
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, cast

log = logging.getLogger("chat.server")

SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
MAX_SEND_BYTES = 1 << 20  # one send's join is bounded so a huge backlog never costs a huge copy
RETIRE_LINGER_S = 1.0  # how long a leaving client's last lines may take to flush
# How long a cut client's last line (why it was cut) may wait for room in its kernel buffer: a
# client that was only paused for a moment learns why, after whole lines only. It costs one short
# line and a socket held a little longer; its reader thread ends at once.
KILL_LINGER_S = 5.0
MAX_LINE_SEARCH_BYTES = 1 << 16  # far longer than any line the server sends
STALLED_RECOUNT_S = 0.01  # how stale the stalled clients' total may be while a writer is busy
FLUSH_ROUNDS = 4  # sends per turn for one client before the others get theirs
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


S = BoxState
# Who moves a box: senders (IDLE->READY), the server (kill: ->KILLING/CLOSING), the reader thread
# (retire: ->RETIRING/CLOSING) and the writer loop (everything else).
TRANSITIONS: dict[BoxState, frozenset[BoxState]] = {
    S.IDLE: frozenset({S.READY, S.KILLING, S.RETIRING}),
    S.READY: frozenset({S.IDLE, S.STALLED, S.KILLING, S.RETIRING, S.DEAD}),
    S.STALLED: frozenset({S.IDLE, S.READY, S.KILLING, S.RETIRING, S.DEAD}),
    S.KILLING: frozenset({S.DEAD, S.CLOSING}),
    S.DEAD: frozenset({S.CLOSING}),
    S.RETIRING: frozenset({S.CLOSING, S.CLOSED}),
    S.CLOSING: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}
OPEN = frozenset({S.IDLE, S.READY, S.STALLED})
ACCEPTING = OPEN | {S.RETIRING}  # states in which enqueued bytes are kept


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

    def __init__(self, sock: socket.socket, on_overflow: Callable[[], None]) -> None:
        self.sock = sock
        self.on_overflow = on_overflow


class Ledger:
    """All queued bytes (real cost) against one budget, shared by every writer loop.

    Each box's own cost is exact under its lock; the total moves once per send, per broadcast and
    per flush (not per recipient), under one short lock, so accounting costs nothing noticeable.
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
        sock: socket.socket,
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
            over = state is S.STALLED and self.cost + cost - self.stall_floor > self.max_pending
            if not over:
                self.chunks.append(data)
                self.cost += cost
                if state is not S.IDLE:
                    return cost
                self.to(S.READY)
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
                self.to(S.KILLING)
            elif self.state is S.RETIRING:
                self.to(S.CLOSING)
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
                self.to(S.RETIRING)
            elif self.state in (S.KILLING, S.DEAD):
                self.to(S.CLOSING)
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


BoxT = TypeVar("BoxT", bound=Outbox)


class Delivery(Protocol[BoxT]):
    """What the server needs from a delivery strategy (each has its own outbox class)."""

    def outbox(self, sock: socket.socket, on_overflow: Callable[[], None]) -> BoxT: ...
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


class Flush(enum.Enum):
    """How one turn of sending to a box ended."""

    DRAINED = "drained"  # everything queued was written (an open box is IDLE again)
    SHORT = "short"  # the kernel refused part of a send: wait for writability
    MORE = "more"  # FLUSH_ROUNDS sends done and more is queued: the other boxes' turn first
    GONE = "gone"  # the peer is gone


class WriterLoop:
    """A thread that writes queued bytes to its clients with non-blocking sends. It alone sends,
    shuts down and closes its boxes' sockets, and it enforces the write deadline."""

    def __init__(self, index: int, ledger: Ledger, write_deadline_s: float) -> None:
        self.ledger = ledger
        self.write_deadline_s = write_deadline_s
        self._ready: deque[QueuedOutbox] = deque()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._sleeping = False
        self._stopping = False
        self._retiring: set[QueuedOutbox] = set()
        # STALLED boxes -> when the kernel last took a byte from them (or their stall began). All
        # clocks run for the same write_deadline_s, so insertion order is deadline order and the
        # first entry is the next to expire: O(1) with move_to_end, no timer per box.
        self._stall_clock: OrderedDict[QueuedOutbox, float] = OrderedDict()
        self.stalled_bytes = 0  # what its stalled boxes hold, as of _counted_at
        self._counted_at = 0.0
        self.bytes_out = 0
        self.thread = threading.Thread(target=self._run, name=f"writer-{index}", daemon=True)

    def schedule(self, box: QueuedOutbox) -> None:
        """Hand `box` to this loop; thread-safe, wakes the loop only if it sleeps."""
        self._ready.append(box)
        if self._sleeping:
            self._sleeping = False
            self._wake()

    def stalled_count(self) -> int:
        return len(self._stall_clock)

    def stop(self) -> None:
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full wake pipe means a wake-up is already pending; closed means stopped
            pass

    def _run(self) -> None:
        ready = self._ready
        while not self._stopping:
            # One pass over the boxes ready now: a box requeued for more waits until writable
            # boxes and expired deadlines had their turn, so a busy loop never starves them.
            for _ in range(len(ready)):
                self._service(ready.popleft())
            if ready:
                self._count_stalled(time.monotonic() - STALLED_RECOUNT_S)
                events = self._selector.select(0.0)
            else:
                self._count_stalled(math.inf)  # about to sleep: the figure must be right now
                self._sleeping = True
                # a schedule() that raced with the flag: do not sleep on it
                events = self._selector.select(0.0 if ready else self._timeout())
                self._sleeping = False
            for key, _ in events:
                if key.data is None:
                    self._drain_wake_pipe()
                else:
                    self._service(key.data)
            self._expire()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _count_stalled(self, unless_counted_after: float) -> None:
        """What the stalled boxes hold, for telling writer lag from clients that do not read;
        summed at most every STALLED_RECOUNT_S while busy, and before every sleep."""
        if not self._stall_clock and not self.stalled_bytes:
            return
        now = time.monotonic()
        if self._counted_at > unless_counted_after:
            return
        self._counted_at = now
        ledger = self.ledger
        self.stalled_bytes = sum(box.cost for box in self._stall_clock)
        if ledger.waiting and ledger.lag() <= ledger.high_water // 2:
            with ledger.lock:
                ledger.room.notify_all()

    def _timeout(self) -> float | None:
        """Until the next write deadline or retire deadline; None when there is none."""
        deadlines = []
        if self._stall_clock:
            deadlines.append(next(iter(self._stall_clock.values())) + self.write_deadline_s)
        if self._retiring:
            deadlines.append(min(box.retire_at for box in self._retiring))
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _drain_wake_pipe(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _expire(self) -> None:
        """Cut stalled boxes past the write deadline; close retiring boxes past their linger."""
        if not self._stall_clock and not self._retiring:
            return
        now = time.monotonic()
        clock, started_by = self._stall_clock, now - self.write_deadline_s
        while clock:
            box, since = next(iter(clock.items()))
            if since > started_by:
                break
            del clock[box]
            if box.state is S.STALLED:
                box.cut(CutReason.WRITE_DEADLINE)
        for box in [b for b in self._retiring if b.retire_at <= now]:
            if box.state is S.DEAD:  # its last line had its chance: hang up for good
                box.last_line = b""
                self._retiring.discard(box)
                self._unwatch(box)
                hang_up(box.sock, b"")
            else:
                self._close(box)

    def _service(self, box: QueuedOutbox) -> None:
        state = box.state
        try:
            if state is S.READY or state is S.STALLED:
                self._serve_open(box)
            elif state is S.RETIRING:
                self._serve_retiring(box)
            elif state is S.KILLING:
                self._hang_up(box)
            elif state is S.CLOSING:
                self._close(box)
            elif state is S.DEAD and box.last_line and self._tail_sent(box):
                self._retiring.discard(box)
                hang_up(box.sock, b"")
            # IDLE, CLOSED (and DEAD with nothing owed): a stale wake-up, nothing to do
        except Exception:  # a bug must not stop delivery to everyone else on this loop
            log.exception("writer loop: error serving a %s outbox", state.name)

    def _serve_open(self, box: QueuedOutbox) -> None:
        outcome, progress = self._flush(box)
        if outcome is Flush.SHORT:
            self._stall(box, progress)
            return
        if outcome is Flush.GONE:
            self._gone(box)
            return
        with box.lock:
            if box.state is S.STALLED:
                box.to(S.READY if outcome is Flush.MORE else S.IDLE)
        self._unwatch(box)
        self._stall_clock.pop(box, None)
        if outcome is Flush.MORE:
            self._ready.append(box)  # more to send: come back after the other clients

    def _stall(self, box: QueuedOutbox, progress: bool) -> None:
        """The kernel refused bytes: wait for writability; (re)start the stall clock."""
        with box.lock:
            if box.state is S.READY:
                box.to(S.STALLED)
                box.stall_floor = box.cost  # what is queued now is the writers' lag, not its fault
                progress = True
            elif box.state is not S.STALLED:
                return  # killed or retired meanwhile, and scheduled for that
        if progress or box not in self._stall_clock:
            self._stall_clock[box] = time.monotonic()
            self._stall_clock.move_to_end(box)
        self._watch(box)

    def _serve_retiring(self, box: QueuedOutbox) -> None:
        if box not in self._retiring:
            self._retiring.add(box)
            self._stall_clock.pop(box, None)  # the retire linger is shorter than any deadline
        outcome, _ = self._flush(box)
        if outcome is Flush.DRAINED or outcome is Flush.GONE:
            self._close(box)
        elif outcome is Flush.SHORT:
            self._watch(box)
        else:
            self._unwatch(box)
            self._ready.append(box)

    def _flush(self, box: QueuedOutbox) -> tuple[Flush, bool]:
        """Send what is queued for `box`, at most FLUSH_ROUNDS sends; also whether the kernel
        took any byte. An open box found empty goes IDLE in the same critical section."""
        freed = 0
        progress = False
        try:
            for _ in range(FLUSH_ROUNDS):
                data = box.leftover
                if data is None:
                    with box.lock:
                        data, merged = _take(box)
                    freed += merged
                    if data is None:
                        return Flush.DRAINED, progress
                try:
                    sent = box.sock.send(data, SEND_FLAGS)
                except BlockingIOError:
                    sent = 0
                except OSError:  # the peer is gone; its reader thread sees that and retires it
                    box.leftover = data
                    return Flush.GONE, progress
                self.bytes_out += sent
                if sent < len(data):
                    box.leftover = memoryview(data)[sent:]
                    if sent:
                        progress = True
                        freed += sent
                        with box.lock:
                            box.cost -= sent
                            box.stall_floor = min(box.stall_floor, box.cost)
                    return Flush.SHORT, progress
                progress = True
                box.leftover = None
                freed += sent + CHUNK_OVERHEAD_BYTES
                with box.lock:  # one lock round-trip per completed send
                    box.cost -= sent + CHUNK_OVERHEAD_BYTES
                    box.stall_floor = min(box.stall_floor, box.cost)
                    if not box.chunks:
                        _settle_idle(box)
                        return Flush.DRAINED, progress
            return Flush.MORE, progress
        finally:
            if freed:
                self.ledger.add(-freed)

    def _gone(self, box: QueuedOutbox) -> None:
        """The peer is gone: drop everything and shut down, which wakes its reader thread."""
        with box.lock:
            if box.state not in OPEN:
                return  # killed or retired meanwhile, and scheduled for that
            box.to(S.DEAD)
            freed = _drop_all(box)
        self._forget(box)
        self.ledger.add(-freed)
        hang_up(box.sock, b"")

    def _hang_up(self, box: QueuedOutbox) -> None:
        """KILLING -> DEAD: the rest of the line in flight and the last line (waiting up to
        KILL_LINGER_S for room), then shutdown; the reader thread is woken at once either way."""
        with box.lock:
            if box.state is not S.KILLING:
                return
            box.to(S.DEAD)
            freed = _drop_all(box)
            box.last_line = _own_line(box.leftover, box.last_line)
            box.retire_at = time.monotonic() + KILL_LINGER_S
        self._forget(box)
        self.ledger.add(-freed)
        if self._tail_sent(box):
            hang_up(box.sock, b"")
        else:  # end the reader's recv now; the write side stays open for the last line
            with contextlib.suppress(OSError):
                box.sock.shutdown(socket.SHUT_RD)

    def _tail_sent(self, box: QueuedOutbox) -> bool:
        """Send what is left of the box's last line; True once nothing more is owed (all sent,
        or its linger is over). Otherwise the box waits for writability or its deadline."""
        if box.last_line and time.monotonic() < box.retire_at:
            try:
                sent = box.sock.send(box.last_line, SEND_FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = len(box.last_line)  # nobody to tell any more
            self.bytes_out += sent
            box.last_line = box.last_line[sent:]
            if box.last_line:
                self._retiring.add(box)
                self._watch(box)
                return False
        box.last_line = b""
        self._unwatch(box)
        return True

    def _close(self, box: QueuedOutbox) -> None:
        """RETIRING or CLOSING -> CLOSED: the last line if one is still owed, then close."""
        if box.state is S.CLOSED:
            return
        if box.leftover is not None:  # cut while retiring: finish the line in flight first
            with box.lock:
                box.last_line = _own_line(box.leftover, box.last_line)
            self._forget(box)
        if not self._tail_sent(box):
            return  # back here when writable, or at its deadline
        with box.lock:
            if _closed(box):  # closed by another path while the last line went out
                return
            box.to(S.CLOSED)
            freed = _drop_all(box)
        self._forget(box)
        self._retiring.discard(box)
        with self.ledger.lock:
            self.ledger.total -= freed
            self.ledger.boxes.discard(box)
        with contextlib.suppress(OSError):
            box.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            box.sock.close()

    def _forget(self, box: QueuedOutbox) -> None:
        """The box has nothing more to send: drop the leftover, stop watching, stop its clock."""
        box.leftover = None
        self._unwatch(box)
        self._stall_clock.pop(box, None)

    def _watch(self, box: QueuedOutbox) -> None:
        if not box.registered:
            self._selector.register(box.sock, selectors.EVENT_WRITE, box)
            box.registered = True

    def _unwatch(self, box: QueuedOutbox) -> None:
        if box.registered:
            self._selector.unregister(box.sock)
            box.registered = False


def hang_up(sock: socket.socket, last_line: bytes) -> None:
    """Best-effort, never-blocking last line (this client may be the one not reading), then
    shutdown, which wakes the reader thread blocked in recv on this socket."""
    if last_line:
        try:
            sock.send(last_line, SEND_FLAGS)
        except OSError:
            pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _own_line(leftover: bytes | memoryview | None, line: bytes) -> bytes:
    """`line`, after the rest of the line the last send stopped inside, so the client gets only
    whole lines and a disconnect notice on a line of its own."""
    if not line or not isinstance(leftover, memoryview):
        return line
    whole = cast(bytes, leftover.obj)  # the chunk being sent, of which `leftover` is the tail
    sent = len(whole) - len(leftover)
    if sent == 0 or whole[sent - 1] == ord("\n"):
        return line
    end = bytes(leftover[:MAX_LINE_SEARCH_BYTES]).find(b"\n")
    return (bytes(leftover[: end + 1]) if end >= 0 else b"\n") + line


def _closed(box: QueuedOutbox) -> bool:
    return box.state is S.CLOSED


def _owes(box: QueuedOutbox) -> bool:
    """Has the box still something to send (queued, in flight, or a last line)?"""
    return bool(box.cost or box.last_line)


def _drop_all(box: QueuedOutbox) -> int:
    """Forget the queue and the leftover being sent (caller holds box.lock); returns the cost."""
    freed, box.cost, box.chunks = box.cost, 0, []
    return freed


def _settle_idle(box: QueuedOutbox) -> None:
    """Nothing is queued (caller holds box.lock): an open box goes IDLE, so the next enqueue
    wakes the writer loop again. Other states keep their course."""
    if box.state is S.READY or box.state is S.STALLED:
        box.to(S.IDLE)


def _take(box: QueuedOutbox) -> tuple[bytes | None, int]:
    """Up to MAX_SEND_BYTES of queued chunks as one bytes (caller holds box.lock), and the chunk
    overhead that joining them freed; (None, 0) when nothing is queued."""
    chunks = box.chunks
    if not chunks:
        _settle_idle(box)
        return None, 0
    if len(chunks) == 1:
        box.chunks = []
        return chunks[0], 0
    size = count = 0
    while count < len(chunks) and size < MAX_SEND_BYTES:
        size += len(chunks[count])
        count += 1
    box.chunks = chunks[count:]
    merged = CHUNK_OVERHEAD_BYTES * (count - 1)  # the join is one object, counted once
    box.cost -= merged
    return b"".join(chunks[:count]), merged


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

    def outbox(self, sock: socket.socket, on_overflow: Callable[[], None]) -> QueuedOutbox:
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
        while time.monotonic() < started + timeout_s and any(_owes(box) for box in boxes):
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
            holders.sort(key=lambda box: (box.state is S.STALLED, box.cost), reverse=True)
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

    def __init__(self, sock: socket.socket, on_overflow: Callable[[], None]) -> None:
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

    def outbox(self, sock: socket.socket, on_overflow: Callable[[], None]) -> InlineOutbox:
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
