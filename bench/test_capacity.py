"""Capacity: many idle clients join (timed), one broadcast reaches all, memory per client."""

from __future__ import annotations

import pytest

from bench.measure import assert_delivered, extra_info, timed_join
from bench.targets import CAPACITY_CLIENTS, JOIN_TARGET_S


@pytest.mark.timeout(600)
@pytest.mark.clients(full=CAPACITY_CLIENTS, quick=(20,))
def test_capacity(benchmark, chat_server, new_swarm, server_kind, clients, quick):
    """All clients connect and are welcomed (the timed part), then one broadcast reaches them all.

    The server runs with its default notice limit, as users run it, except for room enough.
    """
    server = chat_server("--max-clients", str(clients + 100))
    benchmark.group = f"capacity clients={clients}"
    joined = timed_join(benchmark, server, new_swarm(server), clients)
    report = joined.report
    info = extra_info(
        "capacity",
        server,
        clients,
        joined.window,
        connect_s=round(report.connect_s, 3),
        connect_driver_cpu_frac=round(report.driver_cpu_frac, 3),
        connect_server_cpu_s=round(joined.server_cpu_s, 3),
        joined_within_target=report.connect_s <= JOIN_TARGET_S,
        broadcast_ms=round(joined.window.wall_s * 1e3, 3),
        rss_before_mib=round(joined.rss_before / 2**20, 1),
        rss_after_mib=round(joined.rss_after / 2**20, 1),
        rss_per_client_kib=joined.rss_per_client_kib,
        server_threads=server.threads(),
    )
    benchmark.extra_info.update(info)
    assert_delivered(joined.window)
