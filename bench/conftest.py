"""Benchmark fixtures: servers of each kind in their own process, swarms, and the size switch.

With `--benchmark-disable` (as `make test` runs it) every case runs at a tiny size and still checks
delivery, so the suite cannot rot; with benchmarks enabled it runs the full sweep. BENCH_SERVERS
(comma-separated: threaded,inline,asyncio,redis) picks the servers to compare, peers included.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.cluster import Room, started_rooms
from bench.peers import peer_missing
from bench.servers import PEER_KINDS, SERVER_KINDS, start_server, wire_for
from bench.swarm import Swarm
from harness import ServerProcess
from harness.certs import TlsFiles, make_tls_files

FULL_CLIENTS = (2, 10, 100, 500, 1000)
QUICK_CLIENTS = (2, 10)


RESULTS = Path(__file__).resolve().parent.parent / "results"
# Local runs go to a git-ignored folder; the committed reference is written only on purpose.
DEFAULT_JSON = RESULTS / "latest" / "bench.json"
REFERENCE_JSON = RESULTS / "reference" / "bench.json"
# Asking for any of these means wanting pytest-benchmark's own tables back.
TABLE_OPTIONS = ("--benchmark-columns", "--benchmark-group-by", "--benchmark-sort")
# What a case costs beyond its measured window (server start, joins, checks): the reference
# sweep took 8 m 42 s for 261 s of windows over 74 cases.
CASE_SETUP_S = 3.5


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
    if not config.getoption("benchmark_only", False):
        return
    # A full sweep always leaves its JSON for `python -m bench.report`, even when not asked to.
    if config.getoption("benchmark_json") is None:
        config.option.benchmark_json = DEFAULT_JSON
    Path(config.option.benchmark_json).parent.mkdir(parents=True, exist_ok=True)
    # pytest-benchmark's tables give the window's wall time per case, which the report does not
    # use; progress lines and a headline summary (below) replace them unless they are asked for.
    asked = any(a.startswith(TABLE_OPTIONS) for a in config.invocation_params.args)
    if not asked:
        config.option.benchmark_quiet = True
    if config.option.verbose == 0:
        config.option.verbose = -1  # no file names between the progress lines
    config.pluginmanager.register(SweepProgress(config), "bench-sweep-progress")


class SweepProgress:
    """One line per case with elapsed and estimated time left, then the report's headlines."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.start = time.monotonic()
        self.names: list[str] = []
        self.done: set[str] = set()
        self.finished: list[str] = []
        self.weights = reference_weights()

    def write(self, line: str = "") -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        """No dot per case: the progress line below says more."""
        outcome = yield
        category, _letter, word = outcome.get_result()
        outcome.force_result((category, "", word))

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.names = [item.name for item in session.items]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup" and report.passed:
            return
        if report.when == "teardown" or report.nodeid in self.done:
            return
        self.done.add(report.nodeid)
        name = report.nodeid.rpartition("::")[2]
        self.finished.append(name)
        elapsed = time.monotonic() - self.start
        outcome = outcome_word(report)
        total = len(self.names) or len(self.done)
        left = self.time_left(elapsed)
        self.write(
            f"[{len(self.done):>3}/{total}] {outcome:<16} {name:<52} "
            f"{report.duration:6.1f} s   elapsed {clock(elapsed)}, {left}"
        )

    def time_left(self, elapsed: float) -> str:
        """The remaining cases' share of the reference run's time, scaled to this run's pace."""
        done = set(self.finished)
        todo = [n for n in self.names if n not in done]
        if not todo:
            return "done"
        known = list(self.weights.values())
        default = sum(known) / len(known) if known else 1.0

        def cost(name: str) -> float:
            return self.weights.get(name, default) + CASE_SETUP_S

        spent = sum(cost(n) for n in self.finished)
        remaining = sum(cost(n) for n in todo)
        if spent <= 0:
            return "time left unknown"
        return f"about {clock(elapsed * remaining / spent)} left"

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter) -> None:
        session = getattr(self.config, "_benchmarksession", None)
        found = [b.as_dict(include_data=False) for b in getattr(session, "benchmarks", [])]
        if not found:
            return
        from bench.report import console_summary, rows_of

        machine = {"loadavg_at_start": load_average()}
        terminalreporter.write_sep("=", "benchmark headlines (full report: python -m bench.report)")
        for line in console_summary(machine, rows_of({"benchmarks": found})):
            terminalreporter.write_line(line)


