"""The PNG plots of the benchmark report: latency, throughput, rate sweep, capacity, over time,
and one node beside two on Redis when the run has the cluster cases.

Each plot draws the servers side by side against client count (or offered rate), marks a target
at the one point where it applies, and carries the note that each point is one run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.report_rows import Rows, by_case, servers_in  # noqa: E402
from bench.targets import (  # noqa: E402
    CAPACITY_CLIENTS,
    CLUSTER_PACED_P99_VS_SINGLE_MAX,
    JOIN_TARGET_S,
)

COLORS = {
    "threaded": "tab:blue",
    "inline": "tab:orange",
    "asyncio": "tab:green",
    "redis": "tab:red",
    "ngircd": "tab:purple",
}
ONE_RUN_NOTE = (
    "Each point is one run (one measured window, or 20 broadcasts for broadcast latency); "
    "on a shared 2-core machine latency tails move by up to 2x between runs."
)


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


# (case, match, title): the long cases whose latency per second the over-time plot shows.
OVER_TIME_PANELS = (
    ("server-stall", {}, "Server stopped 200 ms once (paced, 100 msg/s)"),
    ("sweep", {"offered_msgs_per_s": 8000}, "Rate sweep at 8,000 msg/s"),
    ("paced", {"clients": 500}, "Paced latency, 500 clients"),
)


# What `make loadtest` writes beside Locust's CSVs (same folder as the bench JSON by default).
LOADTEST_OVER_TIME_CSV = "locust_latency_over_time.csv"
SERIES_STYLES = (("max", ":"), ("p99", "-"), ("p50", "--"))


def over_time_plot(rows: Rows, out: Path) -> Path:
    """Corrected p50, p99 and max per one-second interval, per server, for the long cases, and
    for the load test when its series is in the same folder."""
    loadtest = read_loadtest_series(out / LOADTEST_OVER_TIME_CSV)
    panels = len(OVER_TIME_PANELS) + bool(loadtest)
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.8))
    if loadtest:
        ax = axes[-1]
        for key, style in SERIES_STYLES:
            points = [(t, row[key]) for t, row in loadtest if row.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker=".", color="tab:blue", label=f"load test {key}")
        ax.set(yscale="log", xlabel="seconds into the run", ylabel="latency (ms), corrected")
        ax.set_title("Load test (make loadtest, threaded server)")
        ax.grid(True, which="both", alpha=0.3)
        legend(ax)
    for ax, (case, match, title) in zip(axes, OVER_TIME_PANELS, strict=False):
        data = [r for r in by_case(rows, case, **match) if r.get("over_time")]
        for row in data:
            series = row["over_time"]
            color = COLORS.get(row["server"], "black")
            for key, style in SERIES_STYLES:
                points = [(p["t_s"] + 0.5, p[key]) for p in series if p.get(key)]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, marker=".", color=color, label=f"{row['server']} {key}")
        ax.set(yscale="log", xlabel="seconds into the window", ylabel="latency (ms), corrected")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        legend(ax)
    return save(fig, out / "over_time.png", wide=True)


def read_loadtest_series(path: Path) -> list[tuple[float, dict[str, float | None]]]:
    """(seconds from the first row, p50/p99/max) per row of the load test's CSV; [] if none."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        found = list(csv.DictReader(f))
    if not found:
        return []
    t0 = float(found[0]["Timestamp"])

    def number(text: str) -> float | None:
        return float(text) if text else None

    return [
        (float(r["Timestamp"]) - t0, {k: number(r[f"{k} ms"]) for k in ("p50", "p99", "max")})
        for r in found
    ]


def target_marker(ax, x: float, y: float, label: str | None) -> None:
    """A target applies at one point: a marker there, not a line across every x."""
    ax.plot([x], [y], marker="*", markersize=14, color="black", ls="none", label=label, zorder=5)
    ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(8, -4), fontsize=8)


def legend(ax, **options) -> None:
    """A legend when something is labelled (a partial run may have nothing to plot)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, **options)


def cluster_plot(rows: Rows, out: Path) -> Path:
    """One node beside two on Redis: paced latency, and each process's CPU per delivery."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    paced = sorted(by_case(rows, "cluster_paced"), key=lambda r: r.get("nodes", 0))
    labels = [f"{r.get('nodes')} node{'s' if r.get('nodes') != 1 else ''}" for r in paced]
    for offset, field, name in ((-0.2, "p50_ms", "p50"), (0.2, "p99_ms", "p99")):
        values = [r.get(field) or 0 for r in paced]
        left.bar([i + offset for i in range(len(paced))], values, width=0.4, label=name)
    left.set_xticks(range(len(paced)), labels)
    left.set(ylabel="latency (ms)", title="Paced 100 msg/s, corrected latency")
    if len(paced) == 2 and paced[0].get("p99_ms"):
        limit = paced[0]["p99_ms"] * CLUSTER_PACED_P99_VS_SINGLE_MAX
        left.axhline(limit, color="red", linestyle=":", label="target: 2-node p99 limit")
    legend(left)
    runs = [r for case in ("cluster_paced", "cluster_burst") for r in by_case(rows, case)]
    runs.sort(key=lambda r: (r["case"], r.get("nodes", 0)))
    for offset, process in ((-0.27, "node 1"), (0.0, "node 2"), (0.27, "redis")):
        values = [(r.get("process_cpu_s_per_million") or {}).get(process) or 0 for r in runs]
        right.bar([i + offset for i in range(len(runs))], values, width=0.27, label=process)
    names = [f"{r['case'].removeprefix('cluster_')}\n{r.get('nodes')} node(s)" for r in runs]
    right.set_xticks(range(len(runs)), names)
    right.set(
        yscale="log", ylabel="CPU s per million deliveries", title="CPU per delivery, by process"
    )
    legend(right)
    return save(fig, out / "cluster.png")


def write_plots(rows: Rows, out: Path) -> list[Path]:
    """The five PNG plots, written into `out`, and the cluster plot when there are its rows."""
    plots = [
        latency_plot(rows, out),
        throughput_plot(rows, out),
        sweep_plot(rows, out),
        capacity_plot(rows, out),
        over_time_plot(rows, out),
    ]
    if by_case(rows, "cluster_paced") or by_case(rows, "cluster_burst"):
        plots.append(cluster_plot(rows, out))
    return plots


def save(fig, path: Path, wide: bool = False) -> Path:
    fig.text(0.5, 0.005, ONE_RUN_NOTE, ha="center", va="bottom", fontsize=8, color="dimgrey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight" if wide else None)
    plt.close(fig)
    return path
