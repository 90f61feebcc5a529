"""Turn a pytest-benchmark JSON into REPORT.md and PNG plots, servers side by side.

    python -m bench.report [results/latest/bench.json] [--out DIR] [--check]

The report lands next to the JSON (results/latest/ by default, git-ignored), except that a JSON in
results/reference/ is reported into results/latest/ unless --out names the folder: the committed
reference is rewritten only on purpose.

Tables per case (per client count or offered rate, per server, ratios against the asyncio peer),
a Targets section checked against the issue's numbers (met, missed, or no data when a target's
rows are missing), and plots of latency and throughput against client count. A hand-written
PROFILE.md in the output folder, when present, is linked. With --check the exit status is 1,
with one line per problem printed, when any target is missed or has no data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.report_hostile import hostile_targets  # noqa: E402
from bench.targets import (  # noqa: E402
    CAPACITY_CLIENTS,
    JOIN_TARGET_S,
    KEPT_UP_FRACTION,
    REQUIRED_RATES_PER_S,
)

SERVER_ORDER = ("threaded", "inline", "asyncio")
SERVER_LABELS = {
    "threaded": "threaded (chat.server, queued delivery)",
    "inline": "inline (chat.server --delivery inline, the original design)",
    "asyncio": "asyncio (bench.asyncio_server, the plain peer)",
}
COLORS = {"threaded": "tab:blue", "inline": "tab:orange", "asyncio": "tab:green"}
BASELINE = "asyncio"
NOISY_OTHER_LOAD = 0.25
RESULTS = Path(__file__).resolve().parent.parent / "results"
DEFAULT_JSON = RESULTS / "latest" / "bench.json"
REFERENCE_DIR = RESULTS / "reference"
ONE_RUN_NOTE = (
    "Each point is one run (one measured window, or 20 broadcasts for broadcast latency); "
    "on a shared 2-core machine latency tails move by up to 2x between runs."
)

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


# --- tables --------------------------------------------------------------------------------------

THROUGHPUT_COLUMNS = (
    ("deliveries/s", "deliveries_per_s"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("max ms", "max_ms"),
    ("server CPU s", "server_cpu_s"),
    ("server CPU s / M deliveries", "server_cpu_s_per_million"),
    ("driver CPU", "driver_cpu_frac"),
)


def case_table(rows: Rows, key: str, key_label: str, ratio_field: str, higher_better: bool) -> str:
    """One row per (key value, server); the ratio column compares with the asyncio peer."""
    head = [key_label, "server", *(c[0] for c in THROUGHPUT_COLUMNS), f"vs {BASELINE}"]
    lines = ["| " + " | ".join(head) + " | delivery | notes |", "|" + "---|" * (len(head) + 2)]
    for value in sorted({r[key] for r in rows}):
        group = {r["server"]: r for r in rows if r[key] == value}
        base = group.get(BASELINE, {}).get(ratio_field)
        for server in servers_in(list(group.values())):
            row = group[server]
            mine = row.get(ratio_field)
            rel = ratio(mine, base) if higher_better else ratio(base, mine)
            cells = [fmt(value), server, *(fmt(row.get(f)) for _, f in THROUGHPUT_COLUMNS), rel]
            lines.append("| " + " | ".join(cells) + f" | {delivery_cell(row)} | {flags(row)} |")
    return "\n".join(lines)


def capacity_table(rows: Rows) -> str:
    head = (
        "| clients | server | join s | within 10 s | RSS before MiB | RSS after MiB | KiB/client "
        "| threads | broadcast ms | p99 ms | delivery | notes |"
    )
    lines = [head, "|" + "---|" * 12]
    for value in sorted({r["clients"] for r in rows}):
        for row in sorted(
            (r for r in rows if r["clients"] == value),
            key=lambda r: SERVER_ORDER.index(r["server"]),
        ):
            cells = [
                fmt(value),
                row["server"],
                fmt(row.get("connect_s")),
                fmt(row.get("joined_within_target")),
                fmt(row.get("rss_before_mib")),
                fmt(row.get("rss_after_mib")),
                fmt(row.get("rss_per_client_kib")),
                fmt(row.get("server_threads")),
                fmt(row.get("broadcast_ms")),
                fmt(row.get("p99_ms")),
                delivery_cell(row),
                flags(row),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stall_table(rows: Rows) -> str:
    lines = [
        "| server | stalled reader | deliveries/s | p99 ms | server CPU s / M | vs no stall "
        "| delivery |",
        "|---|---|---|---|---|---|---|",
    ]
    for server in servers_in(rows):
        base = next((r for r in rows if r["server"] == server and not r["stalled"]), {})
        for row in sorted((r for r in rows if r["server"] == server), key=lambda r: r["stalled"]):
            rel = ratio(row.get("deliveries_per_s"), base.get("deliveries_per_s"))
            cells = [
                server,
                "yes" if row["stalled"] else "no",
                fmt(row.get("deliveries_per_s")),
                fmt(row.get("p99_ms")),
                fmt(row.get("server_cpu_s_per_million")),
                rel,
                delivery_cell(row),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- targets -------------------------------------------------------------------------------------


DEFAULT_SERVER = "threaded"
MET, MISSED, NO_DATA = "met", "missed", "no data"
# Above this the stalled run was faster than its own baseline: the pair is not comparable.
STALL_COMPARABLE_ABOVE = 1.25


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
        *hostile_targets(rows),
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


# --- plots ---------------------------------------------------------------------------------------


def plot_lines(ax, rows: Rows, x: str, y: str, style: str = "-", label_suffix: str = "") -> None:
    for server in servers_in(rows):
        points = sorted((r[x], r.get(y)) for r in rows if r["server"] == server)
        points = [(a, b) for a, b in points if b]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, style, marker="o", color=COLORS[server], label=server + label_suffix)


def latency_plot(rows: Rows, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, case, title in (
        (axes[0], "broadcast", "Broadcast latency (one message at a time)"),
        (axes[1], "paced", "Paced latency (one sender, 100 msg/s)"),
    ):
        data = by_case(rows, case)
        plot_lines(ax, data, "clients", "p99_ms", "-", " p99")
        plot_lines(ax, data, "clients", "p50_ms", "--", " p50")
        ax.set(xscale="log", yscale="log", xlabel="connected clients", ylabel="latency (ms)")
        if case == "paced":
            target_marker(ax, 500, 8, "target: p99 < 8 ms at 500 clients")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        legend(ax)
    return save(fig, out / "latency.png")


def throughput_plot(rows: Rows, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    data = by_case(rows, "fanout")
    plot_lines(axes[0], data, "clients", "deliveries_per_s")
    axes[0].set(xscale="log", yscale="log", xlabel="connected clients", ylabel="deliveries / s")
    axes[0].set_title("Fan-out throughput (10 senders, pipelined bursts)")
    plot_lines(axes[1], data, "clients", "server_cpu_s_per_million")
    axes[1].set(xscale="log", yscale="log", xlabel="connected clients")
    axes[1].set(ylabel="server CPU s per million deliveries")
    axes[1].set_title("Server CPU per million deliveries (lower is better)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        legend(ax)
    return save(fig, out / "throughput.png")


def sweep_plot(rows: Rows, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    data = by_case(rows, "sweep")
    offered = sorted({(r["offered_msgs_per_s"], r["offered_deliveries_per_s"]) for r in data})
    if offered:
        # Wide and light, underneath: the servers that keep up run exactly along it.
        xs, ys = zip(*offered, strict=True)
        axes[0].plot(xs, ys, "-", color="grey", lw=7, alpha=0.35, label="offered", zorder=1)
    plot_lines(axes[0], data, "offered_msgs_per_s", "deliveries_per_s")
    axes[0].set(xscale="log", yscale="log", xlabel="offered msg/s (100 clients, 10 senders)")
    axes[0].set(ylabel="delivered lines / s")
    axes[0].set_title("Rate sweep: delivered vs offered")
    plot_lines(axes[1], data, "offered_msgs_per_s", "p99_ms", "-", " p99")
    plot_lines(axes[1], data, "offered_msgs_per_s", "p50_ms", "--", " p50")
    target_marker(axes[1], 8000, 5, "target: p99 < 5 ms at 8,000 msg/s")
    axes[1].set(xscale="log", yscale="log", xlabel="offered msg/s", ylabel="latency (ms)")
    axes[1].set_title("Rate sweep: latency (the knee)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    legend(axes[0])
    # Beside the plot, not over it: the axis keeps the data's own range.
    legend(axes[1], loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return save(fig, out / "sweep.png", wide=True)


def capacity_plot(rows: Rows, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    data = by_case(rows, "capacity")
    plot_lines(axes[0], data, "clients", "connect_s")
    for clients in CAPACITY_CLIENTS:
        label = (
            f"target: joined within {JOIN_TARGET_S:g} s" if clients == CAPACITY_CLIENTS[0] else None
        )
        target_marker(axes[0], clients, JOIN_TARGET_S, label)
    axes[0].set(xscale="log", xlabel="clients", ylabel="seconds until all joined")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("Capacity: time to join")
    plot_lines(axes[1], data, "clients", "rss_per_client_kib")
    axes[1].set(xscale="log", xlabel="clients", ylabel="server RSS KiB per client")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("Capacity: server memory per client")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        legend(ax)
    return save(fig, out / "capacity.png")


def target_marker(ax, x: float, y: float, label: str | None) -> None:
    """A target applies at one point: a marker there, not a line across every x."""
    ax.plot([x], [y], marker="*", markersize=14, color="black", ls="none", label=label, zorder=5)
    ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(8, -4), fontsize=8)


def legend(ax, **options) -> None:
    """A legend when something is labelled (a partial run may have nothing to plot)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, **options)


