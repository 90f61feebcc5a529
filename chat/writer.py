"""The writer loops: one thread each, the only one that sends to, shuts down or closes a socket.

A loop writes what is queued for its boxes with non-blocking sends, joined into one send per turn;
what the kernel refuses waits for writability in a selector (STALLED) and is judged there: the
hard limit, the write deadline (kept by the selector's timeout, no timer per box), and a cut
client's last line, which may wait KILL_LINGER_S for room after the rest of the line in flight.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import selectors
import socket
import threading
import time
from collections import OrderedDict, deque
from typing import cast

from chat.outbox import (
    CHUNK_OVERHEAD_BYTES,
    CLOSED,
    CLOSING,
    DEAD,
    IDLE,
    KILLING,
    OPEN,
    READY,
    RETIRING,
    SEND_FLAGS,
    STALLED,
    CutReason,
    Ledger,
    QueuedOutbox,
    Stream,
    closed,
    drop_all,
    settle_idle,
    take,
)
from chat.tls import committed_tail

log = logging.getLogger("chat.server")

# How long a cut client's last line (why it was cut) may wait for room in its kernel buffer: a
# client that was only paused for a moment learns why, after whole lines only. It costs one short
# line and a socket held a little longer; its reader thread ends at once.
KILL_LINGER_S = 5.0
MAX_LINE_SEARCH_BYTES = 1 << 16  # far longer than any line the server sends
STALLED_RECOUNT_S = 0.01  # how stale the stalled clients' total may be while a writer is busy
FLUSH_ROUNDS = 4  # sends per turn for one client before the others get theirs
ENDINGS_PER_PASS = 64  # connections closed per pass, after every client with lines waiting


class Flush(enum.Enum):
    """How one turn of sending to a box ended."""

    DRAINED = "drained"  # everything queued was written (an open box is IDLE again)
    SHORT = "short"  # the kernel refused part of a send: wait for writability
    MORE = "more"  # FLUSH_ROUNDS sends done and more is queued: the other boxes' turn first
    GONE = "gone"  # the peer is gone


# As module names, for the same reason as chat.outbox's states: one of these is read per send.
DRAINED, SHORT, MORE, GONE = Flush.DRAINED, Flush.SHORT, Flush.MORE, Flush.GONE


class WriterLoop:
    """A thread that writes queued bytes to its clients with non-blocking sends. It alone sends,
    shuts down and closes its boxes' sockets, and it enforces the write deadline."""

    def __init__(self, index: int, ledger: Ledger, write_deadline_s: float) -> None:
        self.ledger = ledger
        self.write_deadline_s = write_deadline_s
        self._ready: deque[QueuedOutbox] = deque()
        # Connections to close: 10,000 of them (a mass disconnect) must not stand between a
        # client still chatting and its next line.
        self._endings: deque[QueuedOutbox] = deque()
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
        self._freed = 0  # cost freed by sends since the ledger was last told (_settle_freed)
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
        ready, endings = self._ready, self._endings
        while not self._stopping:
            # One pass over the boxes ready now: a box requeued for more waits until writable
            # boxes and expired deadlines had their turn, so a busy loop never starves them.
            for _ in range(len(ready)):
                box = ready.popleft()
                if box.state is RETIRING or box.state is CLOSING:
                    endings.append(box)  # after the clients still reading, a few a pass
                else:
                    self._service(box)
            for _ in range(min(ENDINGS_PER_PASS, len(endings))):
                self._service(endings.popleft())
            self._settle_freed()
            if ready or endings:
                self._count_stalled(time.monotonic() - STALLED_RECOUNT_S)
                # Busy: ask the selector only when it watches a socket. The call releases the
                # GIL, and getting it back means waiting behind every reader thread that wants
                # it: once a pass for nothing was a writer's slowest step under load.
                watching = len(self._selector.get_map()) > 1  # the wake pipe is always in it
                events = self._selector.select(0.0) if watching else ()
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
            if box.state is STALLED:
                box.cut(CutReason.WRITE_DEADLINE)
        for box in [b for b in self._retiring if b.retire_at <= now]:
            if box.state is DEAD:  # its last line had its chance: hang up for good
                box.last_line = b""
                self._retiring.discard(box)
                self._unwatch(box)
                hang_up(box.sock, b"")
            else:
                self._close(box)

    def _service(self, box: QueuedOutbox) -> None:
        state = box.state
        try:
            if state is READY or state is STALLED:
                self._serve_open(box)
            elif state is RETIRING:
                self._serve_retiring(box)
            elif state is KILLING:
                self._hang_up(box)
            elif state is CLOSING:
                self._close(box)
            elif state is DEAD and box.last_line and self._tail_sent(box):
                self._retiring.discard(box)
                hang_up(box.sock, b"")
            # IDLE, CLOSED (and DEAD with nothing owed): a stale wake-up, nothing to do
        except Exception:  # a bug must not stop delivery to everyone else on this loop
            log.exception("writer loop: error serving a %s outbox", state.name)

    def _serve_open(self, box: QueuedOutbox) -> None:
        outcome, progress = self._flush(box)
        if outcome is SHORT:
            self._stall(box, progress)
            return
        if outcome is GONE:
            self._gone(box)
            return
        if box.state is STALLED:  # only this loop stalls a box: read otherwise, it is not stalled
            with box.lock:
                if box.state is STALLED:
                    box.to(READY if outcome is MORE else IDLE)
        self._unwatch(box)
        if self._stall_clock:
            self._stall_clock.pop(box, None)
        if outcome is MORE:
            self._ready.append(box)  # more to send: come back after the other clients

    def _stall(self, box: QueuedOutbox, progress: bool) -> None:
        """The kernel refused bytes: wait for writability; (re)start the stall clock."""
        with box.lock:
            if box.state is READY:
                box.to(STALLED)
                box.stall_floor = box.cost  # what is queued now is the writers' lag, not its fault
                progress = True
            elif box.state is not STALLED:
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
        if outcome is DRAINED or outcome is GONE:
            self._close(box)
        elif outcome is SHORT:
            self._watch(box)
        else:
            self._unwatch(box)
            self._ready.append(box)

    def _flush(self, box: QueuedOutbox) -> tuple[Flush, bool]:
        """Send what is queued for `box`, at most FLUSH_ROUNDS sends; also whether the kernel
        took any byte. An open box found empty goes IDLE in the same critical section. What the
        sends free is counted in `_freed`, for the ledger once per pass."""
        progress = False
        for _ in range(FLUSH_ROUNDS):
            data = box.leftover
            if data is None:
                with box.lock:
                    data, merged = take(box)
                self._freed += merged
                if data is None:
                    return DRAINED, progress
            try:
                sent = box.sock.send(data, SEND_FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError:  # the peer is gone; its reader thread sees that and retires it
                box.leftover = data
                return GONE, progress
            self.bytes_out += sent
            if sent < len(data):
                box.leftover = memoryview(data)[sent:]
                if sent:
                    progress = True
                    self._freed += sent
                    with box.lock:
                        box.cost -= sent
                        box.stall_floor = min(box.stall_floor, box.cost)
                return SHORT, progress
            progress = True
            box.leftover = None
            freed = sent + CHUNK_OVERHEAD_BYTES
            self._freed += freed
            with box.lock:  # one lock round-trip per completed send
                box.cost -= freed
                if box.state is STALLED and box.cost < box.stall_floor:
                    box.stall_floor = box.cost
                if not box.chunks:
                    settle_idle(box)
                    return DRAINED, progress
        return MORE, progress

    def _settle_freed(self) -> None:
        """Tell the ledger what this pass's sends freed: one locked update, not one per send."""
        if self._freed:
            freed, self._freed = self._freed, 0
            self.ledger.add(-freed)

    def _gone(self, box: QueuedOutbox) -> None:
        """The peer is gone: drop everything and shut down, which wakes its reader thread."""
        with box.lock:
            if box.state not in OPEN:
                return  # killed or retired meanwhile, and scheduled for that
            box.to(DEAD)
            freed = drop_all(box)
        self._forget(box)
        self.ledger.add(-freed)
        hang_up(box.sock, b"")

    def _hang_up(self, box: QueuedOutbox) -> None:
        """KILLING -> DEAD: the rest of the line in flight and the last line (waiting up to
        KILL_LINGER_S for room), then shutdown; the reader thread is woken at once either way."""
        with box.lock:
            if box.state is not KILLING:
                return
            box.to(DEAD)
            freed = drop_all(box)
            box.last_line = _own_line(committed_tail(box.sock, box.leftover), box.last_line)
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
        if box.state is CLOSED:
            return
        if box.leftover is not None:  # cut while retiring: finish the line in flight first
            with box.lock:
                box.last_line = _own_line(committed_tail(box.sock, box.leftover), box.last_line)
            self._forget(box)
        if not self._tail_sent(box):
            return  # back here when writable, or at its deadline
        with box.lock:
            if closed(box):  # closed by another path while the last line went out
                return
            box.to(CLOSED)
            freed = drop_all(box)
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


def hang_up(sock: Stream, last_line: bytes) -> None:
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
