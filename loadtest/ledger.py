"""Delivery bookkeeping: each process's DeliveryLedger, and the merged end-of-run check.

Pure counting apart from the drain's gevent sleep: no Locust here, so it runs (and is tested)
without a Locust process.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent

from loadtest.identity import same_clock

if TYPE_CHECKING:
    from loadtest.client import ChatClient

LAG_BUCKET_NS = 100_000  # read lag histogram: 0.1 ms buckets
DRAIN_QUIET_S = 0.5  # the end-of-run drain stops once no message has arrived for this long


class DeliveryLedger:
    """This process's half of the delivery check: what its users sent and what each one received.

    Per receiver and sender it keeps [first seq, highest seq, new seqs, repeats]. A sender's seq
    goes up by one per message, so a gap is a loss and a repeat (or a step back) a duplicate.
    A receiver is owed every message from the first one it saw of a sender onwards, and, if it was
    still connected when the drain ended, up to that sender's last message.
    """

    def __init__(self) -> None:
        self.halted = False  # no more sending: the run is ending
        self.sent: dict[str, int] = {}  # sender name -> last seq handed to the socket
        self.receivers: list[ChatClient] = []
        self.deliveries = 0
        self.untimed = 0
        self.read_lag: dict[int, int] = {}  # LAG_BUCKET_NS buckets -> reads
        self.foreign_lines = 0
        self.counts = {"connects": 0, "connect_failures": 0, "errors": 0, "disconnects": 0}
        self._timed_cache: dict[str, bool] = {}

    def timed(self, sender: str, wall_clock: bool) -> bool:
        known = self._timed_cache.get(sender)
        if known is None:
            known = self._timed_cache[sender] = wall_clock or same_clock(sender)
        return known

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
        # per sender: [tail receivers, their sum of first seqs, sum of last seqs,
        #              owed to receivers that left early, new seqs received, repeats, highest seq]
        pairs: dict[str, list[int]] = {}
        for receiver in self.receivers:
            tail = receiver.connected
            for sender, (first, last, new, repeats) in receiver.seen.items():
                p = pairs.get(sender)
                if p is None:
                    p = pairs[sender] = [0, 0, 0, 0, 0, 0, 0]
                if tail:
                    p[0] += 1
                    p[1] += first
                    p[2] += last
                else:
                    p[3] += last - first + 1
                p[4] += new
                p[5] += repeats
                p[6] = max(p[6], last)
        return {
            "sent": dict(self.sent),
            "pairs": pairs,
            "deliveries": self.deliveries,
            "untimed": self.untimed,
            "read_lag": sorted(self.read_lag.items()),  # pairs: msgpack maps want str keys
            "foreign_lines": self.foreign_lines,
            "users": len(self.receivers),
            "connected": sum(r.connected for r in self.receivers),
            **self.counts,
        }


def lag_percentiles(pairs: list) -> dict[str, float] | None:
    """p50, p99 and max in ms from (LAG_BUCKET_NS bucket, count) pairs; None without data."""
    counts: dict[int, int] = {}
    for bucket, count in pairs:
        counts[bucket] = counts.get(bucket, 0) + count
    total = sum(counts.values())
    if not total:
        return None
    out, seen, ordered = {"reads": total}, 0, sorted(counts.items())
    targets = [("p50", 0.5), ("p99", 0.99)]
    for bucket, count in ordered:
        seen += count
        while targets and seen >= targets[0][1] * total:
            out[targets.pop(0)[0]] = round(bucket * LAG_BUCKET_NS / 1e6, 1)
    out["max"] = round(ordered[-1][0] * LAG_BUCKET_NS / 1e6, 1)
    return out


def check_deliveries(reports: list[dict[str, Any]]) -> dict[str, int]:
    """Merge every process's ledger report: expected, received, lost and duplicated deliveries."""
    sent: dict[str, int] = {}
    pairs: dict[str, list[int]] = {}
    for report in reports:
        sent.update(report["sent"])
        for sender, p in report["pairs"].items():
            q = pairs.setdefault(sender, [0, 0, 0, 0, 0, 0, 0])
            for i in range(6):
                q[i] += p[i]
            q[6] = max(q[6], p[6])
    expected = new = repeats = 0
    for sender, (tails, first_sum, last_sum, left_early, got, dup, highest) in pairs.items():
        if sender in sent:  # one of ours: everyone still connected is owed its last message
            expected += tails * (max(sent[sender], highest) + 1) - first_sum
        else:  # someone else in the room: only gaps are visible
            expected += last_sum - first_sum + tails
        expected += left_early
        new += got
        repeats += dup
    return {
        "senders": len(sent),
        "sent": sum(sent.values()),
        "expected": expected,
        "received": new + repeats,
        "lost": expected - new,
        "duplicated": repeats,
    }
