"""Benchmark fixtures: servers of each kind in their own process, swarms, and the size switch.

With `--benchmark-disable` (as `make test` runs it) every case runs at a tiny size and still checks
delivery, so the suite cannot rot; with benchmarks enabled it runs the full sweep. BENCH_SERVERS
(comma-separated: threaded,inline,asyncio) picks the servers to compare.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.server_proc import SERVER_KINDS, ServerProcess, start_server
from bench.swarm import Swarm

FULL_CLIENTS = (2, 10, 100, 500, 1000)
QUICK_CLIENTS = (2, 10)


DEFAULT_JSON = Path(__file__).resolve().parent.parent / "results" / "bench.json"


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads the option in its own configure
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "clients(full, quick): client counts for the full sweep and the quick check"
    )
    config.addinivalue_line(
        "markers",
        "expected_failure(raises, reason, **params): strict xfail, only for the parametrised "
        "cases whose parameters match `params`, and only when `raises` is what fails them",
    )
    # A full sweep always leaves its JSON for `python -m bench.report`, even when not asked to.
    if config.getoption("benchmark_only", False) and config.getoption("benchmark_json") is None:
        config.option.benchmark_json = DEFAULT_JSON


def is_quick(config: pytest.Config) -> bool:
    """Benchmarks disabled: tiny sizes, delivery checks only."""
    return bool(config.getoption("benchmark_disable", False))


def selected_kinds() -> list[str]:
    wanted = os.environ.get("BENCH_SERVERS", "")
    kinds = [k.strip() for k in wanted.split(",") if k.strip()] or list(SERVER_KINDS)
    unknown = set(kinds) - set(SERVER_KINDS)
    if unknown:
        raise pytest.UsageError(f"BENCH_SERVERS: unknown server kinds {sorted(unknown)}")
    return kinds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    quick = is_quick(metafunc.config)
    if "clients" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("clients")
        full = marker.kwargs.get("full", FULL_CLIENTS) if marker else FULL_CLIENTS
        small = marker.kwargs.get("quick", QUICK_CLIENTS) if marker else QUICK_CLIENTS
        metafunc.parametrize("clients", small if quick else full)
    if "server_kind" in metafunc.fixturenames:
        metafunc.parametrize("server_kind", selected_kinds())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Turn `expected_failure` into a strict xfail on the matching cases only.

    Strict and narrowed by `raises`: the case must fail, and in exactly that way; a pass or any
    other failure fails the suite.
    """
    for item in items:
        for mark in item.iter_markers("expected_failure"):
            wanted = {k: v for k, v in mark.kwargs.items() if k not in ("raises", "reason")}
            params = item.callspec.params if hasattr(item, "callspec") else {}
            if all(k in params and params[k] == v for k, v in wanted.items()):
                xfail = pytest.mark.xfail(
                    raises=mark.kwargs["raises"], reason=mark.kwargs["reason"], strict=True
                )
                item.add_marker(xfail)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record the machine the reference run was made on, beside pytest-benchmark's own fields."""
    machine_info["cpu_model"] = cpu_model()
    machine_info["cores"] = os.cpu_count()
    machine_info["python"] = platform.python_version()
    machine_info["date_utc"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with open("/proc/loadavg") as f:
        machine_info["loadavg_at_start"] = f.read().split()[:3]
    machine_info["mem_total_gib"] = round(
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@pytest.fixture
def quick(request: pytest.FixtureRequest) -> bool:
    return is_quick(request.config)


@pytest.fixture
def chat_server(server_kind: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start fresh servers of this test's kind (extra CLI args allowed); all stopped by PID."""
    started: list[ServerProcess] = []

    def start(*extra: str) -> ServerProcess:
        server = start_server(server_kind, *extra)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def new_swarm(chat_server) -> Iterator[Callable[[ServerProcess], Swarm]]:
    """Make swarms of a server; all closed before the servers are stopped."""
    made: list[Swarm] = []

    def make(server: ServerProcess) -> Swarm:
        swarm = Swarm(server.address)
        made.append(swarm)
        return swarm

    try:
        yield make
    finally:
        for swarm in made:
            swarm.close()
