"""One node beside two on Redis (bench/test_cluster*.py) for bench.report: what the bus costs,
what it buys, what the faults did, and the cluster targets.

Both rows of a pair come from the same run (the default chat server alone, and two of them
sharing the room over a local redis-server), so the ratios hold where absolute numbers move.
bench/report_targets.py calls `cluster_targets(rows)` from its `targets`; bench/report.py adds
`cluster_section(rows)`.
"""

from __future__ import annotations

from bench.report_rows import Rows, by_case, delivery_cell, fmt, ratio
from bench.targets import (
    CLUSTER_BACK_TARGET_S,
    CLUSTER_CLIENTS,
    CLUSTER_JOIN_TARGET_S,
    CLUSTER_NAME_FREE_TARGET_S,
    CLUSTER_PACED_P99_VS_SINGLE_MAX,
)

# (case, field, what it is): the side-by-side table's rows.
COMPARED = (
    ("cluster_paced", "p50_ms", "paced p50 ms"),
    ("cluster_paced", "p99_ms", "paced p99 ms"),
    ("cluster_paced", "uncorrected_p99_ms", "paced uncorrected p99 ms"),
    ("cluster_paced", "remote_p99_ms", "paced p99 ms, receivers on the other node"),
    ("cluster_paced", "server_cpu_s_per_million", "paced CPU s / M deliveries, all processes"),
    ("cluster_burst", "deliveries_per_s", "burst deliveries/s"),
    ("cluster_burst", "p99_ms", "burst p99 ms"),
    ("cluster_burst", "server_cpu_s_per_million", "burst CPU s / M deliveries, all processes"),
)
CPU_CASES = (("cluster_paced", "paced"), ("cluster_burst", "burst"))


def pair(rows: Rows, case: str, clients: int) -> tuple[dict | None, dict | None]:
    """(one node, two nodes) rows of `case` at `clients`."""
    one = by_case(rows, case, clients=clients, nodes=1)
    two = by_case(rows, case, clients=clients, nodes=2)
    return (one[0] if one else None, two[0] if two else None)


def _largest(rows: Rows, case: str) -> int | None:
    sizes = [r["clients"] for r in by_case(rows, case, nodes=2)]
    return max(sizes) if sizes else None


def cluster_section(rows: Rows) -> list[str]:
    """The cluster tables; nothing when the run had no cluster case."""
    if not any(r["case"].startswith("cluster_") for r in rows):
        return []
    lines = [
        "## Cluster: one node beside two on Redis (same run)",
        "",
        "The default chat server alone (no bus), and two of them sharing the room over a local "
        "redis-server, clients split evenly; ratio is 2 nodes / 1 node. CPU is every process of "
        "the room over the window (nodes and Redis), per million deliveries checked.",
        "",
        "| measure | clients | 1 node | 2 nodes | 2 / 1 | delivery |",
        "|---|---|---|---|---|---|",
    ]
    for case, field, label in COMPARED:
        for clients in sorted({r["clients"] for r in by_case(rows, case)}):
            one, two = pair(rows, case, clients)
            a, b = (one or {}).get(field), (two or {}).get(field)
            cells = (fmt(a), fmt(b), ratio(b, a), _delivery(one, two))
            lines.append(f"| {label} | {clients:,} | " + " | ".join(cells) + " |")
    lines += ["", *_cpu_table(rows), *_capacity_lines(rows), *_fault_lines(rows)]
    return lines


def _delivery(*found: dict | None) -> str:
    cells = {delivery_cell(r) for r in found if r}
    return "ok" if cells == {"ok"} else "; ".join(sorted(cells))


def _cpu_table(rows: Rows) -> list[str]:
    """CPU seconds per million deliveries of each process: the bus's cost on each node."""
    lines = []
    for case, label in CPU_CASES:
        for row in sorted(by_case(rows, case), key=lambda r: (r["clients"], r.get("nodes", 0))):
            per = row.get("process_cpu_s_per_million") or {}
            cells = "; ".join(f"{name} {fmt(value)}" for name, value in per.items())
            lines.append(f"| {label} | {row['clients']:,} | {row.get('nodes')} | {cells or '–'} |")
    if not lines:
        return []
    return [
        "CPU per process, seconds per million deliveries (what each node and Redis spent):",
        "",
        "| case | clients | nodes | CPU s / M deliveries |",
        "|---|---|---|---|",
        *lines,
        "",
    ]


