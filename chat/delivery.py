"""How bytes reach clients: the queued writer loops (default) and the original inline design.

Both strategies offer the same operations to the server: `send` (to one client), `broadcast`
(chat lines to many), `kill` (disconnect now, e.g. a slow consumer), `retire` (the reader thread is
done: flush briefly, then close) and `farewell` (a last line to everyone, then disconnect all).

Queued: every client has a byte-bounded outbox. A sender appends one encoded blob per read's worth
of lines to each recipient's outbox and wakes a writer loop only when that outbox goes from empty
to non-empty. The writer loop joins whatever is queued for a client into one non-blocking `send`;
what the kernel does not take waits for writability in a selector. The writer loops own every
socket operation except the reader thread's `recv` (shutdown and close included), so a socket is
never closed under a concurrent send. No lock is held across a blocking call.

Inline: the original assignment's design, kept as the benchmarks' baseline. The sender's thread
writes each message to each recipient with a blocking `sendall`, under that recipient's lock; one
stalled reader blocks every sender that reaches it.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

log = logging.getLogger("chat.server")

SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
MAX_SEND_BYTES = 1 << 20  # one send's join is bounded so a huge backlog never costs a huge copy
RETIRE_LINGER_S = 1.0  # how long a leaving client's last lines may take to flush
FLUSH_ROUNDS = 4  # sends per turn for one client before the others get theirs


class Outbox:
    """Per-client delivery state. Fields other than the queue are owned by one writer loop."""

    __slots__ = (
        "sock",
        "lock",
        "chunks",
        "pending",
        "max_pending",
        "scheduled",
        "closed",
        "leftover",
        "registered",
        "kill_line",
        "killed",
        "retire_at",
        "loop",
        "sent_bytes",
        "on_overflow",
    )

    def __init__(
        self,
        sock: socket.socket,
        max_pending: int,
        loop: WriterLoop | None,
        on_overflow: Callable[[], None],
    ) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.chunks: list[bytes] = []
        self.pending = 0
        self.max_pending = max_pending
        self.scheduled = False
        self.closed = False
        self.leftover: bytes | memoryview | None = None
        self.registered = False
        self.kill_line: bytes | None = None
        self.killed = False
        self.retire_at: float | None = None
        self.loop = loop
        self.sent_bytes = 0  # written by the inline strategy from sender threads, under `lock`
        self.on_overflow = on_overflow

    def enqueue(self, data: bytes) -> None:
        """Queue `data`; wake the writer loop if the queue was empty. Never blocks on I/O."""
        with self.lock:
            if self.closed or self.kill_line is not None:
                return
            if self.pending + len(data) > self.max_pending:
                overflow = True
            else:
                overflow = False
                self.chunks.append(data)
                self.pending += len(data)
                if self.scheduled:
                    return
                self.scheduled = True
        if overflow:
            self.on_overflow()
        else:
            self.loop.schedule(self)  # type: ignore[union-attr]


class Delivery(Protocol):
    """What the server needs from a delivery strategy."""

    def outbox(self, sock: socket.socket, on_overflow: Callable[[], None]) -> Outbox: ...
    def send(self, box: Outbox, data: bytes) -> None: ...
    def broadcast(
        self, sender: Outbox | None, recipients: Iterable[Outbox], lines: Sequence[bytes]
    ) -> int: ...
    def kill(self, box: Outbox, last_line: bytes) -> None: ...
    def retire(self, box: Outbox) -> None: ...
    def farewell(self, boxes: Sequence[Outbox], line: bytes, timeout_s: float) -> None: ...
    def bytes_out(self) -> int: ...
    def close(self) -> None: ...


class WriterLoop:
    """A thread that writes queued bytes to its clients with non-blocking sends."""

    def __init__(self, index: int) -> None:
        self._ready: deque[Outbox] = deque()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._sleeping = False
        self._stopping = False
        self._retiring: set[Outbox] = set()
        self.bytes_out = 0
        self.thread = threading.Thread(target=self._run, name=f"writer-{index}", daemon=True)

    def schedule(self, box: Outbox) -> None:
        """Hand `box` to this loop; thread-safe, wakes the loop only if it sleeps."""
        self._ready.append(box)
        if self._sleeping:
            self._sleeping = False
            self._wake()

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
            while ready:
                self._service(ready.popleft())
            self._sleeping = True
            if ready:  # a schedule() that raced with the flag: do not sleep on it
                self._sleeping = False
                continue
            events = self._selector.select(self._timeout())
            self._sleeping = False
            for key, _ in events:
                if key.data is None:
                    self._drain_wake_pipe()
                else:
                    self._service(key.data)
            self._expire_retiring()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _timeout(self) -> float | None:
        if not self._retiring:
            return None
        now = time.monotonic()
        return max(0.0, min(box.retire_at for box in self._retiring) - now)  # type: ignore[type-var]

    def _drain_wake_pipe(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _service(self, box: Outbox) -> None:
        if box.closed:
            return
        if box.kill_line is not None and not box.killed:
            self._kill_now(box)
        if box.retire_at is not None:
            self._retiring.add(box)
            if box.killed or self._flush(box):
                self._close_now(box)
            return
        if not box.killed:
            self._flush(box)

    def _flush(self, box: Outbox) -> bool:
        """Send what is queued for `box`; True when everything was written."""
        for _ in range(FLUSH_ROUNDS):
            data = box.leftover
            if data is None:
                with box.lock:
                    if not box.chunks:
                        box.scheduled = False
                        break
                    data = _take(box)
            try:
                sent = box.sock.send(data, SEND_FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError:  # the peer is gone; its reader thread sees that and retires it
                self._drop_queue(box)
                return True
            self.bytes_out += sent
            if sent < len(data):
                with box.lock:
                    box.pending -= sent
                box.leftover = memoryview(data)[sent:]
                self._watch(box)
                return False
            box.leftover = None
            with box.lock:
                box.pending -= sent
                if not box.chunks:
                    box.scheduled = False
                    break
        else:
            self._ready.append(box)  # more to send: come back after the other clients
            return False
        self._unwatch(box)
        return True

    def _watch(self, box: Outbox) -> None:
        if not box.registered:
            self._selector.register(box.sock, selectors.EVENT_WRITE, box)
            box.registered = True

    def _unwatch(self, box: Outbox) -> None:
        if box.registered:
            self._selector.unregister(box.sock)
            box.registered = False

    def _drop_queue(self, box: Outbox) -> None:
        with box.lock:
            box.chunks = []
            box.pending = 0
            box.scheduled = True  # nothing is to be scheduled for it again
            if box.kill_line is None:
                box.kill_line = b""
        box.leftover = None
        self._unwatch(box)

    def _kill_now(self, box: Outbox) -> None:
        """Disconnect: best-effort last line, then shutdown so the reader thread wakes."""
        self._drop_queue(box)
        box.killed = True
        hang_up(box.sock, box.kill_line or b"")

    def _close_now(self, box: Outbox) -> None:
        self._retiring.discard(box)
        self._unwatch(box)
        with box.lock:
            box.closed = True
            box.chunks = []
            box.pending = 0
        box.leftover = None
        try:
            box.sock.close()
        except OSError:
            pass

    def _expire_retiring(self) -> None:
        if not self._retiring:
            return
        now = time.monotonic()
        for box in [b for b in self._retiring if b.retire_at <= now]:  # type: ignore[operator]
            self._close_now(box)


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


def _take(box: Outbox) -> bytes:
    """Take up to MAX_SEND_BYTES of queued chunks (caller holds box.lock), as one bytes."""
    chunks = box.chunks
    if len(chunks) == 1:
        box.chunks = []
        return chunks[0]
    size = count = 0
    while count < len(chunks) and size < MAX_SEND_BYTES:
        size += len(chunks[count])
        count += 1
    box.chunks = chunks[count:]
    return b"".join(chunks[:count])


class QueuedDelivery:
    """The default: byte-bounded outboxes, coalesced non-blocking writes from writer loops."""

    def __init__(self, max_pending: int, writers: int = 1) -> None:
        self.max_pending = max_pending
        self._loops = [WriterLoop(i) for i in range(writers)]
        self._next = 0
        for loop in self._loops:
            loop.thread.start()

    def outbox(self, sock: socket.socket, on_overflow: Callable[[], None]) -> Outbox:
        self._next = (self._next + 1) % len(self._loops)
        return Outbox(sock, self.max_pending, self._loops[self._next], on_overflow)

    def send(self, box: Outbox, data: bytes) -> None:
        box.enqueue(data)

    def broadcast(
        self, sender: Outbox | None, recipients: Iterable[Outbox], lines: Sequence[bytes]
    ) -> int:
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        count = 0
        for box in recipients:
            if box is not sender:
                box.enqueue(data)
                count += 1
        return count

    def kill(self, box: Outbox, last_line: bytes) -> None:
        with box.lock:
            if box.closed or box.kill_line is not None:
                return
            box.kill_line = last_line
        box.loop.schedule(box)  # type: ignore[union-attr]

    def retire(self, box: Outbox) -> None:
        box.retire_at = time.monotonic() + RETIRE_LINGER_S
        box.loop.schedule(box)  # type: ignore[union-attr]

    def farewell(self, boxes: Sequence[Outbox], line: bytes, timeout_s: float) -> None:
        """Queue `line` after what each client already has, wait (bounded) for it, disconnect."""
        for box in boxes:
            box.enqueue(line)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(box.pending for box in boxes):
            time.sleep(0.01)
        for box in boxes:
            self.kill(box, b"")

    def bytes_out(self) -> int:
        return sum(loop.bytes_out for loop in self._loops)

    def close(self) -> None:
        for loop in self._loops:
            loop.stop()
        for loop in self._loops:
            loop.thread.join(0.2)  # daemon threads: shutdown's time budget matters more


class InlineDelivery:
    """The original design: the sender's thread writes every message to every socket, blocking."""

    def __init__(self) -> None:
        self._retired_bytes = 0
        self._live: set[Outbox] = set()
        self._lock = threading.Lock()

    def outbox(self, sock: socket.socket, on_overflow: Callable[[], None]) -> Outbox:
        box = Outbox(sock, 0, None, on_overflow)
        with self._lock:
            self._live.add(box)
        return box

    def send(self, box: Outbox, data: bytes) -> None:
        with box.lock:  # held across a blocking send: the defect this baseline exists to show
            if box.closed:
                return
            try:
                box.sock.sendall(data)
                box.sent_bytes += len(data)
            except OSError:
                pass

    def broadcast(
        self, sender: Outbox | None, recipients: Iterable[Outbox], lines: Sequence[bytes]
    ) -> int:
        targets = [box for box in recipients if box is not sender]
        for line in lines:
            for box in targets:
                self.send(box, line)
        return len(targets)

    def kill(self, box: Outbox, last_line: bytes) -> None:
        hang_up(box.sock, last_line)

    def retire(self, box: Outbox) -> None:
        self.kill(box, b"")  # wakes any sender blocked on this socket
        with box.lock:
            box.closed = True
            box.sock.close()
        with self._lock:
            self._live.discard(box)
            self._retired_bytes += box.sent_bytes

    def farewell(self, boxes: Sequence[Outbox], line: bytes, timeout_s: float) -> None:
        for box in boxes:
            self.kill(box, line)

    def bytes_out(self) -> int:
        with self._lock:
            return self._retired_bytes + sum(box.sent_bytes for box in self._live)

    def close(self) -> None:
        pass


def make_delivery(kind: str, max_pending: int, writers: int) -> Delivery:
    if kind == "queued":
        return QueuedDelivery(max_pending, writers)
    if kind == "inline":
        return InlineDelivery()
    raise ValueError(f"unknown delivery strategy: {kind}")
