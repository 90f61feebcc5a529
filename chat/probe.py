"""Measurement message bodies: a sequence number and the sender's clock, for latency and checks.

Used by the Locust user and the benchmark swarm. `time.monotonic_ns()` is one clock for every
process of a machine, so a receiver on the same machine can subtract the sender's stamp. A paced
sender also stamps when the probe was due by its schedule (the intended time), so a receiver can
measure from the schedule rather than from the late send (coordinated omission, as wrk2 does).
"""

from __future__ import annotations

PROBE_MARK = "#"


def probe_text(seq: int, sent_ns: int, size: int = 0, intended_ns: int | None = None) -> str:
    """`#SEQ SENT_NS [INTENDED_NS]` padded with `x` up to `size` characters (never shorter)."""
    head = f"{PROBE_MARK}{seq} {sent_ns}"
    if intended_ns is not None:
        head += f" {intended_ns}"
    return head + " " + "x" * (size - len(head) - 1) if size > len(head) + 1 else head


def parse_probe_times(text: str) -> tuple[int, int, int] | None:
    """(seq, sent_ns, intended_ns) from a probe body (intended is the send time when absent)."""
    if not text.startswith(PROBE_MARK):
        return None
    parts = text[1:].split(" ", 3)
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    sent = int(parts[1])
    intended = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else sent
    return int(parts[0]), sent, intended


def parse_probe(text: str) -> tuple[int, int] | None:
    """(seq, sent_ns) from a probe body, or None when the text is not a probe."""
    times = parse_probe_times(text)
    return None if times is None else (times[0], times[1])
