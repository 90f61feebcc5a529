"""Queued delivery on its own, through real sockets: who is cut as a slow consumer, and why.

Each test drives QueuedDelivery directly over socketpairs: the test plays both the server (send,
broadcast, kill, retire) and the clients (reading the peer ends, or not). Every loop is bounded in
count and in time, and every healthy reader's stream is checked line by line.
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from chat.delivery import (
    CHUNK_OVERHEAD_BYTES,
    TRANSITIONS,
    BoxState,
    BoxStateError,
    CutReason,
    QueuedDelivery,
    QueuedOutbox,
    WriterLoop,
)

SERVER_SNDBUF = 8192  # small kernel buffers, so a reader that stops reading stalls at once
DISCONNECT_LINE = b"! disconnected: slow consumer\n"
WAIT_S = 10.0  # upper bound for anything a test waits for


class Client:
    """One end of a socketpair: the server side goes into an outbox, the test reads the other."""

    def __init__(self, delivery: QueuedDelivery, name: str) -> None:
        self.server_sock, self.peer = socket.socketpair()
        self.server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_SNDBUF)
        self.peer.setblocking(False)
        self.name = name
        self.cuts: list[CutReason | None] = []
        self.received = bytearray()
        self.box: QueuedOutbox = delivery.outbox(self.server_sock, self._overflow(delivery))

    def _overflow(self, delivery: QueuedDelivery) -> Callable[[], None]:
        def on_overflow() -> None:  # what the server does: count, then kill with its line
            self.cuts.append(self.box.cut_reason)
            delivery.kill(self.box, DISCONNECT_LINE)

        return on_overflow

    def read_some(self, limit: int = 1 << 20) -> int:
        """Read what is there now, at most `limit` bytes; -1 at end of stream."""
        got = 0
        while got < limit:
            try:
                data = self.peer.recv(min(65536, limit - got))
            except BlockingIOError:
                break
            if not data:
                return -1 if not got else got
            self.received += data
            got += len(data)
        return got

    def read_until_closed(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and self.read_some() != -1:
            time.sleep(0.002)

    def lines(self) -> list[bytes]:
        return bytes(self.received).splitlines(keepends=True)


def numbered(start: int, count: int, size: int = 100) -> list[bytes]:
    """Lines that say their own number, `size` bytes each with the newline."""
    return [f"{i:07d} ".encode().ljust(size - 1, b"x") + b"\n" for i in range(start, start + count)]


def assert_prefix_then_end(client: Client, sent: list[bytes]) -> None:
    """A cut client that reads again (within the kill linger) gets whole lines, a prefix of its
    stream, then the disconnect line, then the end of the stream."""
    received = bytes(client.received)
    assert received.endswith(DISCONNECT_LINE), received[-200:]
    lines = received.removesuffix(DISCONNECT_LINE).splitlines(keepends=True)
    assert lines == sent[: len(lines)]


def wait_for(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture
def make_delivery() -> Iterator[Callable[..., QueuedDelivery]]:
    made: list[QueuedDelivery] = []

    def make(**options: object) -> QueuedDelivery:
        options.setdefault("max_pending", 16 << 20)
        delivery = QueuedDelivery(**options)  # type: ignore[arg-type]
        made.append(delivery)
        return delivery

    yield make
    for delivery in made:
        # Retire every box: the accounting must come back to exactly zero, nothing leaks.
        with delivery.ledger.lock:
            boxes = list(delivery.ledger.boxes)
        for box in boxes:
            delivery.retire(box)
        assert wait_for(lambda d=delivery: not d.ledger.boxes and d.ledger.total == 0)
        delivery.close()


@pytest.fixture
def paused_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Writer loops stop at their first box until the event is set: a writer far behind."""
    gate = threading.Event()
    service = WriterLoop._service

    def gated(self: WriterLoop, box: QueuedOutbox) -> None:
        gate.wait(WAIT_S)
        service(self, box)

    monkeypatch.setattr(WriterLoop, "_service", gated)
    yield gate
    gate.set()


# --- the state machine -------------------------------------------------------------------------


def test_every_state_has_a_row_and_closed_is_final():
    assert set(TRANSITIONS) == set(BoxState)
    assert TRANSITIONS[BoxState.CLOSED] == frozenset()
    assert all(BoxState.CLOSED not in TRANSITIONS[s] for s in (BoxState.IDLE, BoxState.READY))


def test_an_unlisted_transition_is_refused_loudly(make_delivery):
    delivery = make_delivery()
    client = Client(delivery, "a")
    with client.box.lock, pytest.raises(BoxStateError, match="IDLE -> CLOSED"):
        client.box.to(BoxState.CLOSED)
    assert client.box.state is BoxState.IDLE


# --- the slow-consumer rule judges the reader, not the server ----------------------------------


