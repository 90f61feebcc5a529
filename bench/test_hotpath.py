"""The delivery hot path alone: CPU per delivery of chat.delivery.QueuedDelivery, in one process.

The end-to-end cases measure the server with a swarm beside it on the same two cores, so a
change of a microsecond per delivery hides in their noise until it shows up as a tail. This case
has no swarm and no reader threads: outboxes on real loopback TCP connections, single-line
broadcasts paced so each goes out on its own (the paced and sweep cases' shape, one send per
line), and the process's CPU (user + system, getrusage) per delivery, the receivers' reads
taken out. A scratch version of it found the 2.3 us per delivery that the outbox state
machine had added (issue 9).
"""

from __future__ import annotations

import resource
import socket
import time

from chat.delivery import QueuedDelivery
from chat.outbox import QueuedOutbox

BOXES, LINES = 100, 3000
QUICK_BOXES, QUICK_LINES = 10, 100
LINE = b"x" * 59 + b"\n"  # the swarm's probes are about this long
PACE_S = 0.0003  # after each broadcast: long enough for the writer to send it on its own
DRAIN_EVERY = 200  # broadcasts between two reads of every receiver (kernel buffers hold more)
WAIT_S = 30.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pairs(count: int) -> tuple[socket.socket, list[socket.socket], list[socket.socket]]:
    """`count` loopback TCP connections: (listener, server ends, client ends)."""
    listener = socket.create_server(("127.0.0.1", 0))
    servers, clients = [], []
    for _ in range(count):
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        servers.append(server)
        clients.append(client)
    return listener, servers, clients


def test_delivery_hot_path(benchmark, quick):
    """Every line reaches every box, in order; extra_info: CPU microseconds per delivery."""
    boxes_n, lines_n = (QUICK_BOXES, QUICK_LINES) if quick else (BOXES, LINES)
    listener, servers, clients = _pairs(boxes_n)
    delivery = QueuedDelivery(max_pending=16 << 20)
    boxes: list[QueuedOutbox] = [delivery.outbox(s, lambda: None) for s in servers]
    got = [bytearray() for _ in clients]
    want = boxes_n * lines_n * len(LINE)
    drain_cpu_s = 0.0

    def drain() -> None:
        """Read what every receiver has, without blocking; its CPU is counted apart."""
        nonlocal drain_cpu_s
        started = time.thread_time()
        for client, buffer in zip(clients, got, strict=True):
            try:
                while data := client.recv(1 << 20, socket.MSG_DONTWAIT):
                    buffer += data
            except BlockingIOError:
                pass
        drain_cpu_s += time.thread_time() - started

    def run() -> float:
        """The broadcasts until the writer has sent them all: CPU less the receivers' reads."""
        started = _cpu_s()
        for index in range(lines_n):
            delivery.broadcast(None, boxes, [LINE])
            time.sleep(PACE_S)
            if index % DRAIN_EVERY == DRAIN_EVERY - 1:
                drain()
        deadline = time.monotonic() + WAIT_S
        while delivery.bytes_out() < want and time.monotonic() < deadline:
            time.sleep(0.001)
        return _cpu_s() - started - drain_cpu_s

    try:
        cpu_s = benchmark.pedantic(run, rounds=1, iterations=1)
        deadline = time.monotonic() + WAIT_S
        while sum(map(len, got)) < want and time.monotonic() < deadline:
            drain()
            time.sleep(0.001)
        deliveries = boxes_n * lines_n
        benchmark.group = "delivery hot path"
        benchmark.extra_info.update(
            case="hotpath",
            server="threaded",
            clients=boxes_n,
            deliveries=deliveries,
            # CPU seconds per million deliveries: microseconds per delivery, as --compare reads it
            server_cpu_s_per_million=round(cpu_s / deliveries * 1e6, 3),
        )
        assert all(bytes(buffer) == LINE * lines_n for buffer in got)
    finally:
        delivery.close()
        for sock in (listener, *servers, *clients):
            sock.close()
