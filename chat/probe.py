"""Measurement message bodies: a sequence number and the sender's clock, for latency and checks.

Used by the Locust user and the benchmark swarm. `time.monotonic_ns()` is one clock for every
process of a machine, so a receiver on the same machine can subtract the sender's stamp.
"""

from __future__ import annotations

PROBE_MARK = "#"


def probe_text(seq: int, sent_ns: int, size: int = 0) -> str:
    """`#SEQ SENT_NS` padded with `x` up to `size` characters (never shorter than the header)."""
    head = f"{PROBE_MARK}{seq} {sent_ns}"
    return head + " " + "x" * (size - len(head) - 1) if size > len(head) + 1 else head


def parse_probe(text: str) -> tuple[int, int] | None:
    """(seq, sent_ns) from a probe body, or None when the text is not a probe."""
    if not text.startswith(PROBE_MARK):
        return None
    parts = text[1:].split(" ", 2)
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1])
