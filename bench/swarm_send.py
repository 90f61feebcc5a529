"""What the swarm's senders send in a window: their plans, their probe lines, and the paced clock.

A plan at rate 0 sends its whole burst at once; a paced plan keeps a fixed schedule and stamps
each probe with both the time it actually goes out and the time it was due, so latency can be
measured from either: uncorrected (from the send) and corrected for coordinated omission (from
the schedule), as wrk2 reports them. A paced plan with `max_in_flight` waits, like a person who
waits to see their line before typing the next, until its earlier probes have reached a watching
reader; the probes it could not send meanwhile go out late, at once, still stamped with when they
were due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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
    # 0: never wait (open loop). N: at most N probes sent and not yet seen by the next client.
    max_in_flight: int = 0


# What a sender writes for one chat message's text (the wire's framing of it).
Encode = Callable[[str], bytes]


def burst(plan: SenderPlan, first_seq: int, encode: Encode = encode_line) -> bytes:
    """The plan's probes numbered from `first_seq`, every one stamped now."""
    stamp = time.monotonic_ns()
    lines = [encode(probe_text(first_seq + k, stamp, plan.size)) for k in range(plan.count)]
    return b"".join(lines)


class PacedSender:
    """One paced plan's schedule: the next probe's number and when it is due (ns)."""

    __slots__ = ("plan", "due_ns", "step_ns", "seq", "first_seq", "end_seq", "watch", "encode")

    def __init__(
        self,
        plan: SenderPlan,
        first_seq: int,
        t0_ns: int,
        watch: Watch | None = None,
        encode: Encode = encode_line,
    ) -> None:
        self.plan = plan
        self.due_ns = t0_ns + int(plan.start_offset_s * 1e9)
        self.step_ns = int(1e9 / plan.rate_per_s)
        self.seq = self.first_seq = first_seq
        self.end_seq = first_seq + plan.count
        self.watch = watch
        self.encode = encode

    @property
    def finished(self) -> bool:
        return self.seq >= self.end_seq

    @property
    def waiting(self) -> bool:
        """Held back: `max_in_flight` probes are out and the watcher has not seen them yet."""
        watch = self.watch
        if watch is None:
            return False
        return self.seq - self.first_seq - watch.seen() >= self.plan.max_in_flight

    def lines_due(self, now_ns: int) -> bytes:
        """Every probe due by `now_ns`, sent `now_ns`, each stamped with when it was due too."""
        due, step_ns, seq, end = self.due_ns, self.step_ns, self.seq, self.end_seq
        size, encode = self.plan.size, self.encode
        lines = []
        while due <= now_ns and seq < end:
            lines.append(encode(probe_text(seq, now_ns, size, intended_ns=due)))
            due += step_ns
            seq += 1
        self.due_ns, self.seq = due, seq
        return b"".join(lines)


class Watch:
    """How many lines a watching reader has seen since the window began (its pending count,
    in newlines: `newlines_per_line` of them make one delivered line)."""

    __slots__ = ("reader", "pending_at_start", "newlines_per_line")

    def __init__(self, reader: Pending, newlines_per_line: int = 1) -> None:
        self.reader = reader
        self.pending_at_start = reader.pending
        self.newlines_per_line = newlines_per_line

    def seen(self) -> int:
        return (self.pending_at_start - max(0, self.reader.pending)) // self.newlines_per_line


class Pending(Protocol):
    index: int
    pending: int


def next_due_wait_ns(paced: list[PacedSender], now_ns: int) -> int:
    """How long until the earliest paced probe is due (IDLE_WAIT_NS when none is left).

    A waiting sender is left out: what it waits for is a read, which ends the poll anyway.
    """
    dues = (sender.due_ns for sender in paced if not sender.waiting)
    return min(dues, default=now_ns + IDLE_WAIT_NS) - now_ns


# What a probe line adds to its text: the sender's name (a few characters), ": " and "\n".
LINE_OVERHEAD_BYTES = 32
# A probe's text is at least its header: "#SEQ SENT_NS INTENDED_NS".
PROBE_HEADER_BYTES = 48


def expected_bytes(plans: list[SenderPlan], readers: list[Pending]) -> int:
    """About what `readers` will receive of `plans` (a little more rather than less)."""
    line = LINE_OVERHEAD_BYTES
    size = {p.index: p.count * (max(p.size, PROBE_HEADER_BYTES) + line) for p in plans}
    total = sum(size.values())
    return sum(total - size.get(reader.index, 0) for reader in readers)