def _capacity_lines(rows: Rows) -> list[str]:
    """What the bus buys: clients in one room."""
    found = sorted(by_case(rows, "cluster_capacity"), key=lambda r: r.get("nodes", 0))
    if not found:
        return []
    lines = [
        "Clients in one room (what the bus buys): one process holds about 10,000 (a thread "
        "each, and the open-files limit); each node adds as many. A swarm process per node:",
        "",
        "| nodes | clients | joined s (per node) | broadcast to all ms | node RSS MiB | delivery |",
        "|---|---|---|---|---|---|",
    ]
    for row in found:
        per_node = ", ".join(fmt(s) for s in row.get("connect_s_per_node", []))
        rss = ", ".join(fmt(m) for m in row.get("node_rss_mib", [])) or "–"
        lines.append(
            f"| {row.get('nodes')} | {row['clients']:,} | {fmt(row['connect_s'])} ({per_node}) | "
            f"{fmt(row.get('broadcast_ms'))} | {rss} | {delivery_cell(row)} |"
        )
    return [*lines, ""]


def _fault_lines(rows: Rows) -> list[str]:
    lines = []
    for row in by_case(rows, "cluster_redis_restart"):
        buffer = _buffer(row)
        lines.append(
            f"- **Redis killed and restarted** ({row['clients']} clients, "
            f"{fmt(row.get('rate_per_s'))} msg/s, {buffer}, down {fmt(row.get('outage_s'))} s): "
            "clients "
            f"told the bus is down after {_list(row.get('node_down_s'))} s and back after "
            f"{_list(row.get('node_back_s'))} s (per node, the last of its clients, from the "
            f"restart); lost {fmt(row.get('lost_total'))} deliveries, the counted-gap notices "
            f"said {fmt(row.get('counted_total'))}, {fmt(row.get('loss_mismatched'))} clients "
            f"where they differ; {fmt(row['delivered'])} of {fmt(row['expected'])} delivered."
        )
    for row in by_case(rows, "cluster_node_kill"):
        lines.append(
            f"- **A node SIGKILLed** ({row['clients']} clients, {fmt(row.get('rate_per_s'))} "
            f"msg/s): the other node's {fmt(row.get('survivors'))} clients got "
            f"{fmt(row['delivered'])} of {fmt(row['expected'])} of their own node's lines "
            f"({_own_cell(row)}); the dead node's name was taken again "
            f"{fmt(row.get('name_freed_s'))} s after the kill (lease {fmt(row.get('lease_s'))} s, "
            f"{fmt(row.get('name_tries'))} tries)."
        )
    return ["Faults under paced load (two nodes):", "", *lines, ""] if lines else []


def _list(values) -> str:
    return ", ".join(fmt(v) for v in values) if values else "–"


def _own_cell(row: dict) -> str:
    """The node-kill check: the survivors' own traffic (the window times out by design)."""
    return delivery_cell({**row, "timed_out": False})


def cluster_targets(rows: Rows) -> list:
    """The five cluster targets: paced p99, burst, 20,000 clients, Redis restart, node kill."""
    from bench import report_targets as report  # it imports this module

    return [
        _paced(report, rows),
        _burst(report, rows),
        _capacity(report, rows),
        _restart(report, rows),
        _node_kill(report, rows),
    ]


def _paced(report, rows: Rows):
    name = (
        f"cluster paced 100 msg/s: p99 over 2 nodes <= {CLUSTER_PACED_P99_VS_SINGLE_MAX:g}x "
        "1 node, same run; nothing lost"
    )
    clients = _largest(rows, "cluster_paced")
    one, two = pair(rows, "cluster_paced", clients) if clients else (None, None)
    if not one or not two or not one.get("p99_ms") or not two.get("p99_ms"):
        return report._no_data(name, "cluster_paced 1 and 2 nodes")
    times = two["p99_ms"] / one["p99_ms"]
    ok = times <= CLUSTER_PACED_P99_VS_SINGLE_MAX and _delivery(one, two) == "ok"
    numbers = (
        f"{clients} clients: p99 {fmt(one['p99_ms'])} -> {fmt(two['p99_ms'])} ms, p50 "
        f"{fmt(one['p50_ms'])} -> {fmt(two['p50_ms'])} ms; delivery {_delivery(one, two)}"
    )
    return report._judged(name, ok, f"{times:.2f}x 1 node", numbers)


