"""The report's tables: one per case in Markdown, the headlines, and the same headlines as text.

The case tables put the servers side by side per client count (or offered rate) with a ratio
against the asyncio peer; `console_summary` is the plain-text headline table and target verdicts
that bench/conftest.py prints at the end of a benchmark run.
"""

from __future__ import annotations

from bench.report_rows import (
    BASELINE,
    NOISY_OTHER_LOAD,
    SERVER_ORDER,
    Rows,
    by_case,
    delivery_cell,
    flags,
    fmt,
    ratio,
    servers_in,
)
from bench.report_targets import MET, targets

THROUGHPUT_COLUMNS = (
    ("deliveries/s", "deliveries_per_s"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("p99.9 ms", "p999_ms"),
    ("max ms", "max_ms"),
    ("uncorrected p99 ms", "uncorrected_p99_ms"),
    ("uncorrected max ms", "uncorrected_max_ms"),
    ("spread p99 ms", "spread_p99_ms"),
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


LATENCY_NOTE = (
    "Latency columns are corrected for coordinated omission: measured from the time each probe "
    "was due by its sender's schedule. `uncorrected` columns measure from when it was actually "
    "sent, as wrk2 reports both; they differ when a sender could not keep its schedule. Bursts "
    "have no schedule (every probe is due when the burst is written), so there both are the "
    "same. `spread` is, per broadcast, the time from its first to its last receiver. "
    "Percentiles come from HdrHistogram (3 significant figures)."
)
SERVER_STALL_NOTE = (
    "The server is stopped (SIGSTOP) for 200 ms once while one sender keeps a 100 msg/s schedule "
    "but, like a wrk connection or a person waiting to see their line, sends the next probe only "
    "once the previous one arrived. The probes due during the stall go out late, all at once "
    "when the server resumes: from when they were sent (uncorrected) they look fast and the "
    "stall shows in one probe, the max; from when they were due (corrected) each carries its "
    "share, so the stall reaches p99 and the per-second plot (over_time.png) shows where."
)


def server_stall_table(rows: Rows) -> str:
    """Corrected and uncorrected percentiles side by side for the stalled-server case."""
    fields = ("p50", "p99", "p999", "max")
    head = ["server", "clients", "stopped s"]
    head += [f"{f} ms" for f in fields] + [f"uncorrected {f} ms" for f in fields]
    lines = [
        SERVER_STALL_NOTE,
        "",
        "| " + " | ".join(head) + " | delivery |",
        "|" + "---|" * (len(head) + 1),
    ]
    for row in sorted(rows, key=lambda r: (r["clients"], SERVER_ORDER.index(r["server"]))):
        cells = [row["server"], fmt(row["clients"]), fmt(row.get("stalled_s"))]
        cells += [fmt(row.get(f"{f}_ms")) for f in fields]
        cells += [fmt(row.get(f"uncorrected_{f}_ms")) for f in fields]
        lines.append("| " + " | ".join(cells) + f" | {delivery_cell(row)} |")
    return "\n".join(lines)


def spread_table(rows: Rows) -> str:
    """Per client count: how long a broadcast takes from its first to its last receiver."""
    lines = [
        "Per broadcast, from its first receiver to its last (one message at a time, and during "
        "the fan-out bursts); the driver reads its clients one after another, so a spread below "
        "its loop's pass over all sockets is not resolved.",
        "",
        "| clients | server | broadcast spread p50 ms | p99 ms | fan-out spread p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for clients in sorted({r["clients"] for r in rows}):
        for server in servers_in(rows):
            got = {r["case"]: r for r in rows if r["clients"] == clients and r["server"] == server}
            if not got:
                continue
            cells = [fmt(clients), server]
            for case in ("broadcast", "fanout"):
                row = got.get(case, {})
                cells += [fmt(row.get("spread_p50_ms")), fmt(row.get("spread_p99_ms"))]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# (case, section title, key column, ratio field, higher is better)
THROUGHPUT_CASES = (
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


def hotpath_table(rows: Rows) -> str:
    """bench/test_hotpath.py: QueuedDelivery alone, in one process, no swarm beside it."""
    lines = ["| outboxes | deliveries | CPU us per delivery |", "|---|---|---|"]
    for row in sorted(rows, key=lambda r: r["clients"]):
        cells = [row["clients"], row.get("deliveries"), row.get("server_cpu_s_per_million")]
        lines.append("| " + " | ".join(fmt(cell) for cell in cells) + " |")
    return "\n".join(lines)


OTHER_CASES = (
    ("hotpath", "Delivery hot path: single-line broadcasts, in one process", hotpath_table),
    ("server-stall", "Server stopped for 200 ms: corrected vs uncorrected", server_stall_table),
    ("stall", "One stalled reader while 10 senders burst 1 kB lines", stall_table),
    ("capacity", "Capacity: idle clients joined, then one broadcast", capacity_table),
)


def case_sections(rows: Rows) -> list[str]:
    """A titled table per case present in `rows`, throughput and latency cases first."""
    sections = [LATENCY_NOTE, ""]
    for case, title, key, ratio_field, higher in THROUGHPUT_CASES:
        data = by_case(rows, case)
        if not data:
            continue
        what = "deliveries/s" if higher else "p99 (asyncio p99 / this p99)"
        sections += [f"## {title}", "", f"Ratio column: {what} against the asyncio peer.", ""]
        sections += [case_table(data, key, key.replace("_", " "), ratio_field, higher), ""]
    for case, title, table in OTHER_CASES:
        data = by_case(rows, case)
        if data:
            sections += [f"## {title}", "", table(data), ""]
    spread = [r for r in rows if r["case"] in ("broadcast", "fanout")]
    if spread:
        sections += ["## Fan-out spread", "", spread_table(spread), ""]
    return sections


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


def headline_cells(rows: Rows) -> list[list[str]]:
    """Per headline present in `rows`: its label, one cell per server, threaded / the peer."""
    found = []
    for case, key, value, field_name, label in HEADLINES:
        got = {r["server"]: r.get(field_name) for r in by_case(rows, case) if r.get(key) == value}
        if got:
            cells = [fmt(got.get(server)) for server in SERVER_ORDER]
            found.append([label, *cells, ratio(got.get("threaded"), got.get(BASELINE))])
    return found


def headlines(rows: Rows) -> list[str]:
    """One line per headline number, the three servers side by side."""
    lines = [
        "## Headlines",
        "",
        "| measure | " + " | ".join(SERVER_ORDER) + f" | threaded / {BASELINE} |",
        "|---|" + "---|" * (len(SERVER_ORDER) + 1),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in headline_cells(rows)]
    return [*lines, ""]


def console_summary(machine: dict, rows: Rows) -> list[str]:
    """The headline numbers and the targets in plain text, for the end of a benchmark run."""
    found = headline_cells(rows)
    table = [["measure", *SERVER_ORDER, f"threaded/{BASELINE}"], *found]
    lines = aligned(table) if found else ["(no headline case in this run)"]
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


def aligned(table: list[list[str]]) -> list[str]:
    """Plain-text columns: the first left-aligned, the numbers right-aligned."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
