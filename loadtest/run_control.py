"""One test run in this process, and the end-of-run protocol: halt, drain, merge, judge.

Registers its Locust event listeners on import. Each test start hangs a fresh ChatRun off the
Locust environment (`run_of(environment)`). At the end the master halts every worker's senders,
then has every process drain and report its ledger over Locust's messaging, and merges the reports.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import locust.runners
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from chat.protocol import MAX_LINE_BYTES
from loadtest.cpu_use import cpu_use_pct
from loadtest.ledger import DeliveryLedger
from loadtest.options import (
    Address,
    chat_addresses,
    connection_settings,
    options_of,
    user_host_index,
)
from loadtest.server_stats import fetch_server_stats
from loadtest.summary import finish_run

log = logging.getLogger("chat_user")

CONTROL_TIMEOUT_S = 10.0  # how long the master waits for workers to answer, beyond the drain
CPU_SAMPLE_EVERY_S = 1.0
RUN_ATTRIBUTE = "chat_run"  # where the current ChatRun hangs off the Locust environment
# Locust's own CPU warning looks at 10-second samples: the peak is over windows that long too.
CPU_PEAK_WINDOW_S = locust.runners.CPU_MONITOR_INTERVAL


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _cpu_wait_s() -> float | None:
    """Seconds this process's threads spent runnable but waiting for a CPU (Linux schedstat)."""
    try:
        tasks = Path("/proc/self/task").iterdir()
        return sum(int((t / "schedstat").read_text().split()[1]) for t in tasks) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class ChatRun:
    """State of the current test in this process: ledger, CPU meter, and (master) worker reports.

    `active` until the test stops; the idle run an environment has before its first test start is
    never active.
    """

    def __init__(self, environment: Environment, active: bool) -> None:
        self.environment = environment
        self.ledger = DeliveryLedger()
        self.active = active
        self.started = time.monotonic()
        self.cpu_samples = [(self.started, _cpu_s())]
        self.cpu_wait_start = _cpu_wait_s()
        self.server_start: dict | None = None
        self.setup_error: str | None = None  # why the run could not start, e.g. no --host
        self.reported = False
        self.halted_workers: set[str] = set()
        self.worker_reports: dict[str, dict] = {}
        self.users_per_host: list[int] = []  # this process's users by host (--chat-hosts order)

    def next_address(self) -> Address:
        """Where this process's next user joins: the hosts in turn (options.user_address)."""
        environment = self.environment
        addresses = chat_addresses(options_of(environment), environment.host)
        worker_index = getattr(environment.runner, "worker_index", 0)
        counts = self.users_per_host
        counts.extend([0] * (len(addresses) - len(counts)))
        index = user_host_index(len(addresses), worker_index, sum(counts))
        counts[index] += 1
        return addresses[index]

    def sample_cpu(self) -> None:
        """Record this process's CPU time every second while the test runs (a greenlet)."""
        while True:
            gevent.sleep(CPU_SAMPLE_EVERY_S)
            if self.reported or run_of(self.environment) is not self:
                return
            self.cpu_samples.append((time.monotonic(), _cpu_s()))

    def process_report(self) -> dict[str, Any]:
        """Ledger totals plus this process's CPU use from the start to now, the drain included."""
        self.reported = True
        self.cpu_samples.append((time.monotonic(), _cpu_s()))
        (t0, cpu0), (t1, cpu1) = self.cpu_samples[0], self.cpu_samples[-1]
        wall, cpu = t1 - t0, cpu1 - cpu0
        average, peak = cpu_use_pct(self.cpu_samples, CPU_PEAK_WINDOW_S)
        waited = _cpu_wait_s()
        if waited is not None and self.cpu_wait_start is not None and wall > 0:
            wait_pct: float | None = round(100 * (waited - self.cpu_wait_start) / wall, 1)
        else:
            wait_pct = None
        return {
            **self.ledger.report(),
            "pid": os.getpid(),
            "machine": socket.gethostname(),
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "cpu_avg_pct": average,
            "cpu_peak_pct": peak,
            "cpu_wait_pct": wait_pct,
            "users_per_host": self.users_per_host,
        }


def run_of(environment: Environment) -> ChatRun:
    """The environment's current run (an idle one before the first test start)."""
    run = getattr(environment, RUN_ATTRIBUTE, None)
    if run is None:
        run = ChatRun(environment, active=False)
        setattr(environment, RUN_ATTRIBUTE, run)
    return run


