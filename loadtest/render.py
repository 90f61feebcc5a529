"""The end-of-run summary as text: one renderer for Locust's log and `make loadtest`'s report.

No Locust import, so `python -m loadtest.run` renders in a plain process what Locust logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROWS = ("connect", "send", "deliver", "error", "disconnect", "delivery-check")


@dataclass(frozen=True, slots=True)
class SummaryLine:
    """One line of the summary; a warning is worth a reader's attention (logged as such)."""

    text: str
    warning: bool = False


def verdict(summary: dict[str, Any]) -> str:
    """`OK`, or `FAIL: ` and every reason."""
    problems = summary["problems"]
    return "FAIL: " + "; ".join(problems) if problems else "OK"


def summary_lines(
    summary: dict[str, Any], label: str, server_process: dict[str, Any] | None = None
) -> list[SummaryLine]:
    """The summary (as `summary.finish_run` builds it) in a dozen lines; the first one starts
    with `label` and ends in the verdict. `server_process` is the server's CPU and memory."""
    d = summary["deliveries"]
    lines = [
        SummaryLine(
            f"{label}: {summary['users']} users joined ({summary['connect_failures']} connect "
            f"failures), {d['sent']} messages from {d['senders']} senders, {d['expected']} owed, "
            f"{d['received']} received, {d['lost']} lost, {d['duplicated']} duplicated -> "
            f"{verdict(summary)}"
        )
    ]
    if not summary["drain_quiet"]:
        lines.append(
            SummaryLine(
                "the drain ended before the room went quiet: late messages counted as lost",
                warning=True,
            )
        )
    if summary["server"]:
        lines.append(SummaryLine(_server_stats_text(summary["server"])))
    if server_process:
        lines.append(SummaryLine(_server_process_text(server_process)))
    lines.extend(SummaryLine(_locust_process_text(p)) for p in summary["locust_processes"])
    lag = summary["locust_read_lag_ms"]
    if lag:
        lines.append(
            SummaryLine(
                f"locust read lag (arrival -> read): p50 {lag['p50']:.1f} ms, p99 "
                f"{lag['p99']:.1f} ms, max {lag['max']:.1f} ms over {lag['reads']} reads; "
                f"`deliver` ends at {summary['latency_to']}"
            )
        )
    latency = summary.get("latency")
    if latency and latency["timed"]:
        lines.append(SummaryLine(_latency_text(latency)))
    lines.extend(_locust_cpu_lines(summary))
    return lines


def _latency_text(latency: dict[str, Any]) -> str:
    """Corrected and uncorrected percentiles of the timed deliveries, as wrk2 prints both."""

    def row(numbers: dict[str, float | None]) -> str:
        return " ".join(
            f"{name} {numbers[key]:.1f}" if numbers[key] is not None else f"{name} -"
            for name, key in (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))
        )

    return (
        f"delivery latency ms over {latency['timed']} timed deliveries, from the schedule "
        f"(corrected): {row(latency['corrected_ms'])}; from the send (uncorrected): "
        f"{row(latency['uncorrected_ms'])}"
    )


def _server_stats_text(server: dict[str, Any]) -> str:
    delta = server["delta"]
    # A cluster's node: the cluster's totals (a heartbeat or so old), then its own clients.
    cluster = server.get("scope") == "cluster"
    scope, label = ("cluster_", "cluster /stats (first host)") if cluster else ("", "server /stats")
    return (
        f"{label}: messages_in +{delta.get(f'{scope}messages_in', 0):.0f} "
        f"({server['messages_in_minus_sent']:+.0f} vs sent), deliveries_out "
        f"+{delta.get(f'{scope}deliveries_out', 0):.0f} "
        f"({server['deliveries_out_minus_received']:+.0f} vs received), slow_consumers "
        f"+{delta.get('slow_consumers', 0):.0f}, clients at the end "
        f"{server['end'].get(f'{scope}clients', 0):.0f}"
    )


def process_lines(uses: dict[str, dict[str, Any] | None]) -> list[str]:
    """A cluster's processes (its nodes and Redis), each as the one server's line, by label."""
    return [_server_process_text(use, label) for label, use in uses.items() if use]


def _server_process_text(use: dict[str, Any], label: str = "server") -> str:
    return (
        f"{label} process: CPU {use['cpu_avg_pct']:.0f}% average, {use['cpu_peak_1s_pct']:.0f}% "
        f"busiest second; up to {use['threads_peak']} threads, {use['rss_peak_mb']:.0f} MB RSS"
    )


def _locust_process_text(p: dict[str, Any]) -> str:
    waited = "?" if p["cpu_wait_pct"] is None else f"{p['cpu_wait_pct']:.0f}%"
    return (
        f"locust {p['node']} (pid {p['pid']}, {p['users']} users): CPU {p['cpu_avg_pct']:.0f}% "
        f"average, {p['cpu_peak_pct']:.0f}% peak, waited for a core {waited} of the time"
    )


def _locust_cpu_lines(summary: dict[str, Any]) -> list[SummaryLine]:
    if summary["locust_cpu_bound"]:
        lines = [
            SummaryLine(
                "Locust's CPU was (near) the limit: latencies include its own queueing. Use "
                "--processes, more workers, or --chat-deliver-sample",
                warning=True,
            )
        ]
    else:
        lines = [SummaryLine("Locust's CPU was not the limit")]
    if summary["locust_cpu_starved"]:
        load = ", ".join(f"{x:.1f}" for x in summary["load_average"] or [])
        lines.append(
            SummaryLine(
                f"the machine was busy (load average {load} on {summary['cpu_count']} cores): "
                "Locust often waited for a core, and latencies include that wait",
                warning=True,
            )
        )
    return lines


def rows_table(rows: dict[str, dict[str, str]]) -> list[str]:
    """Locust's `_stats.csv` rows of the test (by name) as a small table."""
    out = [f"{'row':15} {'requests':>9} {'failures':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"]
    for name in ROWS:
        row = rows.get(name)
        if row:
            out.append(
                f"{name:15} {row['Request Count']:>9} {row['Failure Count']:>9} {row['50%']:>7} "
                f"{row['99%']:>7} {float(row['Max Response Time']):>7.0f}"
            )
    return out
