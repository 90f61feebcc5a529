"""A measured window's bookkeeping between polls, and what joining and a window report.

`DriveState` is what the swarm's loop carries from one poll to the next: who is still short of
lines, the paced senders, the clock. `DriveReport` and `ConnectReport` are what callers get back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.swarm_client import Client
from bench.swarm_send import PacedSender

DRIVER_SATURATED_FRACTION = 0.9


@dataclass
class ConnectReport:
    """How long `count` clients took from the first connect to the last welcome."""

    count: int
    connect_s: float
    driver_cpu_s: float

    @property
    def driver_cpu_frac(self) -> float:
        return self.driver_cpu_s / self.connect_s if self.connect_s > 0 else 0.0


@dataclass
class DriveReport:
    """One measured window: wall time to the last expected line, and the driver's own CPU."""

    wall_s: float
    driver_cpu_s: float
    timed_out: bool
    max_send_lag_ms: float

    @property
    def driver_cpu_frac(self) -> float:
        return self.driver_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def driver_saturated(self) -> bool:
        return self.driver_cpu_frac > DRIVER_SATURATED_FRACTION


@dataclass(slots=True)
class DriveState:
    """One drive's clock and bookkeeping, between the polls of its loop."""

    readers: set[int]  # still short of lines by their newline count
    paced: list[PacedSender]
    t0_ns: int
    cpu0_s: float
    deadline_ns: int
    # Newline count reached, notices not yet ruled out (that waits until nothing else is left).
    done: list[Client] = field(default_factory=list)
    max_lag_ns: int = 0
    # Until something is read, the window counts as having read, and ended, when it began.
    last_read_ns: int = field(init=False)
    last_line_ns: int = field(init=False)
    last_line_cpu_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_read_ns = self.last_line_ns = self.t0_ns
        self.last_line_cpu_s = self.cpu0_s

    def out_of_time(self, now_ns: int, idle_ns: int) -> bool:
        """Past the deadline, or nothing read for `idle_ns` with nothing left to send (stuck)."""
        idle = not self.paced and now_ns - self.last_read_ns > idle_ns
        return now_ns > self.deadline_ns or idle

    def report(self) -> DriveReport:
        """Timed out if anyone is still short; else the window ended at the last expected line."""
        timed_out = bool(self.readers or self.paced or self.done)
        # The window ends with the last expected line, not with the checks that follow it.
        end_ns = time.monotonic_ns() if timed_out else self.last_line_ns
        cpu_s = (time.process_time() if timed_out else self.last_line_cpu_s) - self.cpu0_s
        return DriveReport((end_ns - self.t0_ns) / 1e9, cpu_s, timed_out, self.max_lag_ns / 1e6)
