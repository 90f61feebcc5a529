"""The issue's targets judged for the default server: met, missed, or no data; and --check's lines.

`targets(rows)` is the Targets table of REPORT.md and what `python -m bench.report --check`
judges: the throughput, latency, capacity and stall targets here, then the hostile-client targets
of bench/report_hostile.py, the TLS ones of bench/report_tls.py and the cluster ones of
bench/report_cluster.py. A target whose rows are missing is no data, never met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.report_cluster import cluster_targets
from bench.report_hostile import hostile_targets
from bench.report_rows import BASELINE, Rows, by_case, delivery_cell, fmt
from bench.report_tls import tls_targets
from bench.targets import (
    CAPACITY_CLIENTS,
    JOIN_TARGET_S,
    KEPT_UP_FRACTION,
    REQUIRED_RATES_PER_S,
)

DEFAULT_SERVER = "threaded"
MET, MISSED, NO_DATA = "met", "missed", "no data"
# Above this the stalled run was faster than its own baseline: the pair is not comparable.
STALL_COMPARABLE_ABOVE = 1.25
DRIVER_MAX_FRACTION = 0.9
SERVER_STALL_MS = 200.0  # bench/test_server_stall.py stops the server this long, once


@dataclass(frozen=True)
class Target:
    """One target of the issue and how the default server did: met, missed, or no data."""

    name: str
    status: str
    detail: str
    numbers: str = ""

    @property
    def verdict(self) -> str:
        """The Markdown cell: anything but met stands out."""
        word = self.status if self.status == MET else f"**{self.status}**"
        return f"{word}: {self.detail}"


def one(rows: Rows, case: str, server: str, **match) -> dict | None:
    found = by_case(rows, case, server=server, **match)
    return found[0] if found else None


def targets(rows: Rows) -> list[Target]:
    """Every target of the issue, for the default server; a target without its rows is no data."""
    return [
        burst_target(rows),
        paced_target(rows),
        sweep_target(rows),
        kept_up_target(rows),
        capacity_target(rows),
        joined_target(rows),
        stall_target(rows),
        driver_target(rows),
        server_stall_target(rows),
        *hostile_targets(rows),
        *tls_targets(rows),
        *cluster_targets(rows),
    ]


def problems(found: list[Target]) -> list[str]:
    """One line per target missed or without data, for --check."""
    return [f"{t.status}: {t.name}: {t.detail}" for t in found if t.status != MET]


def _judged(name: str, ok: bool, detail: str, numbers: str) -> Target:
    return Target(name, MET if ok else MISSED, detail, numbers)


def _no_data(name: str, *missing: str) -> Target:
    return Target(name, NO_DATA, "no row for " + ", ".join(missing))


def _missing(*found: tuple[str, dict | None]) -> list[str]:
    """The labels of the rows that were not found."""
    return [label for label, row in found if not row]


def burst_target(rows: Rows) -> Target:
    name = "burst fan-out, 100 clients x 200 msgs: >= 8x asyncio, nothing lost"
    burst, peer = one(rows, "burst", DEFAULT_SERVER), one(rows, "burst", BASELINE)
    missing = _missing(("burst threaded", burst), ("burst asyncio", peer))
    if missing:
        return _no_data(name, *missing)
    times = burst["deliveries_per_s"] / max(peer["deliveries_per_s"], 1)
    ok = times >= 8 and delivery_cell(burst) == "ok"
    return _judged(
        name,
        ok,
        f"{times:.1f}x (needs 8x)",
        f"threaded {fmt(burst['deliveries_per_s'])}/s vs asyncio "
        f"{fmt(peer['deliveries_per_s'])}/s; lost {burst['lost']}",
    )


def paced_target(rows: Rows) -> Target:
    name = "paced, 500 clients, 100 msg/s: p99 < 8 ms, server CPU <= 2x asyncio"
    paced = one(rows, "paced", DEFAULT_SERVER, clients=500)
    peer = one(rows, "paced", BASELINE, clients=500)
    missing = _missing(
        ("paced threaded at 500 clients", paced), ("paced asyncio at 500 clients", peer)
    )
    if missing:
        return _no_data(name, *missing)
    cpu_x = paced["server_cpu_s"] / peer["server_cpu_s"] if peer["server_cpu_s"] else math.inf
    ok = (paced["p99_ms"] or math.inf) < 8 and cpu_x <= 2 and delivery_cell(paced) == "ok"
    return _judged(
        name,
        ok,
        f"p99 {fmt(paced['p99_ms'])} ms, CPU {cpu_x:.2f}x",
        f"asyncio p99 {fmt(peer['p99_ms'])} ms; CPU threaded {paced['server_cpu_s']} s "
        f"vs asyncio {peer['server_cpu_s']} s",
    )


def sweep_target(rows: Rows) -> Target:
    name = "rate sweep 8,000 msg/s (792k deliveries/s): all delivered, p99 < 5 ms"
    sweep = one(rows, "sweep", DEFAULT_SERVER, offered_msgs_per_s=8000)
    if not sweep:
        return _no_data(name, "sweep threaded at 8,000 msg/s")
    ok = sweep.get("kept_up") and (sweep["p99_ms"] or math.inf) < 5 and delivery_cell(sweep) == "ok"
    return _judged(
        name,
        ok,
        f"p99 {fmt(sweep['p99_ms'])} ms, {fmt(sweep['deliveries_per_s'])}/s",
        f"kept up: {fmt(sweep['kept_up'])}; delivery {delivery_cell(sweep)}",
    )


def kept_up_target(rows: Rows) -> Target:
    rates = ", ".join(fmt(r) for r in REQUIRED_RATES_PER_S)
    name = (
        f"rate sweep keeps up at {rates} msg/s ({KEPT_UP_FRACTION:.0%} of offered), all delivered"
    )
    found = {
        r: one(rows, "sweep", DEFAULT_SERVER, offered_msgs_per_s=r) for r in REQUIRED_RATES_PER_S
    }
    missing = _missing(*((f"sweep threaded at {fmt(r)} msg/s", row) for r, row in found.items()))
    if missing:
        return _no_data(name, *missing)
    behind = [r for r, row in found.items() if not row.get("kept_up") or delivery_cell(row) != "ok"]
    detail = "kept up at every rate" if not behind else "behind at " + ", ".join(map(fmt, behind))
    numbers = "; ".join(f"{fmt(r)}: {fmt(row['deliveries_per_s'])}/s" for r, row in found.items())
    return _judged(name, not behind, detail, numbers)


def capacity_target(rows: Rows) -> Target:
    name = f"10,000 clients joined within {JOIN_TARGET_S:g} s, one broadcast reaches all"
    cap = one(rows, "capacity", DEFAULT_SERVER, clients=10000)
    if not cap:
        return _no_data(name, "capacity threaded at 10,000 clients")
    ok = cap["connect_s"] <= JOIN_TARGET_S and delivery_cell(cap) == "ok"
    return _judged(
        name,
        ok,
        f"joined in {fmt(cap['connect_s'])} s",
        f"broadcast reached {fmt(cap['delivered'])} in {fmt(cap['broadcast_ms'])} ms",
    )


def joined_target(rows: Rows) -> Target:
    sizes = ", ".join(fmt(c) for c in CAPACITY_CLIENTS)
    name = f"capacity runs of {sizes} clients each joined within {JOIN_TARGET_S:g} s"
    found = {c: one(rows, "capacity", DEFAULT_SERVER, clients=c) for c in CAPACITY_CLIENTS}
    missing = _missing(
        *((f"capacity threaded at {fmt(c)} clients", row) for c, row in found.items())
    )
    if missing:
        return _no_data(name, *missing)
    late = [c for c, row in found.items() if not row.get("joined_within_target")]
    detail = "all within time" if not late else "late at " + ", ".join(map(fmt, late))
    numbers = "; ".join(f"{fmt(c)}: {fmt(row['connect_s'])} s" for c, row in found.items())
    return _judged(name, not late, detail, numbers)


def stall_target(rows: Rows) -> Target:
    name = "one stalled reader changes nothing for the others"
    calm = one(rows, "stall", DEFAULT_SERVER, stalled=0)
    stalled = one(rows, "stall", DEFAULT_SERVER, stalled=1)
    missing = _missing(("stall threaded, no stall", calm), ("stall threaded, one stalled", stalled))
    if missing:
        return _no_data(name, *missing)
    rel = stalled["deliveries_per_s"] / max(calm["deliveries_per_s"], 1)
    numbers = (
        f"p99 {fmt(calm['p99_ms'])} -> {fmt(stalled['p99_ms'])} ms; "
        f"delivery {delivery_cell(stalled)}"
    )
    if rel > STALL_COMPARABLE_ABOVE and delivery_cell(stalled) == "ok":
        # A stalled reader cannot make the others faster: the two windows measured different
        # things (docs/BENCHMARKS.md, "Why the stalled case once looked twice as fast").
        faults = [r.get("driver_page_faults") for r in (calm, stalled)]
        seen = (
            f"; driver page faults {fmt(faults[0])} vs {fmt(faults[1])}"
            if None not in faults
            else ""
        )
        return Target(
            name,
            NO_DATA,
            f"not comparable: {rel:.2f}x the no-stall rate, above {STALL_COMPARABLE_ABOVE}x",
            numbers + seen,
        )
    ok = rel >= 0.8 and delivery_cell(stalled) == "ok"
    return _judged(name, ok, f"{rel:.2f}x the no-stall rate (0.8x-1.25x: unchanged)", numbers)


def driver_target(rows: Rows) -> Target:
    name = "swarm driver below 0.9 of a core at the 8,000 msg/s sweep point, HdrHistogram on"
    sweep = one(rows, "sweep", DEFAULT_SERVER, offered_msgs_per_s=8000)
    if not sweep:
        return _no_data(name, "sweep threaded at 8,000 msg/s")
    used = sweep.get("driver_cpu_frac") or 0.0
    return _judged(name, used < DRIVER_MAX_FRACTION, f"driver at {used:.2f} of a core", "")


def server_stall_target(rows: Rows) -> Target:
    """The stall shows in the corrected tail and the max, and mostly not in the uncorrected."""
    name = "server stopped 200 ms: corrected p99 >= 100 ms, max >= 150 ms; uncorrected p99 < 100 ms"
    row = one(rows, "server-stall", DEFAULT_SERVER)
    if not row:
        return _no_data(name, "server-stall threaded")
    p99, peak = row.get("p99_ms") or 0.0, row.get("max_ms") or 0.0
    hidden = row.get("uncorrected_p99_ms") or 0.0
    half = SERVER_STALL_MS / 2
    ok = p99 >= half and peak >= 0.75 * SERVER_STALL_MS and hidden < half
    return _judged(
        name,
        ok and delivery_cell(row) == "ok",
        f"corrected p99 {fmt(p99)} ms, max {fmt(peak)} ms; uncorrected p99 {fmt(hidden)} ms",
        f"uncorrected max {fmt(row.get('uncorrected_max_ms'))} ms; delivery {delivery_cell(row)}",
    )
