"""Run against run: `python -m bench.report --compare OLD.json NEW.json [--noise SAME.json ...]`.

Each case's headline numbers side by side with the ratio NEW / OLD, flagged where the change is
beyond that case's run-to-run noise. The noise is measured, per case and measure, as the largest
relative difference between OLD and each `--noise` run (runs of the same code as OLD), never
less than a floor per measure; without noise runs a fixed allowance per measure is used and the
report says so. A case missing from one side is listed, not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report_rows import Rows, fmt, load

# (row field, label, higher is better): what a change report compares per case.
MEASURES = (
    ("deliveries_per_s", "deliveries/s", True),
    ("p50_ms", "p50 ms", False),
    ("p99_ms", "p99 ms", False),
    ("max_ms", "max ms", False),
    ("server_cpu_s_per_million", "server CPU s / M", False),
)
# Relative noise assumed when no noise run measured it: tails move 2x between runs here.
ASSUMED_NOISE = {
    "deliveries_per_s": 0.25,
    "p50_ms": 0.5,
    "p99_ms": 1.0,
    "max_ms": 1.0,
    "server_cpu_s_per_million": 0.25,
}
# A few runs can agree by chance: measured noise is never taken as less than this.
MIN_NOISE = {
    "deliveries_per_s": 0.1,
    "p50_ms": 0.2,
    "p99_ms": 0.3,
    "max_ms": 0.3,
    "server_cpu_s_per_million": 0.1,
}
# Below these the numbers are timer and tick resolution, not a change.
FLOOR = {"p50_ms": 0.05, "p99_ms": 0.1, "max_ms": 0.2, "server_cpu_s_per_million": 0.02}
BETTER, WORSE, SAME = "better", "**worse**", "within noise"


@dataclass
class Change:
    """One case's measure in both runs, and whether it moved beyond the noise."""

    case: str
    measure: str
    old: float
    new: float
    noise: float
    measured: bool
    verdict: str

    @property
    def ratio(self) -> float:
        return self.new / self.old if self.old else float("inf")


def by_name(rows: Rows) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def relative(a: float, b: float) -> float:
    """|a - b| relative to the smaller of the two (0 when both are 0)."""
    low = min(abs(a), abs(b))
    return abs(a - b) / low if low else (0.0 if a == b else float("inf"))


def noise_of(name: str, field: str, old: dict, noise_runs: list[dict[str, dict]]) -> float | None:
    """Largest relative difference between OLD and the noise runs for this case and measure."""
    values = [run[name].get(field) for run in noise_runs if name in run]
    base = old.get(field)
    found = [relative(base, v) for v in values if v is not None and base is not None]
    return max(found) if found else None


def judge(field: str, higher_better: bool, old: float, new: float, noise: float) -> str:
    if abs(new - old) <= FLOOR.get(field, 0.0) or relative(old, new) <= noise:
        return SAME
    return BETTER if (new > old) == higher_better else WORSE


def changes(old_rows: Rows, new_rows: Rows, noise_rows: list[Rows]) -> list[Change]:
    """Every measure present in both runs, per case, judged against its noise."""
    old, new = by_name(old_rows), by_name(new_rows)
    noise_runs = [by_name(rows) for rows in noise_rows]
    found = []
    for name in sorted(old.keys() & new.keys()):
        for field, label, higher in MEASURES:
            a, b = old[name].get(field), new[name].get(field)
            if a is None or b is None:
                continue
            measured = noise_of(name, field, old[name], noise_runs)
            if measured is None:
                noise = ASSUMED_NOISE[field]
            else:
                noise = max(measured, MIN_NOISE[field])
            verdict = judge(field, higher, a, b, noise)
            found.append(Change(name, label, a, b, noise, measured is not None, verdict))
    return found


def compare_report(old_path: Path, new_path: Path, noise_paths: list[Path]) -> str:
    """The change report in Markdown: what moved beyond noise first, then everything else."""
    _, old_rows = load(old_path)
    _, new_rows = load(new_path)
    found = changes(old_rows, new_rows, [load(p)[1] for p in noise_paths])
    moved = [c for c in found if c.verdict != SAME]
    worse = sum(c.verdict == WORSE for c in moved)
    only = sorted(by_name(old_rows).keys() ^ by_name(new_rows).keys())
    noise_note = (
        f"Noise per case and measure: the largest difference between OLD and {len(noise_paths)} "
        "other run(s) of the same code (`--noise`), at least "
        + ", ".join(f"{f} ±{v:.0%}" for f, v in MIN_NOISE.items())
        + " (a few runs can agree by chance)."
        if noise_paths
        else "No `--noise` run given: the noise allowed is assumed per measure ("
        + ", ".join(f"{f} ±{v:.0%}" for f, v in ASSUMED_NOISE.items())
        + "); give runs of OLD's code with `--noise` to measure it."
    )
    lines = [
        "# Benchmark comparison",
        "",
        f"OLD: `{old_path}`  NEW: `{new_path}`",
        "",
        f"**{len(moved)} of {len(found)} measures moved beyond noise: "
        f"{len(moved) - worse} better, {worse} worse.** {noise_note}",
        "",
        "| case | measure | OLD | NEW | NEW / OLD | noise | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for change in moved + [c for c in found if c.verdict == SAME]:
        mark = "" if change.measured else " (assumed)"
        lines.append(
            f"| {change.case} | {change.measure} | {fmt(change.old)} | {fmt(change.new)} | "
            f"{change.ratio:.3g}x | ±{change.noise:.0%}{mark} | {change.verdict} |"
        )
    if only:
        lines += ["", "In one run only (not compared): " + ", ".join(f"`{n}`" for n in only)]
    return "\n".join(lines) + "\n"