def outcome_word(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "expected failure" if report.skipped else "unexpected pass"
    if report.failed:
        return "FAILED" if report.when == "call" else f"ERROR ({report.when})"
    return "skipped" if report.skipped else "ok"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def reference_weights() -> dict[str, float]:
    """Each case's measured time in the reference run: what the time-left estimate is scaled by."""
    try:
        data = json.loads(REFERENCE_JSON.read_text())
    except (OSError, ValueError):
        return {}
    return {b["name"]: b["stats"]["median"] for b in data.get("benchmarks", [])}


def load_average() -> list[str]:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return []


@pytest.hookimpl(hookwrapper=True)
def pytest_benchmark_group_stats(config, benchmarks, group_by):
    """Groups in numeric order (clients=2, 10, 100, ...), not as text (10, 100, 1000, 2)."""
    outcome = yield
    groups = outcome.get_result()
    outcome.force_result(sorted(groups, key=lambda pair: natural_key(pair[0] or "")))


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


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
                item.stash[EXPECTED_FAILURE] = mark.kwargs["reason"]


EXPECTED_FAILURE = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _record_expected_failure(request: pytest.FixtureRequest) -> None:
    """An expected failure says so in its JSON row, so the report does not call it FAILED."""
    reason = request.node.stash.get(EXPECTED_FAILURE, None)
    if reason and "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info["expected_failure"] = reason


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record the machine the reference run was made on, beside pytest-benchmark's own fields."""
    machine_info["cpu_model"] = cpu_model()
    machine_info["cores"] = os.cpu_count()
    machine_info["python"] = platform.python_version()
    machine_info["date_utc"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with open("/proc/loadavg") as f:
        machine_info["loadavg_at_start"] = f.read().split()[:3]
    skipped = {kind: why for kind in PEER_KINDS if (why := peer_missing(kind))}
    if skipped:
        machine_info["peers_skipped"] = skipped
    machine_info["mem_total_gib"] = round(
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
    )


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


@pytest.fixture
def quick(request: pytest.FixtureRequest) -> bool:
    return is_quick(request.config)


@contextlib.contextmanager
def started_servers(kind: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start fresh servers of `kind` (extra CLI args allowed); all stopped by PID on the way out."""
    started: list[ServerProcess] = []

    def start(*extra: str) -> ServerProcess:
        server = start_server(kind, *extra)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def threaded() -> Iterator[Callable[..., ServerProcess]]:
    """Start default servers (chat.server, extra CLI args allowed), as the hostile cases
    (bench/hostile.py) need: the limits they test are its own. All stopped by PID afterwards."""
    with started_servers("threaded") as start:
        yield start


@pytest.fixture
def rooms() -> Iterator[Callable[..., Room]]:
    """Start rooms of the cluster cases: `rooms(nodes, *args)` is one default chat server
    (nodes=1, no bus) or a local Redis and that many nodes on it (bench/cluster.py). Every
    process is stopped by PID afterwards, a Redis restarted by a fault case too."""
    with started_rooms() as start:
        yield start


@pytest.fixture
def swarms() -> Iterator[Callable[..., Swarm]]:
    """Make swarms of any server, client names starting with `prefix` (over TLS with the client
    context `tls`); all closed afterwards."""
    made: list[Swarm] = []

    def make(server: ServerProcess, prefix: str = "c", tls: ssl.SSLContext | None = None) -> Swarm:
        swarm = Swarm(server.address, prefix, tls, wire=wire_for(server.label))
        made.append(swarm)
        return swarm

    try:
        yield make
    finally:
        for swarm in made:
            swarm.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """An ECDSA P-256 CA and server certificate for the TLS cases (bench/test_tls.py)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def chat_server(
    server_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ServerProcess]]:
    """Start fresh servers of this test's kind (extra CLI args allowed); all stopped by PID.

    A peer that cannot run here skips its cases with one line saying why.
    """
    missing = peer_missing(server_kind)
    if missing:
        pytest.skip(missing)
    clients = (
        request.node.callspec.params.get("clients", 0) if hasattr(request.node, "callspec") else 0
    )
    most = wire_for(server_kind).max_clients
    if clients > most:
        pytest.skip(f"{server_kind}: more than {most} clients take minutes to join (see wire.py)")
    with started_servers(server_kind) as start:
        yield start


@pytest.fixture
def new_swarm(chat_server, swarms) -> Callable[..., Swarm]:
    """Make swarms of a server; set up after the servers, so all are closed before they stop."""
    return swarms
