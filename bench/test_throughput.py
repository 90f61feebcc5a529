"""Throughput cases: pipelined bursts from many senders, the all-senders burst, a stalled reader."""

from __future__ import annotations

import math

import pytest

from bench.measure import (
    QUIET_JOINS,
    SendersBlocked,
    Window,
    assert_delivered,
    drive_once,
    extra_info,
    finish,
    join,
)
from bench.servers import wire_for
from bench.swarm import IDLE_TIMEOUT_S, SenderPlan

FANOUT_SENDERS = 10
FANOUT_DELIVERIES = 800_000
BURST_CLIENTS = 100
BURST_MESSAGES = 200
BURST_SIZE = 60
STALL_SENDERS = 10
STALL_MESSAGES = 500
STALL_SIZE = 1000
STALLED_RCVBUF = 4096
QUICK_MESSAGES = 20
TIMEOUT_S = 120.0
# Quick mode: a stall window in which nothing arrives for this long ends, timed out (the inline
# server blocked); a server that keeps delivering still has TIMEOUT_S, even on a busy machine.
QUICK_STALL_IDLE_S = 3.0
STALL_MARGIN_BYTES = 4 * 2**20
DEFAULT_SEND_BUFFER_MAX_BYTES = 4 * 2**20
# Bursts are judged by throughput: polling at most every 1 ms lets lines gather per recv, so the
# swarm stays far from saturation against servers that send one line per call.
POLL_INTERVAL_S = 0.001


def fanout_messages(clients: int, senders: int, deliveries: int) -> int:
    """Messages per sender so that a burst makes about `deliveries` deliveries."""
    return max(10, min(50_000, round(deliveries / (senders * (clients - 1)))))


def run_burst(
    benchmark, server, swarm, plans: list[SenderPlan], stalled=(), idle_timeout_s=IDLE_TIMEOUT_S
) -> Window:
    window = Window()
    swarm.begin_window(stalled=stalled)
    benchmark.pedantic(
        lambda: drive_once(
            window, server, swarm, plans, TIMEOUT_S, POLL_INTERVAL_S, idle_timeout_s
        ),
        rounds=1,
        iterations=1,
    )
    finish(window, swarm)
    return window


@pytest.mark.timeout(300)
def test_fanout_throughput(benchmark, chat_server, new_swarm, server_kind, clients, quick):
    """Ten senders (fewer if fewer clients) each send one pipelined burst; deliveries per second."""
    server = chat_server(*QUIET_JOINS)
    swarm = join(new_swarm(server), clients)
    senders = min(FANOUT_SENDERS, clients)
    messages = fanout_messages(clients, senders, 2_000 if quick else FANOUT_DELIVERIES)
    plans = [SenderPlan(i, messages, size=BURST_SIZE) for i in range(senders)]
    benchmark.group = f"fanout clients={clients}"
    window = run_burst(benchmark, server, swarm, plans)
    info = extra_info("fanout", server, clients, window, senders=senders, messages=messages)
    benchmark.extra_info.update(info)
    assert_delivered(window)


@pytest.mark.timeout(300)
@pytest.mark.clients(full=(BURST_CLIENTS,), quick=(10,))
def test_burst_all_senders(benchmark, chat_server, new_swarm, server_kind, clients, quick):
    """Every client sends 200 messages at once (the fan-out target: 100 clients, 1.98M lines)."""
    server = chat_server(*QUIET_JOINS)
    swarm = join(new_swarm(server), clients)
    messages = QUICK_MESSAGES if quick else BURST_MESSAGES
    plans = [SenderPlan(i, messages, size=BURST_SIZE) for i in range(clients)]
    benchmark.group = f"burst clients={clients}"
    window = run_burst(benchmark, server, swarm, plans)
    info = extra_info("burst", server, clients, window, senders=clients, messages=messages)
    benchmark.extra_info.update(info)
    assert_delivered(window)


