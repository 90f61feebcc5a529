"""The delivery check after a window: what each reader got from each sender, and how late.

Runs off the clock, over the chunks a reader kept: frames them with chat.protocol.LineDecoder,
parses chat lines and probes, and counts losses, duplicates, reordering and latencies into a
`Verdict`. Each timed delivery keeps its latency from the probe's send stamp (uncorrected), from
its intended time (corrected; the same for probes not paced), when it arrived, and the spread of
its broadcast over the receivers. `percentile_ms` summarises a list of latencies.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import dataclass, field

from bench.swarm_client import RECV_BYTES, Client
from chat.probe import parse_probe_times
from chat.protocol import LINE_TOO_LONG, LineDecoder
from harness.latency import SpreadTracker


@dataclass
class Verdict:
    """Delivery check over a whole window: counts and per-delivery latencies (ns)."""

    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    latencies_ns: list[int] = field(default_factory=list)  # from the send (uncorrected)
    corrected_ns: list[int] = field(default_factory=list)  # from the intended send time
    received_ns: list[int] = field(default_factory=list)  # when each of those arrived
    spread: SpreadTracker = field(default_factory=SpreadTracker)

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicates == self.out_of_order == self.unexpected == 0

    def problems(self) -> str:
        return (
            f"expected={self.expected} delivered={self.delivered} lost={self.lost} "
            f"duplicates={self.duplicates} out_of_order={self.out_of_order} "
            f"unexpected={self.unexpected}"
        )


def verify_reader(
    client: Client,
    senders_sent: dict[str, tuple[int, int]],
    verdict: Verdict,
    timed: set[str] | None = None,
    ignored: Collection[str] = (),
) -> None:
    """Add one reader's window to `verdict`; `senders_sent` maps name to (index, lines sent;
    index -1 for a sender outside the reader's swarm).

    Latencies are kept for senders in `timed` only (None: every sender); lines of the senders
    in `ignored` are skipped.
    """
    decoder = LineDecoder(max_line_bytes=RECV_BYTES)
    wire = client.wire
    own = client.name if wire.echoes else None
    separator = wire.separator
    seqs: dict[str, list[int]] = {
        name: [] for name, (index, _) in senders_sent.items() if index != client.index
    }
    latencies, corrected, received = verdict.latencies_ns, verdict.corrected_ns, verdict.received_ns
    arrived = verdict.spread.arrived
    senders: dict[bytes, str | None] = {}
    for stamp, chunk in client.chunks:
        for raw in decoder.feed(chunk.tobytes()):
            if raw is LINE_TOO_LONG:
                verdict.unexpected += 1
                continue
            head, sep, body = raw.partition(separator)
            name = senders.get(head, False) if sep else None
            if name is False:
                name = senders[head] = wire.chat_sender(raw)
            elif name is None and not sep:
                name = wire.chat_sender(raw)
            if name is None or name == own or name in ignored:
                continue
            probe = parse_probe_times(body.decode("utf-8", "replace"))
            if probe is None or name not in seqs:
                verdict.unexpected += 1
                continue
            seq, sent_ns, intended_ns = probe
            seqs[name].append(seq)
            if timed is None or name in timed:
                latencies.append(stamp - sent_ns)
                corrected.append(stamp - intended_ns)
                received.append(stamp)
                arrived((name, seq), stamp)
    for name, got in seqs.items():
        _check_sequence(got, senders_sent[name][1], verdict)


def _check_sequence(got: list[int], count: int, verdict: Verdict) -> None:
    """One reader's view of one sender, who sent seqs 0..count-1 in this order."""
    verdict.expected += count
    if got == list(range(count)):
        verdict.delivered += count
        return
    unique = set(got)
    valid = len(unique & set(range(count)))
    verdict.delivered += valid
    verdict.lost += count - valid
    verdict.duplicates += len(got) - len(unique)
    verdict.unexpected += len(unique) - valid
    verdict.out_of_order += sum(1 for a, b in itertools.pairwise(got) if b < a)


def percentile_ms(values_ns: list[int], q: float) -> float:
    """The q-th percentile (0..100) of nanosecond samples, in milliseconds; nan when empty."""
    if not values_ns:
        return float("nan")
    ordered = sorted(values_ns)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank] / 1e6