def test_reader_that_keeps_reading_slowly_while_the_writer_is_far_behind_is_never_cut(
    make_delivery, paused_writer
):
    delivery = make_delivery(max_pending=64 * 1024, write_deadline_s=0.5)
    client = Client(delivery, "steady")
    backlog = numbered(0, 10_000)  # 1 MB queued while the writer is stuck: 16x max_pending
    for line in backlog:
        delivery.send(client.box, line)
    assert client.box.state is BoxState.READY and client.box.cost > 16 * 64 * 1024
    paused_writer.set()
    more = numbered(10_000, 3_000)
    stalled_over_max_pending = False
    deadline = time.monotonic() + WAIT_S
    for start in range(0, len(more), 30):  # the room goes on at ~300 KB/s ...
        delivery.broadcast(None, [client.box], more[start : start + 30])
        for _ in range(5):  # ... while the reader takes at most 16 KB every 2 ms
            client.read_some(16 * 1024)
            time.sleep(0.002)
            box = client.box
            stalled_over_max_pending |= box.state is BoxState.STALLED and box.cost > 64 * 1024
        assert time.monotonic() < deadline
    expected = backlog + more
    assert wait_for(lambda: client.read_some(16 * 1024) >= 0 and len(client.lines()) >= 13_000)
    assert client.lines() == expected
    assert stalled_over_max_pending  # the kernel refused it with over max_pending queued ...
    assert client.cuts == []  # ... yet it kept reading, so it was never cut
    assert delivery.counters()["cut_hard_limit"] == delivery.counters()["cut_write_deadline"] == 0


def test_reader_that_stops_reading_is_cut_at_the_hard_limit_while_stalled(make_delivery):
    max_pending = 256 * 1024
    delivery = make_delivery(max_pending=max_pending, write_deadline_s=60.0)
    healthy, stalled = Client(delivery, "healthy"), Client(delivery, "stalled")
    sent: list[bytes] = []
    for batch in range(2_000):  # at most 20 MB; the cut comes after about 256 KB
        lines = numbered(batch * 100, 100)
        delivery.broadcast(None, [healthy.box, stalled.box], lines)
        sent += lines
        healthy.read_some()
        time.sleep(0.001)  # a sender paced so the writer keeps up: only the reader falls behind
        if stalled.cuts:
            break
    assert stalled.cuts == [CutReason.HARD_LIMIT]
    assert max_pending < len(sent) * 100 < max_pending + 1024 * 1024
    assert wait_for(lambda: stalled.box.state is BoxState.DEAD and stalled.box.cost == 0)
    stalled.read_until_closed()
    assert_prefix_then_end(stalled, sent)
    assert healthy.read_some() >= 0
    assert wait_for(lambda: healthy.read_some() >= 0 and len(healthy.lines()) >= len(sent))
    assert healthy.lines() == sent
    assert healthy.cuts == []
    assert delivery.counters()["cut_hard_limit"] == 1


def test_reader_that_stops_reading_with_a_small_backlog_is_cut_by_the_write_deadline(
    make_delivery,
):
    deadline_s = 0.3
    delivery = make_delivery(write_deadline_s=deadline_s)
    healthy, stalled = Client(delivery, "healthy"), Client(delivery, "stalled")
    first = numbered(0, 1_000)  # 100 KB: more than the kernel holds, far below max_pending
    started = time.monotonic()  # the stall clock cannot start before this
    delivery.broadcast(None, [healthy.box, stalled.box], first)
    assert wait_for(
        lambda: (
            healthy.read_some() >= 0
            and healthy.lines() == first
            and stalled.box.state is BoxState.STALLED
        )
    )
    assert delivery.counters()["stalled_clients"] == 1
    assert stalled.box.state is BoxState.STALLED and stalled.box.cost < 100_000
    sent = list(first)
    for i in range(400):  # the healthy reader keeps chatting meanwhile, bounded to ~2 s
        if stalled.cuts:
            break
        lines = numbered(1_000 + i, 1)
        delivery.send(healthy.box, lines[0])
        sent += lines
        healthy.read_some()
        time.sleep(0.005)
    waited = time.monotonic() - started
    assert stalled.cuts == [CutReason.WRITE_DEADLINE]
    assert deadline_s <= waited < deadline_s + 1.0
    assert delivery.counters()["stalled_clients"] == 0
    assert delivery.counters()["cut_write_deadline"] == 1
    assert wait_for(lambda: healthy.read_some() >= 0 and len(healthy.lines()) >= len(sent))
    assert healthy.lines() == sent and healthy.cuts == []
    stalled.read_until_closed()
    assert_prefix_then_end(stalled, first)


# --- memory: real cost, one budget -------------------------------------------------------------


