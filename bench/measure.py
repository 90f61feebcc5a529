"""Glue between the swarm, the server process and pytest-benchmark: windows, checks, extra_info."""

from __future__ import annotations

import os
import resource
import socket
from dataclasses import dataclass, field
from typing import Protocol

from bench.swarm import (
    DRIVER_SATURATED_FRACTION,
    IDLE_TIMEOUT_S,
    ConnectReport,
    DriveReport,
    SenderPlan,
    Swarm,
    Verdict,
)
from chat.protocol import (
    LINE_TOO_LONG,
    QUIT_COMMAND,
    STATS_COMMAND,
    LineDecoder,
    command_line,
    encode_line,
    stats_reply,
)
from harness import ServerProcess
from harness.latency import encode, histogram_of, per_interval, summary_ms

JOIN_TIMEOUT_S = 120.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class CpuMeter(Protocol):
    """What a window charges: a server process, or every process of a cluster's room."""

    def cpu_s(self) -> float: ...


@dataclass
class Window:
    """Everything measured over one window: one or more drives, then one delivery check."""

    drives: list[DriveReport] = field(default_factory=list)
    server_cpu_s: float = 0.0
    machine_busy_s: float = 0.0
    driver_page_faults: int = 0
    verdict: Verdict | None = None

    @property
    def wall_s(self) -> float:
        return sum(d.wall_s for d in self.drives)

    @property
    def driver_cpu_s(self) -> float:
        return sum(d.driver_cpu_s for d in self.drives)

    @property
    def timed_out(self) -> bool:
        return any(d.timed_out for d in self.drives)


def join(swarm: Swarm, clients: int, *, rcvbuf: dict[int, int] | None = None) -> Swarm:
    """Join `clients` clients and drain the join notices; returns the swarm."""
    swarm.connect(clients, timeout_s=JOIN_TIMEOUT_S, rcvbuf=rcvbuf)
    swarm.settle()
    return swarm


