"""TLS beside plain text, in the same run: the default server with and without TLS (an ECDSA
P-256 certificate), the same swarm speaking TLS or not. Burst fan-out, paced latency, and
joining (handshake rate, server CPU per join); bench/report_tls.py puts each pair side by side
and judges the TLS targets (bench/targets.py)."""

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
    timed_join,
)
from bench.swarm import SenderPlan
from bench.targets import TLS_JOIN_CLIENTS
from bench.test_latency import PACED_RATE_PER_S, PACED_SECONDS
from bench.test_throughput import (
    BURST_CLIENTS,
    BURST_MESSAGES,
    BURST_SIZE,
    QUICK_MESSAGES,
    run_burst,
)

TRANSPORTS = ("plain", "tls")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def start(threaded, swarms, tls_files, transport):
    """Start the default server (with TLS or not) and make a swarm of it speaking the same."""
    tls = transport == "tls"

    def start(clients: int, *extra: str):
        server = threaded(*extra, *(tls_files.server_args() if tls else ()))
        swarm = swarms(server, tls=tls_files.client_context() if tls else None)
        return server, swarm

    return start


@pytest.mark.timeout(300)
@pytest.mark.clients(full=(BURST_CLIENTS,), quick=(10,))
def test_tls_burst(benchmark, start, transport, clients, quick):
    """Every client sends 200 messages at once, as test_burst_all_senders, plain and TLS."""
    server, swarm = start(clients, *QUIET_JOINS)
    join(swarm, clients)
    messages = QUICK_MESSAGES if quick else BURST_MESSAGES
    plans = [SenderPlan(i, messages, size=BURST_SIZE) for i in range(clients)]
    benchmark.group = f"tls burst clients={clients}"
    window = run_burst(benchmark, server, swarm, plans)
    info = extra_info("tls_burst", server, clients, window, senders=clients, messages=messages)
    benchmark.extra_info.update(info, transport=transport)
    assert_delivered(window)


@pytest.mark.timeout(180)
@pytest.mark.clients(full=(100, 1000), quick=(10,))
def test_tls_paced(benchmark, start, transport, clients, quick):
    """One sender at 100 msg/s, as test_paced_latency, plain and TLS."""
    server, swarm = start(clients, *QUIET_JOINS)
    join(swarm, clients)
    seconds = 0.3 if quick else PACED_SECONDS
    plan = SenderPlan(0, int(PACED_RATE_PER_S * seconds), rate_per_s=PACED_RATE_PER_S)
    window = Window()
    swarm.begin_window()
    benchmark.group = f"tls paced clients={clients}"
    benchmark.pedantic(
        lambda: drive_once(window, server, swarm, [plan], timeout_s=seconds + 30.0),
        rounds=1,
        iterations=1,
    )
    finish(window, swarm)
    info = extra_info("tls_paced", server, clients, window, rate_per_s=PACED_RATE_PER_S)
    benchmark.extra_info.update(info, transport=transport)
    assert_delivered(window)


@pytest.mark.timeout(600)
@pytest.mark.clients(full=(TLS_JOIN_CLIENTS,), quick=(20,))
def test_tls_join(benchmark, start, transport, clients, quick):
    """All clients connect, shake hands and are welcomed (timed), then one broadcast reaches
    them all: join time, handshakes per second, the server's CPU per join."""
    server, swarm = start(clients, "--max-clients", str(clients + 100))
    benchmark.group = f"tls join clients={clients}"
    joined = timed_join(benchmark, server, swarm, clients)
    connect_s = joined.report.connect_s
    info = extra_info(
        "tls_join",
        server,
        clients,
        joined.window,
        connect_s=round(connect_s, 3),
        joins_per_s=round(clients / connect_s, 1) if connect_s else None,
        connect_driver_cpu_frac=round(joined.report.driver_cpu_frac, 3),
        server_cpu_ms_per_join=round(joined.server_cpu_s / clients * 1e3, 3),
        rss_per_client_kib=joined.rss_per_client_kib,
    )
    benchmark.extra_info.update(info, transport=transport)
    assert_delivered(joined.window)