@pytest.mark.timeout(300)
@pytest.mark.clients(full=(BURST_CLIENTS,), quick=(10,))
@pytest.mark.parametrize("stalled", [0, 1], ids=["no-stall", "one-stalled"])
@pytest.mark.expected_failure(
    server_kind="inline",
    stalled=1,
    raises=SendersBlocked,
    reason="the original inline design: one stalled reader blocks the senders",
)
def test_stalled_reader(benchmark, chat_server, new_swarm, server_kind, clients, stalled, quick):
    """Ten senders burst 1 kB lines while one extra client has stopped reading (or not).

    The stalled client is owed more than the kernel's socket buffers on both sides hold (5 MB in
    the full run, the send buffer's limit plus 4 MiB in the quick one), so a server that writes
    from the sender's thread blocks; one that queues per client must not slow the others, and
    afterwards either owes the stalled client everything or has cut it.
    """
    limit = wire_for(server_kind).max_text_bytes
    if STALL_SIZE > limit:
        pytest.skip(f"{server_kind}: messages are at most {limit} bytes, this case's {STALL_SIZE}")
    server = chat_server(*QUIET_JOINS)
    stalled_index = clients  # one more client than the readers, the last to join
    rcvbuf = {stalled_index: STALLED_RCVBUF} if stalled else None
    swarm = join(new_swarm(server), clients + 1, rcvbuf=rcvbuf)
    messages = stall_messages(quick, stalled)
    plans = [SenderPlan(i, messages, size=STALL_SIZE) for i in range(STALL_SENDERS)]
    benchmark.group = f"stall clients={clients}"
    idle_s = QUICK_STALL_IDLE_S if quick else IDLE_TIMEOUT_S
    stalled_clients = [stalled_index] if stalled else []
    window = run_burst(benchmark, server, swarm, plans, stalled_clients, idle_s)
    owed = STALL_SENDERS * messages * STALL_SIZE
    unread = swarm.unread_bytes(stalled_index) if stalled else 0
    info = extra_info(
        "stall", server, clients, window, stalled=stalled, senders=STALL_SENDERS, messages=messages
    )
    info.update(stalled_owed_bytes=owed, stalled_unread_bytes=unread)
    benchmark.extra_info.update(info)
    assert_delivered(window)  # the inline server's stalled case fails here, as SendersBlocked
    if stalled:
        assert owed - unread > kernel_send_buffer_max_bytes(), "the stall was absorbed by buffers"
        benchmark.extra_info["stalled_cut"] = assert_owed_or_cut(swarm, stalled_index)


def assert_owed_or_cut(swarm, index: int) -> bool:
    """Read the stalled client again: the server kept everything for it, or cut it cleanly.

    Returns whether it was cut.
    """
    swarm.resume(index)
    swarm.drive([], TIMEOUT_S)
    verdict = swarm.verify([index])
    cut = swarm.clients[index].state == "closed"
    clean = verdict.duplicates == verdict.out_of_order == verdict.unexpected == 0
    assert verdict.ok or (cut and clean), f"stalled client, read again: {verdict.problems()}"
    return cut


def kernel_send_buffer_max_bytes() -> int:
    """The most a TCP socket's send buffer grows to here (tcp_wmem's maximum)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return DEFAULT_SEND_BUFFER_MAX_BYTES


def stall_messages(quick: bool, stalled: int) -> int:
    """Messages per sender: the full run's, or in quick mode enough to really stall."""
    if not quick:
        return STALL_MESSAGES
    # Quick mode without a stall stays small: it is only the full run's point of comparison.
    return quick_stall_messages() if stalled else QUICK_MESSAGES


def quick_stall_messages() -> int:
    """Messages per sender so the stalled client is owed STALL_MARGIN_BYTES past the buffers."""
    owed = kernel_send_buffer_max_bytes() + STALL_MARGIN_BYTES
    return math.ceil(owed / (STALL_SENDERS * STALL_SIZE))