def write_plots(rows: Rows, out: Path) -> list[Path]:
    """The four PNG plots, written into `out`."""
    return [
        latency_plot(rows, out),
        throughput_plot(rows, out),
        sweep_plot(rows, out),
        capacity_plot(rows, out),
    ]


def save(fig, path: Path, wide: bool = False) -> Path:
    fig.text(0.5, 0.005, ONE_RUN_NOTE, ha="center", va="bottom", fontsize=8, color="dimgrey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight" if wide else None)
    plt.close(fig)
    return path


# --- the document --------------------------------------------------------------------------------


def machine_section(machine: dict) -> str:
    return "\n".join(
        [
            f"- CPU: {machine.get('cpu_model') or machine.get('cpu', {}).get('brand_raw', '?')}, "
            f"{machine.get('cores', '?')} cores, {machine.get('mem_total_gib', '?')} GiB",
            f"- Python {machine.get('python') or machine.get('python_version', '?')} "
            f"({machine.get('python_implementation', '')}), {machine.get('system', '')} "
            f"{machine.get('release', '')}",
            f"- date (UTC): {machine.get('date_utc', '?')}; load average at start: "
            f"{' '.join(machine.get('loadavg_at_start', []))}",
        ]
    )


def render(machine: dict, rows: Rows, plots: list[Path], source: Path, out: Path) -> str:
    parts = [
        "# Benchmark report",
        "",
        f"Generated by `python -m bench.report {source}` from a `pytest bench/ --benchmark-only` "
        "run. How to run and what each case measures: docs/BENCHMARKS.md.",
        "",
        "## Machine",
        "",
        machine_section(machine),
        "",
        "Servers: " + "; ".join(f"`{k}` = {v}" for k, v in SERVER_LABELS.items()) + ".",
        "",
        "Every case checks every delivery (nothing lost, nothing duplicated, each sender's order). "
        "`driver CPU` is the swarm's own CPU over the wall time; a row is flagged "
        "`driver saturated` above 0.9 and `other load` when other processes kept more than "
        f"{NOISY_OTHER_LOAD:.0%} of the machine busy during the window. The default server "
        "moves a burst in tens of milliseconds while the swarm runs at about 0.8 of a core: read "
        "its multi-million burst rates as lower bounds, and compare them through the ratios. "
        "On this shared 2-core machine latency tails move by 2x from run to run.",
        "",
        "## Targets (default server)",
        "",
        "| target | verdict | numbers |",
        "|---|---|---|",
        *(f"| {t.name} | {t.verdict} | {t.numbers or '–'} |" for t in targets(rows)),
        "",
    ]
    parts += headlines(rows)
    if (out / "PROFILE.md").exists():
        parts += ["Profile findings for the missed targets: [PROFILE.md](PROFILE.md).", ""]
    parts += case_sections(rows)
    parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts) + "\n"