def _burst(report, rows: Rows):
    name = "cluster burst, all clients x 200 msgs over 2 nodes: exactly once, in order"
    clients = _largest(rows, "cluster_burst")
    one, two = pair(rows, "cluster_burst", clients) if clients else (None, None)
    if not two:
        return report._no_data(name, "cluster_burst 2 nodes")
    numbers = f"{clients} clients: {fmt(two['delivered'])} deliveries checked"
    detail = delivery_cell(two)
    if one:
        numbers += (
            f"; {fmt(two['deliveries_per_s'])}/s vs 1 node {fmt(one['deliveries_per_s'])}/s "
            f"({ratio(two['deliveries_per_s'], one['deliveries_per_s'])})"
        )
    return report._judged(name, detail == "ok", detail, numbers)


def _capacity(report, rows: Rows):
    name = (
        f"{CLUSTER_CLIENTS:,} clients in one room over 2 nodes joined within "
        f"{CLUSTER_JOIN_TARGET_S:g} s, one broadcast reaches all"
    )
    found = by_case(rows, "cluster_capacity", clients=CLUSTER_CLIENTS, nodes=2)
    if not found:
        return report._no_data(name, f"cluster_capacity {CLUSTER_CLIENTS} over 2 nodes")
    row = found[0]
    ok = row["connect_s"] <= CLUSTER_JOIN_TARGET_S and delivery_cell(row) == "ok"
    numbers = f"broadcast reached {fmt(row['delivered'])} in {fmt(row.get('broadcast_ms'))} ms"
    single = by_case(rows, "cluster_capacity", nodes=1)
    if single:
        one = single[0]
        numbers += f"; 1 node: {fmt(one['clients'])} joined in {fmt(one['connect_s'])} s"
    return report._judged(name, ok, f"joined in {fmt(row['connect_s'])} s", numbers)


def _restart(report, rows: Rows):
    name = (
        f"Redis restarted under load: every node back within {CLUSTER_BACK_TARGET_S:g} s, "
        "every client's loss counted exactly"
    )
    found = by_case(rows, "cluster_redis_restart")
    if not found:
        return report._no_data(name, "cluster_redis_restart")
    largest = max(r["clients"] for r in found)
    runs = [r for r in found if r["clients"] == largest]  # the default buffer and a small one
    back = [s for r in runs for s in (r.get("node_back_s") or [None])]
    late = any(s is None or s > CLUSTER_BACK_TARGET_S for s in back)
    clean = not any(r.get(k) for r in runs for k in ("duplicates", "out_of_order", "unexpected"))
    miscounted = sum(r.get("loss_mismatched") or 0 for r in runs)
    ok = not late and miscounted == 0 and clean
    detail = f"back after {_list(back)} s; {fmt(miscounted)} clients miscounted"
    numbers = "; ".join(
        f"{_buffer(r)}: lost {fmt(r.get('lost_total'))}, notices counted "
        f"{fmt(r.get('counted_total'))}"
        for r in runs
    )
    return report._judged(name, ok, detail, f"{numbers} ({largest} clients)")


def _buffer(row: dict) -> str:
    return f"buffer {row['bus_buffer']}" if row.get("bus_buffer") else "default buffer"


def _node_kill(report, rows: Rows):
    name = (
        "a node SIGKILLed under load: the other node's own traffic loses nothing, its names "
        f"free within {CLUSTER_NAME_FREE_TARGET_S:g} s (lease + a heartbeat)"
    )
    found = by_case(rows, "cluster_node_kill")
    if not found:
        return report._no_data(name, "cluster_node_kill")
    row = max(found, key=lambda r: r["clients"])
    freed = row.get("name_freed_s")
    ok = _own_cell(row) == "ok" and freed is not None and freed <= CLUSTER_NAME_FREE_TARGET_S
    detail = f"own traffic {_own_cell(row)}; name free after {fmt(freed)} s"
    numbers = f"{fmt(row['delivered'])} deliveries to the {fmt(row.get('survivors'))} survivors"
    return report._judged(name, ok, detail, numbers)
