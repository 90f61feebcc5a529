"""Latency cases: one broadcast at a time, and one sender at a steady rate, per client count."""

from __future__ import annotations

import pytest

from bench.measure import (
    QUIET_JOINS,
    Window,
    assert_delivered,
    drive_once,
    extra_info,
    finish,
    join,
)
from bench.swarm import SenderPlan

BROADCAST_ROUNDS = 20
PACED_RATE_PER_S = 100.0
PACED_SECONDS = 3.0


def test_broadcast_latency(benchmark, chat_server, new_swarm, server_kind, clients, quick):
    """One message from one client; each round lasts until every other client has it."""
    server = chat_server(*QUIET_JOINS)
    swarm = join(new_swarm(server), clients)
    rounds = 3 if quick else BROADCAST_ROUNDS
    window = Window()
    swarm.begin_window()

    def one_broadcast() -> None:
        drive_once(window, server, swarm, [SenderPlan(0, 1)], timeout_s=10.0)

    benchmark.group = f"broadcast clients={clients}"
    benchmark.pedantic(one_broadcast, rounds=rounds, iterations=1)
    finish(window, swarm)
    benchmark.extra_info.update(extra_info("broadcast", server, clients, window, rounds=rounds))
    assert_delivered(window)


@pytest.mark.timeout(180)
def test_paced_latency(benchmark, chat_server, new_swarm, server_kind, clients, quick):
    """One sender at 100 msg/s for a few seconds: per-delivery latency and the server's CPU."""
    server = chat_server(*QUIET_JOINS)
    swarm = join(new_swarm(server), clients)
    seconds = 0.3 if quick else PACED_SECONDS
    count = int(PACED_RATE_PER_S * seconds)
    window = Window()
    swarm.begin_window()

    def paced() -> None:
        plan = SenderPlan(0, count, rate_per_s=PACED_RATE_PER_S)
        drive_once(window, server, swarm, [plan], timeout_s=seconds + 30.0)

    benchmark.group = f"paced clients={clients}"
    benchmark.pedantic(paced, rounds=1, iterations=1)
    finish(window, swarm)
    info = extra_info("paced", server, clients, window, rate_per_s=PACED_RATE_PER_S)
    benchmark.extra_info.update(info)
    assert_delivered(window)
