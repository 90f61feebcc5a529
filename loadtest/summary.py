"""The end of a run: the delivery verdicts as Locust failures, a summary in the log and in JSON."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import gevent
import locust.stats
from locust.env import Environment

from loadtest.client import REQUEST_TYPE, DeliveryProblem
from loadtest.ledger import check_deliveries, lag_percentiles, latency_over_time, merged_latency
from loadtest.options import chat_addresses, connection_settings
from loadtest.render import summary_lines
from loadtest.server_stats import fetch_server_stats, server_cross_check

log = logging.getLogger("chat_user")

FAILURE_EVENTS_CAP = 100_000  # lost/duplicated deliveries fired one event each, up to this many
CPU_BOUND_AVG_PCT = 80.0  # a load process busier than this on average was (close to) the limit
CPU_BOUND_PEAK_PCT = 90.0  # Locust's own warning threshold
CPU_JUDGE_MIN_S = 5.0  # shorter runs are mostly start-up: no CPU verdict
CPU_STARVED_WAIT_PCT = 10.0  # ready to run but waiting for a core this often: the machine is busy
# A cluster node's totals include the other nodes' counters as of their last heartbeat (about
# 1.5 s old at most, docs/CLUSTER.md): the end-of-run /stats visit waits that long first.
CLUSTER_TOTALS_AGE_S = 2.0


def finish_run(
    environment: Environment,
    options: Any,
    reports: list[dict[str, Any]],
    missing: int,
    server_start: dict[str, float] | None,
    setup_error: str | None = None,
) -> None:
    """Merge the reports, give the verdicts as Locust requests, log and write the summary."""
    check = check_deliveries(reports)
    server_end = None
    with contextlib.suppress(ValueError):  # no usable --host: said once at the start
        addresses = chat_addresses(options, environment.host)
        if len(set(addresses)) > 1:
            gevent.sleep(CLUSTER_TOTALS_AGE_S)
        server_end = fetch_server_stats(addresses[0], *connection_settings(options))
    totals = {
        key: sum(r[key] for r in reports)
        for key in ("users", "connects", "connect_failures", "errors", "disconnects", "untimed")
    }
    problems = run_problems(check, totals, missing, setup_error)
    runner = environment.runner
    summary: dict[str, Any] = {
        "host": environment.host,
        "hosts": (getattr(options, "chat_hosts", "") or environment.host or "").split(","),
        "users_per_host": users_per_host(reports),
        "room_users": options.chat_room_users or getattr(runner, "target_user_count", 0),
        "room_rate_per_s": options.chat_room_rate,
        "message_bytes": options.chat_message_bytes,
        "clock": options.chat_clock,
        "latency_to": options.chat_latency_to,
        "deliveries": check,
        "verdict": "FAIL" if problems else "PASS",
        "problems": problems,
        "delivery_ok": check["lost"] == 0 and check["duplicated"] == 0 and missing == 0,
        "workers_missing": missing,
        "drain_s": round(max((r["drain_s"] for r in reports), default=0.0), 3),
        "drain_quiet": all(r["quiet"] for r in reports),
        **totals,
        "foreign_lines": sum(r["foreign_lines"] for r in reports),
        "latency": merged_latency(reports),
        "server": server_cross_check(server_start, server_end, check),
        **locust_use(reports, runner),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
    }
    _fire_verdicts(environment, check, summary)
    for line in summary_lines(summary, "chat summary"):
        (log.warning if line.warning else log.info)("%s", line.text)
    write_files(options, summary, reports)


def write_files(options: Any, summary: dict[str, Any], reports: list[dict[str, Any]]) -> None:
    """The summary JSON, and with --csv the latency series beside Locust's CSVs."""
    if options.chat_summary:  # first: a run that is quitting may not outlive the sleep below
        path = Path(options.chat_summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")
    if getattr(options, "csv_prefix", None):
        write_over_time_csv(Path(f"{options.csv_prefix}_latency_over_time.csv"), reports)
        # Locust writes its CSV once a second and not again at exit (locust#1806): let it run
        # once more, so the file holds the drain's deliveries and the delivery-check row.
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)


OVER_TIME_COLUMNS = ("timestamp", "count", "p50", "p99", "max")


