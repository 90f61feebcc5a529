"""Rate sweep: 100 clients, 10 paced senders, offered load stepped up until the server lags."""

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
from bench.targets import KEPT_UP_FRACTION, REQUIRED_RATES_PER_S

SENDERS = 10
RATES_PER_S = (1000, 2000, 4000, 6000, 8000, 16000)
STEP_SECONDS = 2.0
QUICK_RATES_PER_S = (100, 200)
QUICK_SENDERS = 2
QUICK_SECONDS = 0.3

# Server kinds that could not keep up at some rate: higher optional steps are skipped for them.
_fell_behind_at: dict[str, int] = {}


def sweep_plans(rate_per_s: float, senders: int, seconds: float) -> list[SenderPlan]:
    """`senders` paced senders sharing `rate_per_s`, staggered so the total stream is even."""
    each = rate_per_s / senders
    count = int(each * seconds)
    return [
        SenderPlan(i, count, rate_per_s=each, start_offset_s=i / rate_per_s) for i in range(senders)
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "rate" in metafunc.fixturenames:
        quick = bool(metafunc.config.getoption("benchmark_disable", False))
        rates = QUICK_RATES_PER_S if quick else RATES_PER_S
        metafunc.parametrize("rate", rates, ids=[f"rate{r}" for r in rates])


@pytest.mark.timeout(300)
@pytest.mark.clients(full=(100,), quick=(10,))
def test_rate_sweep(benchmark, chat_server, new_swarm, server_kind, clients, rate, quick):
    """Each step runs a few seconds at one offered rate: delivered rate and latency percentiles."""
    behind = _fell_behind_at.get(server_kind)
    if rate not in REQUIRED_RATES_PER_S and not quick and behind is not None:
        pytest.skip(f"{server_kind} already fell behind at {behind} msg/s")
    senders = QUICK_SENDERS if quick else SENDERS
    seconds = QUICK_SECONDS if quick else STEP_SECONDS
    server = chat_server(*QUIET_JOINS)
    swarm = join(new_swarm(server), clients)
    plans = sweep_plans(rate, senders, seconds)
    window = Window()
    swarm.begin_window()
    benchmark.group = f"sweep clients={clients} rate={rate}"
    benchmark.pedantic(
        lambda: drive_once(window, server, swarm, plans, timeout_s=seconds + 120.0),
        rounds=1,
        iterations=1,
    )
    finish(window, swarm)
    offered = rate * (clients - 1)
    info = extra_info(
        "sweep",
        server,
        clients,
        window,
        senders=senders,
        offered_msgs_per_s=rate,
        offered_deliveries_per_s=offered,
        seconds=seconds,
    )
    info["kept_up"] = info["deliveries_per_s"] >= KEPT_UP_FRACTION * offered
    if not info["kept_up"]:
        _fell_behind_at.setdefault(server_kind, rate)
    benchmark.extra_info.update(info)
    assert_delivered(window)