HEADLINES = (
    ("broadcast", "clients", 1000, "p99_ms", "broadcast p99 ms, 1,000 clients"),
    ("paced", "clients", 500, "p99_ms", "paced p99 ms, 500 clients"),
    ("paced", "clients", 500, "server_cpu_s", "paced server CPU s, 500 clients"),
    ("fanout", "clients", 1000, "deliveries_per_s", "fan-out deliveries/s, 1,000 clients"),
    ("burst", "clients", 100, "deliveries_per_s", "burst deliveries/s, 100 clients"),
    ("burst", "clients", 100, "server_cpu_s_per_million", "burst server CPU s / M deliveries"),
    ("sweep", "offered_msgs_per_s", 8000, "deliveries_per_s", "sweep 8k msg/s: delivered/s"),
    ("sweep", "offered_msgs_per_s", 8000, "p99_ms", "sweep 8k msg/s: p99 ms"),
    ("capacity", "clients", 10000, "connect_s", "10,000 clients: join s"),
    ("capacity", "clients", 10000, "rss_per_client_kib", "10,000 clients: KiB/client"),
)


def headlines(rows: Rows) -> list[str]:
    """One line per headline number, the three servers side by side."""
    lines = [
        "## Headlines",
        "",
        "| measure | " + " | ".join(SERVER_ORDER) + f" | threaded / {BASELINE} |",
        "|---|" + "---|" * (len(SERVER_ORDER) + 1),
    ]
    for case, key, value, field_name, label in HEADLINES:
        got = {r["server"]: r.get(field_name) for r in by_case(rows, case) if r.get(key) == value}
        if not got:
            continue
        cells = [fmt(got.get(server)) for server in SERVER_ORDER]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {ratio(got.get('threaded'), got.get(BASELINE))} |"
        )
    return [*lines, ""]


