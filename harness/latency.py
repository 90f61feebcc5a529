"""Latency summaries: HdrHistogram percentiles, percentiles per second, and fan-out spread.

Latencies are recorded into an HdrHistogram (the `hdrhistogram` package) in microseconds, three
significant figures, up to an hour; a histogram encodes to a short base64 string that another
process can add to its own (`merge_encoded`), which is how several swarms or Locust workers make
one distribution. Recording is off the clock: samples are first counted per microsecond value,
so a window of two million deliveries costs as many `record_value` calls as distinct values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
# The percentiles every latency summary reports, by the name of their key suffix.
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
INTERVAL_NS = 1_000_000_000


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def histogram_of(values_ns: Iterable[int]) -> HdrHistogram:
    """An HdrHistogram of nanosecond samples (recorded in microseconds, at least 1)."""
    return histogram_of_counts(Counter(to_us(v) for v in values_ns))


def to_us(value_ns: int) -> int:
    """A sample in the histogram's unit and range."""
    return max(LOWEST_US, min(HIGHEST_US, value_ns // 1000))


def histogram_of_counts(counts_us: dict[int, int]) -> HdrHistogram:
    """An HdrHistogram of samples already counted per microsecond value."""
    histogram = new_histogram()
    for value_us, count in counts_us.items():
        histogram.record_value(value_us, count)
    return histogram


def summary_ms(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50, p90, p99, p99.9 and max in milliseconds (None each when nothing was recorded)."""
    if histogram.get_total_count() == 0:
        return {name: None for name in [*PERCENTILES, "max"]}
    summary: dict[str, float | None] = {
        name: round(histogram.get_value_at_percentile(q) / 1e3, 4)
        for name, q in PERCENTILES.items()
    }
    summary["max"] = round(histogram.get_max_value() / 1e3, 4)
    return summary


def encode(histogram: HdrHistogram) -> str:
    """The histogram as HdrHistogram's compressed base64 form (what processes exchange)."""
    return histogram.encode().decode("ascii")


def merge_encoded(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every sample of the encoded ones."""
    histogram = new_histogram()
    for text in encoded:
        histogram.decode_and_add(text)
    return histogram


def per_interval(
    stamps_ns: list[int], values_ns: list[int], t0_ns: int
) -> list[dict[str, float | int | None]]:
    """p50, p99 and max per one-second interval from `t0_ns`, by when each sample was taken.

    Every interval up to the last sample has a row, empty ones with count 0, so a stall in which
    nothing arrived shows as a gap rather than disappearing.
    """
    buckets: dict[int, list[int]] = {}
    for stamp, value in zip(stamps_ns, values_ns, strict=True):
        buckets.setdefault(max(0, stamp - t0_ns) // INTERVAL_NS, []).append(value)
    rows: list[dict[str, float | int | None]] = []
    for second in range(max(buckets, default=-1) + 1):
        values = buckets.get(second, [])
        summary = summary_ms(histogram_of(values))
        row = {"t_s": second, "count": len(values)}
        rows.append(row | {key: summary[key] for key in ("p50", "p99", "max")})
    return rows


class SpreadTracker:
    """For each broadcast, its first and last arrival over all receivers (fan-out spread)."""

    __slots__ = ("first", "last")

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], int] = {}
        self.last: dict[tuple[str, int], int] = {}

    def arrived(self, key: tuple[str, int], stamp_ns: int) -> None:
        first = self.first.get(key)
        if first is None:
            self.first[key] = stamp_ns
            return
        self.first[key] = min(first, stamp_ns)
        self.last[key] = max(self.last.get(key, first), stamp_ns)

    def spreads_ns(self) -> list[int]:
        """Last minus first arrival, per broadcast that reached two receivers or more (with one,
        as in a room of two, there is no spread to speak of)."""
        first = self.first
        return [last - first[key] for key, last in self.last.items()]
