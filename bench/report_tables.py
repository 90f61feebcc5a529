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
OTHER_CASES = (
    ("stall", "One stalled reader while 10 senders burst 1 kB lines", stall_table),
    ("capacity", "Capacity: idle clients joined, then one broadcast", capacity_table),
)


def case_sections(rows: Rows) -> list[str]:
    """A titled table per case present in `rows`, throughput and latency cases first."""
    sections = []
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
