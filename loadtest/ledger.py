"""Delivery bookkeeping: each process's DeliveryLedger, and the merged end-of-run check.

Pure counting apart from the drain's gevent sleep: no Locust here, so it runs (and is tested)
without a Locust process. A sender's seq goes up by one per message, so a gap is a loss and a
repeat (or a step back) a duplicate. A receiver is owed every message from the first one it saw of
a sender onwards, and, if it was still connected when the drain ended, up to that sender's last.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent

from harness.latency import encode, histogram_of_counts, merge_encoded, summary_ms, to_us
from loadtest.identity import same_clock

LAG_BUCKET_NS = 100_000  # read lag histogram: 0.1 ms buckets
DRAIN_QUIET_S = 0.5  # the end-of-run drain stops once no message has arrived for this long


@dataclass(slots=True)
class SenderTally:
    """What one receiver saw of one sender's messages."""

    first: int  # the first seq it saw: the start of what it is owed
    highest: int
    new: int = 1  # seqs above every earlier one
    repeats: int = 0  # seqs at or below one seen before: duplicates


@dataclass(slots=True)
class ReceiverTally:
    """One receiver's record: per sender what it saw, and whether it is still connected."""

    connected: bool = False
    senders: dict[str, SenderTally] = field(default_factory=dict)

    def heard(self, sender: str, seq: int) -> None:
        """Count message `seq` from `sender` (the per-delivery path: keep it lean)."""
        tally = self.senders.get(sender)
        if tally is None:
            self.senders[sender] = SenderTally(seq, seq)
        elif seq > tally.highest:
            tally.highest = seq
            tally.new += 1
        else:
            tally.repeats += 1


@dataclass(slots=True)
class PairSums:
    """One sender's tallies summed over receivers: what a ledger reports, and what merges."""

    tails: int = 0  # receivers still connected at the end: owed up to the sender's last message
    tail_first_sum: int = 0  # their first seqs, summed
    tail_highest_sum: int = 0  # their highest seqs, summed
    left_early_owed: int = 0  # owed to receivers that left before the end: first..highest each
    new: int = 0
    repeats: int = 0
    highest: int = 0  # the highest seq anyone saw

    def add_receiver(self, tally: SenderTally, connected: bool) -> None:
        """Add what one receiver saw of this sender; `connected`: still there at the end."""
        if connected:
            self.tails += 1
            self.tail_first_sum += tally.first
            self.tail_highest_sum += tally.highest
        else:
            self.left_early_owed += tally.highest - tally.first + 1
        self.new += tally.new
        self.repeats += tally.repeats
        self.highest = max(self.highest, tally.highest)

    def merge(self, other: PairSums) -> None:
        """Add another process's sums for the same sender."""
        self.tails += other.tails
        self.tail_first_sum += other.tail_first_sum
        self.tail_highest_sum += other.tail_highest_sum
        self.left_early_owed += other.left_early_owed
        self.new += other.new
        self.repeats += other.repeats
        self.highest = max(self.highest, other.highest)

    def expected(self, last_sent: int | None) -> int:
        """Deliveries owed; `last_sent` is the sender's last seq when it is one of ours."""
        if last_sent is not None:  # one of ours: everyone still connected is owed its last one
            owed = self.tails * (max(last_sent, self.highest) + 1) - self.tail_first_sum
        else:  # someone else in the room: only gaps are visible
            owed = self.tail_highest_sum - self.tail_first_sum + self.tails
        return owed + self.left_early_owed


