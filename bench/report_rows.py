"""The rows bench.report works on: a pytest-benchmark JSON read into flat rows, and their cells.

One row per benchmark (its extra_info plus the timed median), the servers in report order, and
the formatting every table and target shares: numbers, ratios, the delivery cell and the notes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

SERVER_ORDER = ("threaded", "inline", "asyncio", "redis", "ngircd")
SERVER_LABELS = {
    "threaded": "threaded (chat.server, queued delivery)",
    "inline": "inline (chat.server --delivery inline, the original design)",
    "asyncio": "asyncio (bench.asyncio_server, the plain peer)",
    "redis": "redis (a real redis-server, pub/sub: the room is one channel)",
    "ngircd": "ngircd (the ngIRCd IRC daemon: the room is #room, relaxed flood protection)",
}
BASELINE = "asyncio"
NOISY_OTHER_LOAD = 0.25

Rows = list[dict]


def load(path: Path) -> tuple[dict, Rows]:
    """Machine info and one flat row per benchmark (extra_info plus the timed median)."""
    data = json.loads(path.read_text())
    return data.get("machine_info", {}), rows_of(data)


def rows_of(data: dict) -> Rows:
    """One flat row per benchmark of a pytest-benchmark JSON document (or the same dicts)."""
    rows = []
    for bench in data.get("benchmarks", []):
        row = dict(bench.get("extra_info", {}))
        if "case" not in row:
            continue
        row["name"] = bench["name"]
        row["median_s"] = bench["stats"]["median"]
        row["rounds"] = bench["stats"]["rounds"]
        rows.append(row)
    return rows


def by_case(rows: Rows, case: str, **match) -> Rows:
    return [r for r in rows if r["case"] == case and all(r.get(k) == v for k, v in match.items())]


def servers_in(rows: Rows) -> list[str]:
    present = {r["server"] for r in rows}
    return [s for s in SERVER_ORDER if s in present]


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 1000):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def ratio(value, base) -> str:
    if not value or not base:
        return "–"
    return f"{value / base:.3g}x"


def delivery_cell(row: dict) -> str:
    bad = {k: row.get(k, 0) for k in ("lost", "duplicates", "out_of_order", "unexpected")}
    if row.get("timed_out") or any(bad.values()):
        text = ", ".join(f"{k}={v:,}" for k, v in bad.items() if v)
        text += " timed out" if row.get("timed_out") else ""
        expected = row.get("expected_failure") or known_expected_failure(row)
        if expected:
            return f"expected failure ({expected}): {text.strip()}"
        return f"**FAILED** {text}"
    return "ok"


def known_expected_failure(row: dict) -> str:
    """The strict xfail of runs made before rows said so: inline blocked by a stalled reader."""
    only_lost = not any(row.get(k) for k in ("duplicates", "out_of_order", "unexpected"))
    blocked = row.get("timed_out") and row.get("lost") and only_lost
    if (
        row.get("case") == "stall"
        and row.get("server") == "inline"
        and row.get("stalled")
        and blocked
    ):
        return "the original inline design: one stalled reader blocks the senders"
    return ""


def flags(row: dict) -> str:
    notes = []
    if row.get("driver_saturated"):
        server = row.get("server_cpu_frac") or 0
        both = f", server at {server:.0%} of a core too" if server >= 0.85 else ""
        notes.append(f"driver saturated{both}")
    # Below half a second the 10 ms CPU ticks of /proc make the share meaningless.
    if (row.get("other_cpu_frac") or 0) > NOISY_OTHER_LOAD and row.get("wall_s", 0) >= 0.5:
        notes.append(f"other load {row['other_cpu_frac']:.0%}")
    return "; ".join(notes)