def test_memory_budget_evicts_the_biggest_holder_first_and_only_as_many_as_needed(make_delivery):
    mib = 1024 * 1024
    delivery = make_delivery(max_pending=64 * mib, write_deadline_s=60.0, max_queued_total=7 * mib)
    big, middle, small = (Client(delivery, name) for name in ("big", "middle", "small"))
    healthy = Client(delivery, "healthy")
    sent: list[bytes] = []
    piece = b"y" * (64 * 1024 - 1) + b"\n"
    for client, pieces in ((big, 48), (middle, 32), (small, 16)):  # 3, 2 and 1 MiB, never read
        for _ in range(pieces):
            delivery.send(client.box, piece)
            lines = numbered(len(sent), 10)
            delivery.broadcast(None, [healthy.box], lines)
            sent += lines
            healthy.read_some()
    holders = (big.box, middle.box, small.box)
    assert wait_for(
        lambda: healthy.read_some() >= 0 and all(b.state is BoxState.STALLED for b in holders)
    )
    assert delivery.counters()["evicted"] == 0 and delivery.ledger.total < 7 * mib
    for _ in range(24):  # 1.5 MiB more for the smallest holder pushes the total over 7 MiB
        delivery.send(small.box, piece)
    assert big.cuts == [CutReason.MEMORY_BUDGET]
    assert middle.cuts == [] and small.cuts == [] and healthy.cuts == []
    assert delivery.counters()["evicted"] == 1
    assert wait_for(lambda: delivery.ledger.total <= 7 * mib and big.box.cost == 0)
    assert middle.box.state is small.box.state is BoxState.STALLED
    big.read_until_closed()  # evicted: its stream ends
    assert wait_for(lambda: healthy.read_some() >= 0 and len(healthy.lines()) >= len(sent))
    assert healthy.lines() == sent


def test_real_cost_counts_every_chunk_not_only_its_payload(make_delivery, paused_writer):
    delivery = make_delivery()
    client = Client(delivery, "chatty")
    for _ in range(10_000):
        delivery.send(client.box, b"\n")  # a one-byte line, each its own chunk
    assert client.box.cost == delivery.ledger.total == 10_000 * (1 + CHUNK_OVERHEAD_BYTES)
    assert delivery.ledger.total > 10_000
    paused_writer.set()
    assert wait_for(lambda: client.read_some() >= 0 and len(client.received) >= 10_000)
    assert bytes(client.received) == b"\n" * 10_000
    assert wait_for(lambda: delivery.ledger.total == 0 and client.box.state is BoxState.IDLE)


def test_real_cost_is_close_to_what_the_queue_really_holds(make_delivery, paused_writer):
    delivery = make_delivery()
    client = Client(delivery, "chatty")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        lines = numbered(0, 10_000, size=30)  # fresh objects, as encode_line makes them
        for line in lines:
            delivery.send(client.box, line)
        del lines
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    accounted = delivery.ledger.total
    assert accounted > 2 * 10_000 * 30  # payload alone would say 300 KB
    assert 0.85 * held <= accounted <= 1.15 * held
    paused_writer.set()
    assert wait_for(lambda: client.read_some() >= 0 and len(client.received) >= 300_000)
    assert client.lines() == numbered(0, 10_000, size=30)


# --- the writers' lag, the last line ------------------------------------------------------------


def test_senders_are_asked_to_wait_while_the_writers_lag_and_let_go_when_they_catch_up(
    make_delivery, paused_writer
):
    delivery = make_delivery(max_queued_total=4 << 20)  # high water: 1 MiB of writer lag
    client = Client(delivery, "reader")
    sent = numbered(0, 20_000)  # 2 MB while the writer is stuck
    delivery.broadcast(None, [client.box], sent)
    assert delivery.congested()
    waited: list[float] = []
    started = time.monotonic()
    waiter = threading.Thread(
        target=lambda: (delivery.wait_for_writers(WAIT_S), waited.append(time.monotonic()))
    )
    waiter.start()
    paused_writer.set()
    assert wait_for(lambda: client.read_some() >= 0 and len(client.lines()) >= len(sent))
    waiter.join(WAIT_S)
    assert waited and waited[0] - started < WAIT_S  # woken by the writers, not by its timeout
    assert not delivery.congested()
    assert client.lines() == sent


def test_what_clients_that_do_not_read_hold_is_not_the_writers_lag(make_delivery):
    delivery = make_delivery(max_queued_total=4 << 20, write_deadline_s=60.0)
    stalled = Client(delivery, "stalled")  # never reads: the kernel refuses it at once
    delivery.broadcast(None, [stalled.box], numbered(0, 20_000))  # 2 MB, over the high water
    assert wait_for(lambda: stalled.box.state is BoxState.STALLED)
    assert wait_for(lambda: not delivery.congested())  # once the writer has counted it
    assert delivery.counters()["queued_bytes"] > 1 << 20


def test_nothing_is_queued_after_the_farewell_line(make_delivery):
    delivery = make_delivery()
    client = Client(delivery, "reader")
    before = numbered(0, 100)
    delivery.broadcast(None, [client.box], before)
    goodbye = b"* server is shutting down, goodbye\n"
    done = threading.Thread(target=delivery.farewell, args=([client.box], goodbye, WAIT_S))
    done.start()
    assert wait_for(lambda: client.box.sealed)
    delivery.broadcast(None, [client.box], numbered(100, 10))  # a reader thread, a moment late
    client.read_until_closed()
    done.join(WAIT_S)
    assert client.lines() == [*before, goodbye]