@events.init.add_listener
def _on_init(environment: Environment, **_kw: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message("chat_halted", _master_on_halted)
        runner.register_message("chat_report", _master_on_report)
        environment.events.spawning_complete.add_listener(
            functools.partial(_master_on_spawning_complete, environment)
        )
    elif isinstance(runner, WorkerRunner):
        runner.register_message("chat_halt", _worker_on_halt)
        runner.register_message("chat_drain", _worker_on_drain, concurrent=True)
        runner.register_message("chat_room", _worker_on_room)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kw: Any) -> None:
    run = ChatRun(environment, active=True)
    setattr(environment, RUN_ATTRIBUTE, run)
    gevent.spawn(run.sample_cpu)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    options = options_of(environment)
    if options.chat_message_bytes > MAX_LINE_BYTES:
        log.warning("--chat-message-bytes is over the server's %d-byte line limit", MAX_LINE_BYTES)
    if isinstance(runner, MasterRunner):
        options.chat_room_users = runner.target_user_count
    try:
        run.server_start = fetch_server_stats(
            chat_addresses(options, environment.host)[0], *connection_settings(options)
        )
    except ValueError as exc:
        log.error("%s", exc)
        run.setup_error = str(exc)
        environment.process_exit_code = 2
        if runner is not None:
            gevent.spawn_later(0, runner.quit)


def _master_on_spawning_complete(environment: Environment, user_count: int, **_kw: Any) -> None:
    """Every worker paces its users for the whole room, now that the master knows its size."""
    options_of(environment).chat_room_users = user_count
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message("chat_room", {"users": user_count})


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_kw: Any) -> None:
    run = run_of(environment)
    if not run.active or isinstance(environment.runner, WorkerRunner):
        return  # workers are told by the master's messages below
    run.active = False
    options = options_of(environment)
    if isinstance(environment.runner, MasterRunner):
        reports, missing = _collect_from_workers(run, environment.runner, options.chat_drain_s)
        reports.append({**run.process_report(), "node": "master", "drain_s": 0.0, "quiet": True})
    else:
        run.ledger.halted = True
        drain_s, quiet = run.ledger.drain(options.chat_drain_s)
        reports = [{**run.process_report(), "node": "local", "drain_s": drain_s, "quiet": quiet}]
        missing = 0
    finish_run(environment, options, reports, missing, run.server_start, run.setup_error)


# --- master <-> workers: halt everyone, then drain everyone, then merge --------------------------


def _collect_from_workers(
    run: ChatRun, runner: MasterRunner, drain_s: float
) -> tuple[list[dict[str, Any]], int]:
    """Halt every worker, then have each drain and report; (the reports, how many are missing)."""
    workers = {client.id for client in runner.clients.all}
    runner.send_message("chat_halt")
    _wait_for(lambda: workers <= run.halted_workers, CONTROL_TIMEOUT_S)
    runner.send_message("chat_drain")
    _wait_for(lambda: workers <= run.worker_reports.keys(), drain_s + CONTROL_TIMEOUT_S)
    reports = [run.worker_reports[w] for w in sorted(workers & run.worker_reports.keys())]
    return reports, len(workers - run.worker_reports.keys())


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        gevent.sleep(0.05)


def _master_on_halted(environment: Environment, msg: Any, **_kw: Any) -> None:
    run_of(environment).halted_workers.add(msg.node_id)


def _master_on_report(environment: Environment, msg: Any, **_kw: Any) -> None:
    run_of(environment).worker_reports[msg.node_id] = msg.data


def _worker_on_halt(environment: Environment, msg: Any, **_kw: Any) -> None:
    run_of(environment).ledger.halted = True
    environment.runner.send_message("chat_halted")


def _worker_on_drain(environment: Environment, msg: Any, **_kw: Any) -> None:
    run = run_of(environment)
    drain_s, quiet = run.ledger.drain(options_of(environment).chat_drain_s)
    # Stats first, on the same channel: the master has every delivery before it gives its verdict.
    send_stats = getattr(environment.runner, "_send_stats", None)
    if send_stats is not None:
        send_stats()
    index = getattr(environment.runner, "worker_index", -1)
    report = {**run.process_report(), "node": f"worker {index}", "drain_s": drain_s, "quiet": quiet}
    environment.runner.send_message("chat_report", report)


def _worker_on_room(environment: Environment, msg: Any, **_kw: Any) -> None:
    options_of(environment).chat_room_users = int(msg.data["users"])
