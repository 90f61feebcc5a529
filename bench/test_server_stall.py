"""A server stalled on purpose: SIGSTOP for 200 ms once, in the middle of a paced run.

The demonstration of coordinated omission (docs/BENCHMARKS.md). One sender keeps a schedule of
100 msg/s but, like a wrk connection or a person who waits to see their line, sends the next probe
only once the previous one has arrived. While the server is stopped nothing arrives, so the probes
due meanwhile go out late, all at once when it resumes. Measured from when they were actually sent
(uncorrected) they look fast: the stall shows in one probe only. Measured from when they were due
(corrected) every one of them carries its share of the stall, and the per-second series shows it
where it happened. The case checks delivery; the report shows and explains the numbers.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bench.measure import QUIET_JOINS, Window, assert_delivered, drive_once, extra_info, finish
from bench.measure import join as join_swarm
from bench.swarm import SenderPlan

RATE_PER_S = 100.0
STALL_S = 0.2
FULL_SECONDS, FULL_STALL_AT_S = 4.0, 1.5
QUICK_SECONDS, QUICK_STALL_AT_S = 0.8, 0.3


class StallOnce:
    """A thread that stops a process with SIGSTOP once, for `for_s`, `at_s` after `start()`."""

    def __init__(self, pid: int, at_s: float, for_s: float) -> None:
        self.pid, self.at_s, self.for_s = pid, at_s, for_s
        self.stopped_s = 0.0
        self.thread = threading.Thread(target=self._run, name="stall-once", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        time.sleep(self.at_s)
        began = time.monotonic()
        os.kill(self.pid, signal.SIGSTOP)
        try:
            time.sleep(self.for_s)
        finally:
            os.kill(self.pid, signal.SIGCONT)
            self.stopped_s = time.monotonic() - began

    def join(self) -> None:
        self.thread.join(timeout=self.at_s + self.for_s + 10.0)


@pytest.mark.timeout(120)
@pytest.mark.clients(full=(10,), quick=(3,))
def test_server_stall(benchmark, chat_server, new_swarm, server_kind, clients, quick):
    """Paced sender that waits for its last line; the server stops for 200 ms once."""
    server = chat_server(*QUIET_JOINS)
    swarm = join_swarm(new_swarm(server), clients)
    seconds, at_s = (QUICK_SECONDS, QUICK_STALL_AT_S) if quick else (FULL_SECONDS, FULL_STALL_AT_S)
    plan = SenderPlan(0, int(RATE_PER_S * seconds), rate_per_s=RATE_PER_S, max_in_flight=1)
    window = Window()
    swarm.begin_window()
    stall = StallOnce(server.pid, at_s, STALL_S)

    def paced_with_stall() -> None:
        stall.start()
        try:
            drive_once(window, server, swarm, [plan], timeout_s=seconds + 30.0)
        finally:
            stall.join()

    benchmark.group = f"server-stall clients={clients}"
    benchmark.pedantic(paced_with_stall, rounds=1, iterations=1)
    finish(window, swarm)
    info = extra_info(
        "server-stall",
        server,
        clients,
        window,
        rate_per_s=RATE_PER_S,
        stall_at_s=at_s,
        stalled_s=round(stall.stopped_s, 3),
    )
    benchmark.extra_info.update(info)
    assert stall.stopped_s >= STALL_S, "the server was not stopped"
    assert_delivered(window)
    # From the schedule is never earlier than from the send: the corrected tail includes the other.
    assert info["max_ms"] >= info["uncorrected_max_ms"]
