"""Capacity: many idle clients join (timed), one broadcast reaches all, memory per client."""

from __future__ import annotations

import pytest

from bench.measure import JOIN_TIMEOUT_S, Window, assert_delivered, drive_once, extra_info, finish
from bench.swarm import SenderPlan
from bench.targets import CAPACITY_CLIENTS, JOIN_TARGET_S


@pytest.mark.timeout(600)
@pytest.mark.clients(full=CAPACITY_CLIENTS, quick=(20,))
def test_capacity(benchmark, chat_server, new_swarm, server_kind, clients, quick):
    """All clients connect and are welcomed (the timed part), then one broadcast reaches them all.

    The server runs with its default notice limit, as users run it, except for room enough.
    """
    server = chat_server("--max-clients", str(clients + 100))
    swarm = new_swarm(server)
    rss_before, cpu_before = server.rss_bytes(), server.cpu_s()
    benchmark.group = f"capacity clients={clients}"
    report = benchmark.pedantic(
        lambda: swarm.connect(clients, timeout_s=JOIN_TIMEOUT_S), rounds=1, iterations=1
    )
    server_cpu_joining = server.cpu_s() - cpu_before
    swarm.settle(quiet_s=0.5, timeout_s=120.0)
    rss_after = server.rss_bytes()
    window = Window()
    swarm.begin_window()
    drive_once(window, server, swarm, [SenderPlan(0, 1)], timeout_s=60.0)
    finish(window, swarm)
    info = extra_info(
        "capacity",
        server,
        clients,
        window,
        connect_s=round(report.connect_s, 3),
        connect_driver_cpu_frac=round(report.driver_cpu_frac, 3),
        connect_server_cpu_s=round(server_cpu_joining, 3),
        joined_within_target=report.connect_s <= JOIN_TARGET_S,
        broadcast_ms=round(window.wall_s * 1e3, 3),
        rss_before_mib=round(rss_before / 2**20, 1),
        rss_after_mib=round(rss_after / 2**20, 1),
        rss_per_client_kib=round((rss_after - rss_before) / clients / 1024, 2),
        server_threads=server.threads(),
    )
    benchmark.extra_info.update(info)
    assert_delivered(window)