def console_summary(machine: dict, rows: Rows) -> list[str]:
    """The headline numbers and the targets in plain text, for the end of a benchmark run."""
    table = [["measure", *SERVER_ORDER, f"threaded/{BASELINE}"]]
    for case, key, value, field_name, label in HEADLINES:
        got = {r["server"]: r.get(field_name) for r in by_case(rows, case) if r.get(key) == value}
        if got:
            cells = [fmt(got.get(server)) for server in SERVER_ORDER]
            table.append([label, *cells, ratio(got.get("threaded"), got.get(BASELINE))])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = (
        [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in table
        ]
        if len(table) > 1
        else ["(no headline case in this run)"]
    )
    lines.append("")
    for target in targets(rows):
        word = target.status if target.status == MET else target.status.upper()
        lines.append(f"{word:>8}  {target.name}: {target.detail}")
    busy = [r for r in rows if flags(r).count("other load")]
    load = " ".join(machine.get("loadavg_at_start", []))
    if busy:
        lines.append(
            f"{len(busy)} of {len(rows)} cases ran while other processes kept more than "
            f"{NOISY_OTHER_LOAD:.0%} of the machine busy (load average {load}): "
            "re-run before trusting them"
        )
    return lines


def case_sections(rows: Rows) -> list[str]:
    sections = []
    specs = (
        ("broadcast", "Broadcast latency", "clients", "p99_ms", False),
        ("paced", "Paced latency (one sender, 100 msg/s, 3 s)", "clients", "p99_ms", False),
        (
            "fanout",
            "Fan-out throughput (10 senders, pipelined bursts)",
            "clients",
            "deliveries_per_s",
            True,
        ),
        (
            "burst",
            "Burst: every client sends 200 messages at once",
            "clients",
            "deliveries_per_s",
            True,
        ),
        (
            "sweep",
            "Rate sweep (100 clients, 10 senders)",
            "offered_msgs_per_s",
            "deliveries_per_s",
            True,
        ),
    )
    for case, title, key, ratio_field, higher in specs:
        data = by_case(rows, case)
        if not data:
            continue
        what = "deliveries/s" if higher else "p99 (asyncio p99 / this p99)"
        sections += [f"## {title}", "", f"Ratio column: {what} against the asyncio peer.", ""]
        sections += [case_table(data, key, key.replace("_", " "), ratio_field, higher), ""]
    stall = by_case(rows, "stall")
    if stall:
        sections += [
            "## One stalled reader while 10 senders burst 1 kB lines",
            "",
            stall_table(stall),
            "",
        ]
    capacity = by_case(rows, "capacity")
    if capacity:
        sections += [
            "## Capacity: idle clients joined, then one broadcast",
            "",
            capacity_table(capacity),
            "",
        ]
    return sections


def default_out(json_path: Path) -> Path:
    """Next to the JSON, but never into the committed reference unless --out says so."""
    folder = json_path.resolve().parent
    return DEFAULT_JSON.parent if folder == REFERENCE_DIR.resolve() else json_path.parent


def main(argv: list[str] | None = None) -> int:
    """Write REPORT.md and the plots next to the JSON (or into --out); --check judges targets."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument(
        "json", type=Path, nargs="?", default=DEFAULT_JSON, help=f"(default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for REPORT.md and the plots (default: the JSON's folder, results/latest "
        "for a JSON in results/reference)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1, with one line per problem, when a target is missed or has no data",
    )
    args = parser.parse_args(argv)
    out = args.out or default_out(args.json)
    out.mkdir(parents=True, exist_ok=True)
    machine, rows = load(args.json)
    if not rows:
        print(f"{args.json}: no benchmark results with extra_info", file=sys.stderr)
        return 1
    plots = write_plots(rows, out)
    report = out / "REPORT.md"
    report.write_text(render(machine, rows, plots, args.json, out))
    print(f"wrote {report} and {len(plots)} plots", file=sys.stderr)
    if not args.check:
        return 0
    found = targets(rows)
    for line in problems(found):
        print(line)
    return 1 if problems(found) else 0


if __name__ == "__main__":
    sys.exit(main())