class DeliveryLedger:
    """This process's half of the delivery check: what its users sent and what each one received."""

    def __init__(self) -> None:
        self.halted = False  # no more sending: the run is ending
        self.sent: dict[str, int] = {}  # sender name -> last seq handed to the socket
        self.receivers: list[ReceiverTally] = []
        self.deliveries = 0
        self.untimed = 0
        self.read_lag: dict[int, int] = {}  # LAG_BUCKET_NS buckets -> reads
        # Timed deliveries' latency, counted per microsecond (HdrHistograms at the end, so they
        # merge across processes): from the intended send time, from the actual send, and the
        # corrected one per second of arrival (wall clock, the same second in every process).
        self.corrected_us: dict[int, int] = {}
        self.uncorrected_us: dict[int, int] = {}
        self.per_second_us: dict[int, dict[int, int]] = {}
        self.foreign_lines = 0
        self.counts = {"connects": 0, "connect_failures": 0, "errors": 0, "disconnects": 0}
        self._timed_cache: dict[str, bool] = {}

    def timed(self, sender: str, wall_clock: bool) -> bool:
        """Whether deliveries from `sender` can be timed here (its clock is ours)."""
        known = self._timed_cache.get(sender)
        if known is None:
            known = self._timed_cache[sender] = wall_clock or same_clock(sender)
        return known

    def record_latency(self, corrected_ns: int, uncorrected_ns: int) -> None:
        """Count one timed delivery (the per-delivery path: dict increments only)."""
        corrected = to_us(corrected_ns)
        self.corrected_us[corrected] = self.corrected_us.get(corrected, 0) + 1
        uncorrected = to_us(uncorrected_ns)
        self.uncorrected_us[uncorrected] = self.uncorrected_us.get(uncorrected, 0) + 1
        second = self.per_second_us.setdefault(int(time.time()), {})
        second[corrected] = second.get(corrected, 0) + 1

    def drain(self, max_s: float) -> tuple[float, bool]:
        """Keep reading (other greenlets do) until nothing arrives for a while; (seconds, quiet)."""
        start = last_change = time.monotonic()
        seen = self.deliveries
        while True:
            gevent.sleep(0.05)
            now = time.monotonic()
            if self.deliveries != seen:
                seen, last_change = self.deliveries, now
            elif now - last_change >= DRAIN_QUIET_S:
                return now - start, True
            if now - start >= max_s:
                return now - start, False

    def report(self) -> dict[str, Any]:
        """Plain data (it crosses Locust's messaging): totals, per sender the receivers' sums."""
        pairs: dict[str, PairSums] = {}
        for receiver in self.receivers:
            for sender, tally in receiver.senders.items():
                pairs.setdefault(sender, PairSums()).add_receiver(tally, receiver.connected)
        return {
            "sent": dict(self.sent),
            "pairs": {sender: asdict(sums) for sender, sums in pairs.items()},
            "deliveries": self.deliveries,
            "untimed": self.untimed,
            "read_lag": sorted(self.read_lag.items()),  # pairs: msgpack maps want str keys
            "foreign_lines": self.foreign_lines,
            "latency_hdr": encode(histogram_of_counts(self.corrected_us)),
            "uncorrected_hdr": encode(histogram_of_counts(self.uncorrected_us)),
            "per_second_hdr": [
                [second, encode(histogram_of_counts(counts))]
                for second, counts in sorted(self.per_second_us.items())
            ],
            "users": len(self.receivers),
            "connected": sum(r.connected for r in self.receivers),
            **self.counts,
        }


def lag_percentiles(pairs: Iterable[Sequence[int]]) -> dict[str, float] | None:
    """p50, p99 and max in ms from (LAG_BUCKET_NS bucket, count) pairs; None without data."""
    counts: dict[int, int] = {}
    for bucket, count in pairs:
        counts[bucket] = counts.get(bucket, 0) + count
    total = sum(counts.values())
    if not total:
        return None
    out: dict[str, float] = {"reads": total}
    seen, ordered = 0, sorted(counts.items())
    targets = [("p50", 0.5), ("p99", 0.99)]
    for bucket, count in ordered:
        seen += count
        while targets and seen >= targets[0][1] * total:
            out[targets.pop(0)[0]] = round(bucket * LAG_BUCKET_NS / 1e6, 1)
    out["max"] = round(ordered[-1][0] * LAG_BUCKET_NS / 1e6, 1)
    return out


def merged_latency(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Every process's histograms merged: corrected and uncorrected summaries (ms)."""
    corrected = merge_encoded(r.get("latency_hdr", "") for r in reports if r.get("latency_hdr"))
    uncorrected = merge_encoded(r["uncorrected_hdr"] for r in reports if r.get("uncorrected_hdr"))
    return {
        "timed": corrected.get_total_count(),
        "corrected_ms": summary_ms(corrected),
        "uncorrected_ms": summary_ms(uncorrected),
    }


def latency_over_time(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Corrected p50/p99/max per second of the run (Unix time), every process merged."""
    seconds: dict[int, list[str]] = {}
    for report in reports:
        for second, encoded in report.get("per_second_hdr", []):
            seconds.setdefault(int(second), []).append(encoded)
    rows = []
    for second in sorted(seconds):
        histogram = merge_encoded(seconds[second])
        summary = summary_ms(histogram)
        rows.append(
            {"timestamp": second, "count": histogram.get_total_count()}
            | {key: summary[key] for key in ("p50", "p99", "max")}
        )
    return rows


def check_deliveries(reports: list[dict[str, Any]]) -> dict[str, int]:
    """Merge every process's ledger report: expected, received, lost and duplicated deliveries."""
    sent: dict[str, int] = {}
    pairs: dict[str, PairSums] = {}
    for report in reports:
        sent.update(report["sent"])
        for sender, sums in report["pairs"].items():
            pairs.setdefault(sender, PairSums()).merge(PairSums(**sums))
    expected = sum(sums.expected(sent.get(sender)) for sender, sums in pairs.items())
    new = sum(sums.new for sums in pairs.values())
    repeats = sum(sums.repeats for sums in pairs.values())
    return {
        "senders": len(sent),
        "sent": sum(sent.values()),
        "expected": expected,
        "received": new + repeats,
        "lost": expected - new,
        "duplicated": repeats,
    }