def drive_once(
    window: Window,
    server: CpuMeter,
    swarm: Swarm,
    plans: list[SenderPlan],
    timeout_s: float,
    poll_interval_s: float = 0.0,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> None:
    """One drive inside `window`, with the server's CPU time around it (a cluster's: all of
    its processes')."""
    swarm.reserve(plans)  # not counted: the driver's memory for the window is set up before it
    cpu0, busy0, faults0 = server.cpu_s(), machine_busy_s(), page_faults()
    window.drives.append(swarm.drive(plans, timeout_s, poll_interval_s, idle_timeout_s))
    window.server_cpu_s += server.cpu_s() - cpu0
    window.machine_busy_s += machine_busy_s() - busy0
    window.driver_page_faults += page_faults() - faults0


@dataclass
class Joined:
    """A timed join (`timed_join`) and the broadcast after it."""

    report: ConnectReport
    server_cpu_s: float  # the server's CPU while the clients joined
    rss_before: int
    rss_after: int
    window: Window  # the broadcast that reached every client, verified

    @property
    def rss_per_client_kib(self) -> float:
        return round((self.rss_after - self.rss_before) / self.report.count / 1024, 2)


def timed_join(benchmark, server: ServerProcess, swarm: Swarm, clients: int) -> Joined:
    """All clients connect and are welcomed (the timed part, one benchmark round), then one
    broadcast reaches them all (checked). Set benchmark.group first."""
    rss_before, cpu_before = server.rss_bytes(), server.cpu_s()
    report = benchmark.pedantic(
        lambda: swarm.connect(clients, timeout_s=JOIN_TIMEOUT_S), rounds=1, iterations=1
    )
    server_cpu_s = server.cpu_s() - cpu_before
    swarm.settle(quiet_s=0.5, timeout_s=120.0)
    rss_after = server.rss_bytes()
    window = Window()
    swarm.begin_window()
    drive_once(window, server, swarm, [SenderPlan(0, 1)], timeout_s=60.0)
    finish(window, swarm)
    return Joined(report, server_cpu_s, rss_before, rss_after, window)


def page_faults() -> int:
    """The driver's page faults so far: every fresh page its kept chunks land on costs one."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine spent busy so far (/proc/stat), to spot other load."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS_PER_S


def finish(window: Window, swarm: Swarm) -> Verdict:
    """Check every delivery of the window (after the timed part)."""
    window.verdict = swarm.verify()
    return window.verdict


def extra_info(case: str, server: ServerProcess, clients: int, window: Window, **more) -> dict:
    """The numbers a report needs, flat, for pytest-benchmark's extra_info."""
    verdict = window.verdict or Verdict()
    wall = window.wall_s
    delivered = verdict.delivered
    millions = delivered / 1e6
    info = {
        "case": case,
        "server": server.label,
        "clients": clients,
        "expected": verdict.expected,
        "delivered": delivered,
        "lost": verdict.lost,
        "duplicates": verdict.duplicates,
        "out_of_order": verdict.out_of_order,
        "unexpected": verdict.unexpected,
        "timed_out": window.timed_out,
        "wall_s": round(wall, 6),
        "deliveries_per_s": round(delivered / wall, 1) if wall > 0 else 0.0,
        "server_cpu_s": round(window.server_cpu_s, 3),
        "server_cpu_frac": round(window.server_cpu_s / wall, 3) if wall > 0 else 0.0,
        "server_cpu_s_per_million": round(window.server_cpu_s / millions, 3) if millions else None,
        "driver_cpu_s": round(window.driver_cpu_s, 3),
        "driver_cpu_frac": round(window.driver_cpu_s / wall, 3) if wall > 0 else 0.0,
        "driver_saturated": wall > 0 and window.driver_cpu_s / wall > DRIVER_SATURATED_FRACTION,
        "other_cpu_frac": round(_other_load(window), 3),
        "max_send_lag_ms": round(max((d.max_send_lag_ms for d in window.drives), default=0), 3),
        "driver_page_faults": window.driver_page_faults,
    }
    info.update(latency_info(verdict))
    info.update(more)
    return info


def latency_info(verdict: Verdict) -> dict:
    """Corrected (`p99_ms`: from the intended send time) and uncorrected (`uncorrected_p99_ms`:
    from the actual send) percentiles, the fan-out spread, and corrected latency per second."""
    corrected = histogram_of(verdict.corrected_ns)
    info: dict = {f"{name}_ms": value for name, value in summary_ms(corrected).items()}
    uncorrected = summary_ms(histogram_of(verdict.latencies_ns))
    info.update({f"uncorrected_{name}_ms": value for name, value in uncorrected.items()})
    spread = summary_ms(histogram_of(verdict.spread.spreads_ns()))
    info.update(spread_p50_ms=spread["p50"], spread_p99_ms=spread["p99"])
    intended = (r - c for r, c in zip(verdict.received_ns, verdict.corrected_ns, strict=True))
    origin = min(intended, default=0)
    info["over_time"] = per_interval(verdict.received_ns, verdict.corrected_ns, origin)
    info["latency_hdr"] = encode(corrected)
    return info


def _other_load(window: Window) -> float:
    """Share of the machine's cores busy with neither the server nor the driver (noise)."""
    other = window.machine_busy_s - window.server_cpu_s - window.driver_cpu_s
    capacity = window.wall_s * (os.cpu_count() or 1)
    return max(0.0, other / capacity) if capacity > 0 else 0.0


class SendersBlocked(AssertionError):
    """The window timed out with lines missing, yet nothing that did arrive was wrong.

    What the original inline design does with one stalled reader: its senders block on that
    socket, so the others stop receiving. Any duplicate, reordered or unexpected line is a
    different failure and raises a plain AssertionError instead.
    """


def assert_delivered(window: Window) -> None:
    """Fail the case unless every reader got every line exactly once, in each sender's order."""
    verdict = window.verdict
    assert verdict is not None, "window was not verified"
    clean = verdict.duplicates == verdict.out_of_order == verdict.unexpected == 0
    if window.timed_out and verdict.lost and clean:
        raise SendersBlocked(f"timed out, only lines missing: {verdict.problems()}")
    assert not window.timed_out and verdict.ok, f"delivery failed: {verdict.problems()}"


# Join and leave notices cost N²/2 deliveries while clients join; the cases that do not measure
# joining switch them off so that setting up 1,000 clients stays cheap for every server.
QUIET_JOINS = ("--notice-limit", "0")


STATS_TIMEOUT_S = 10.0


def server_stats(address: tuple[str, int], name: str = "stats-observer") -> dict[str, float]:
    """Join as `name` (from 127.0.0.1), ask `/stats`, leave; the counters as numbers."""
    with socket.create_connection(address, timeout=STATS_TIMEOUT_S) as sock:
        decoder = LineDecoder(1 << 20)
        ask = encode_line(command_line(STATS_COMMAND)) + encode_line(command_line(QUIT_COMMAND))
        sock.sendall(encode_line(name) + ask)
        while True:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"no /stats reply from {address}")
            for raw in decoder.feed(data):
                if raw is LINE_TOO_LONG:
                    continue
                stats = stats_reply(raw.decode("utf-8", "replace"))
                if stats is not None:
                    return stats
