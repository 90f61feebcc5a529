"""What the swarm's senders send in a window: their plans, their probe lines, and the paced clock.

A plan at rate 0 sends its whole burst at once; a paced plan sends each probe when it is due,
stamped with the time it actually goes out, so a late send shows up as lag rather than latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from chat.probe import probe_text
from chat.protocol import encode_line

# How long a loop with no paced sender left may wait before looking again.
IDLE_WAIT_NS = 500_000_000


@dataclass
class SenderPlan:
    """What one client sends in a window: `count` probes, all at once or at `rate_per_s`."""

    index: int
    count: int
    rate_per_s: float = 0.0
    size: int = 0
    start_offset_s: float = 0.0


def burst(plan: SenderPlan, first_seq: int) -> bytes:
    """The plan's probes numbered from `first_seq`, every one stamped now."""
    stamp = time.monotonic_ns()
    lines = [encode_line(probe_text(first_seq + k, stamp, plan.size)) for k in range(plan.count)]
    return b"".join(lines)


class PacedSender:
    """One paced plan's schedule: the next probe's number and when it is due (ns)."""

    __slots__ = ("plan", "due_ns", "step_ns", "seq", "end_seq")

    def __init__(self, plan: SenderPlan, first_seq: int, t0_ns: int) -> None:
        self.plan = plan
        self.due_ns = t0_ns + int(plan.start_offset_s * 1e9)
        self.step_ns = int(1e9 / plan.rate_per_s)
        self.seq = first_seq
        self.end_seq = first_seq + plan.count

    @property
    def finished(self) -> bool:
        return self.seq >= self.end_seq

    def lines_due(self, now_ns: int) -> bytes:
        """Every probe due by `now_ns`, stamped `now_ns`; the schedule moves past them."""
        due, step_ns, seq, end = self.due_ns, self.step_ns, self.seq, self.end_seq
        size = self.plan.size
        lines = []
        while due <= now_ns and seq < end:
            lines.append(encode_line(probe_text(seq, now_ns, size)))
            due += step_ns
            seq += 1
        self.due_ns, self.seq = due, seq
        return b"".join(lines)


def next_due_wait_ns(paced: list[PacedSender], now_ns: int) -> int:
    """How long until the earliest paced probe is due (IDLE_WAIT_NS when none is left)."""
    return min((sender.due_ns for sender in paced), default=now_ns + IDLE_WAIT_NS) - now_ns