def write_over_time_csv(path: Path, reports: list[dict[str, Any]]) -> None:
    """Corrected delivery latency per second (Unix time; ms), beside Locust's own CSVs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Timestamp", "Deliveries", "p50 ms", "p99 ms", "max ms"])
        for row in latency_over_time(reports):
            writer.writerow(["" if row[k] is None else row[k] for k in OVER_TIME_COLUMNS])


def locust_use(reports: list[dict[str, Any]], runner: Any) -> dict[str, Any]:
    """Each Locust process's CPU use and read lag, and whether Locust itself was the limit."""
    locust_warned = bool(
        getattr(runner, "cpu_warning_emitted", False)
        or getattr(runner, "worker_cpu_warning_emitted", False)
    )
    keys: tuple[str, ...] = ("node", "pid", "machine", "users", "wall_s")
    keys += ("cpu_avg_pct", "cpu_peak_pct", "cpu_wait_pct")
    processes = [
        {**{k: r[k] for k in keys}, "read_lag_ms": lag_percentiles(r["read_lag"])}
        | {"users_per_host": r.get("users_per_host", [])}
        for r in reports
    ]
    judged = [p for p in processes if p["wall_s"] >= CPU_JUDGE_MIN_S]  # start-up dominates less
    return {
        "locust_processes": processes,
        "locust_read_lag_ms": lag_percentiles([pair for r in reports for pair in r["read_lag"]]),
        "locust_cpu_warning": locust_warned,
        "locust_cpu_bound": locust_warned
        or any(
            p["cpu_avg_pct"] >= CPU_BOUND_AVG_PCT or p["cpu_peak_pct"] >= CPU_BOUND_PEAK_PCT
            for p in judged
        ),
        "locust_cpu_starved": any((p["cpu_wait_pct"] or 0) >= CPU_STARVED_WAIT_PCT for p in judged),
    }


def run_problems(
    check: dict, totals: dict[str, int], missing: int, setup_error: str | None
) -> list[str]:
    """Why the run fails, in words; empty when it passes. A run that measured nothing fails."""
    problems = [setup_error] if setup_error else []
    if totals["users"] == 0:
        problems.append("no user joined")
    elif check["expected"] == 0:
        problems.append(
            f"no delivery was expected ({check['sent']} messages sent): nothing was measured"
        )
    if totals["connect_failures"]:
        problems.append(f"{totals['connect_failures']} connect failure(s)")
    if totals["errors"]:
        problems.append(f"{totals['errors']} error line(s) from the server")
    if totals["disconnects"]:
        problems.append(f"{totals['disconnects']} unexpected disconnect(s)")
    if check["lost"]:
        problems.append(f"{check['lost']} of {check['expected']} deliveries lost")
    if check["duplicated"]:
        problems.append(f"{check['duplicated']} deliveries duplicated")
    if missing:
        problems.append(f"{missing} worker(s) did not report")
    return problems


def _fire_verdicts(environment: Environment, check: dict, summary: dict) -> None:
    fire = environment.events.request.fire
    problems = [
        (check["lost"], "lost: sent, never received (end-of-run check)"),
        (check["duplicated"], "duplicated or out of order (end-of-run check)"),
    ]
    for count, reason in problems:
        for _ in range(min(max(count, 0), FAILURE_EVENTS_CAP)):
            fire(
                request_type=REQUEST_TYPE,
                name="deliver",
                response_time=None,
                response_length=0,
                exception=DeliveryProblem(reason),
                context={},
            )
    verdict = DeliveryProblem("; ".join(summary["problems"])) if summary["problems"] else None
    fire(
        request_type=REQUEST_TYPE,
        name="delivery-check",
        response_time=summary["drain_s"] * 1000,
        response_length=0,
        exception=verdict,
        context={},
    )


def users_per_host(reports: list[dict[str, Any]]) -> list[int]:
    """Users that joined each host (in --chat-hosts order), all processes together."""
    counts: list[int] = []
    for report in reports:
        for index, users in enumerate(report.get("users_per_host", [])):
            counts.extend([0] * (index + 1 - len(counts)))
            counts[index] += users
    return counts
