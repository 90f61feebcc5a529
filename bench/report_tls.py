"""TLS beside plain (bench/test_tls.py) for bench.report: one table of the pairs, and the targets.

Both rows of a pair come from the same run, the default server with and without TLS, so the
ratios hold even where absolute numbers move from machine to machine. bench/report_targets.py
calls `tls_targets(rows)` from its `targets`; bench/report.py adds `tls_section(rows)`.
"""

from __future__ import annotations

from bench.report_rows import Rows, by_case, delivery_cell, fmt, ratio
from bench.targets import (
    TLS_BURST_VS_PLAIN_MIN,
    TLS_JOIN_CLIENTS,
    TLS_JOIN_TARGET_S,
    TLS_PACED_P99_VS_PLAIN_MAX,
)

TLS_CASES = ("tls_burst", "tls_paced", "tls_join")
# (case, field, what it is): the table's rows, per client count.
COMPARED = (
    ("tls_burst", "deliveries_per_s", "burst deliveries/s"),
    ("tls_burst", "server_cpu_s_per_million", "burst server CPU s / M deliveries"),
    ("tls_paced", "p50_ms", "paced p50 ms"),
    ("tls_paced", "p99_ms", "paced p99 ms"),
    ("tls_paced", "server_cpu_s", "paced server CPU s"),
    ("tls_join", "connect_s", "join s (connect, handshake, welcome)"),
    ("tls_join", "joins_per_s", "joins (handshakes)/s"),
    ("tls_join", "server_cpu_ms_per_join", "server CPU ms per join"),
    ("tls_join", "rss_per_client_kib", "server KiB per client"),
)


def pair(rows: Rows, case: str, clients: int) -> tuple[dict | None, dict | None]:
    """(plain, tls) rows of `case` at `clients`."""
    found = {
        transport: by_case(rows, case, clients=clients, transport=transport)
        for transport in ("plain", "tls")
    }
    return tuple(r[0] if r else None for r in found.values())  # type: ignore[return-value]


def tls_section(rows: Rows) -> list[str]:
    """The side-by-side table; nothing when the run had no TLS cases."""
    lines = []
    for case, field, label in COMPARED:
        for clients in sorted({r["clients"] for r in by_case(rows, case)}):
            plain, tls = pair(rows, case, clients)
            p, t = (plain or {}).get(field), (tls or {}).get(field)
            cells = (fmt(p), fmt(t), ratio(t, p), _delivery(plain, tls))
            lines.append(f"| {label} | {clients:,} | " + " | ".join(cells) + " |")
    if not lines:
        return []
    return [
        "## TLS beside plain (same run)",
        "",
        "The default server with and without TLS (ECDSA P-256 certificate, TLS 1.3), the swarm "
        "speaking the same; the TLS ratio is TLS / plain.",
        "",
        "| measure | clients | plain | TLS | TLS / plain | delivery |",
        "|---|---|---|---|---|---|",
        *lines,
        "",
    ]


def _delivery(plain: dict | None, tls: dict | None) -> str:
    cells = {delivery_cell(r) for r in (plain, tls) if r}
    return "ok" if cells == {"ok"} else "; ".join(sorted(cells))


def tls_targets(rows: Rows) -> list:
    """The four TLS targets: burst, paced p99, joining, nothing lost."""
    from bench import report_targets as report  # it imports this module

    return [_burst(report, rows), _paced(report, rows), _join(report, rows), _lost(report, rows)]


def _largest(rows: Rows, case: str) -> int | None:
    sizes = [r["clients"] for r in by_case(rows, case, transport="tls")]
    return max(sizes) if sizes else None


def _burst(report, rows: Rows):
    name = f"TLS burst fan-out >= {TLS_BURST_VS_PLAIN_MIN:g}x plain, same run"
    clients = _largest(rows, "tls_burst")
    plain, tls = pair(rows, "tls_burst", clients) if clients else (None, None)
    if not plain or not tls:
        return report._no_data(name, "tls_burst plain and TLS")
    share = tls["deliveries_per_s"] / plain["deliveries_per_s"] if plain["deliveries_per_s"] else 0
    numbers = (
        f"{clients} clients: plain {fmt(plain['deliveries_per_s'])}/s, TLS "
        f"{fmt(tls['deliveries_per_s'])}/s; server CPU s/M {fmt(plain['server_cpu_s_per_million'])}"
        f" -> {fmt(tls['server_cpu_s_per_million'])}"
    )
    return report._judged(name, share >= TLS_BURST_VS_PLAIN_MIN, f"{share:.2f}x plain", numbers)


def _paced(report, rows: Rows):
    name = f"TLS paced p99 <= {TLS_PACED_P99_VS_PLAIN_MAX:g}x plain, same run"
    sizes = sorted({r["clients"] for r in by_case(rows, "tls_paced", transport="tls")})
    pairs = [(n, *pair(rows, "tls_paced", n)) for n in sizes]
    pairs = [(n, p, t) for n, p, t in pairs if p and t and p["p99_ms"] and t["p99_ms"]]
    if not pairs:
        return report._no_data(name, "tls_paced plain and TLS")
    ratios = {n: t["p99_ms"] / p["p99_ms"] for n, p, t in pairs}
    worst = max(ratios.values())
    numbers = "; ".join(
        f"{n} clients: {fmt(p['p99_ms'])} -> {fmt(t['p99_ms'])} ms" for n, p, t in pairs
    )
    return report._judged(
        name, worst <= TLS_PACED_P99_VS_PLAIN_MAX, f"worst {worst:.2f}x plain", numbers
    )


def _join(report, rows: Rows):
    name = f"{TLS_JOIN_CLIENTS:,} TLS clients joined within {TLS_JOIN_TARGET_S:g} s"
    plain, tls = pair(rows, "tls_join", TLS_JOIN_CLIENTS)
    if not tls:
        return report._no_data(name, f"tls_join TLS {TLS_JOIN_CLIENTS}")
    numbers = f"TLS {fmt(tls['connect_s'])} s ({fmt(tls['joins_per_s'])} joins/s)"
    if plain:
        numbers += f"; plain {fmt(plain['connect_s'])} s ({fmt(plain['joins_per_s'])} joins/s)"
    ok = tls["connect_s"] <= TLS_JOIN_TARGET_S and delivery_cell(tls) == "ok"
    return report._judged(name, ok, f"{fmt(tls['connect_s'])} s", numbers)


def _lost(report, rows: Rows):
    name = "nothing lost in any TLS case"
    found = [r for case in TLS_CASES for r in by_case(rows, case, transport="tls")]
    if not found:
        return report._no_data(name, "any TLS case")
    bad = [f"{r['case']} {r['clients']}: {delivery_cell(r)}" for r in found]
    bad = [b for b in bad if not b.endswith(": ok")]
    delivered = sum(r["delivered"] for r in found)
    detail = "; ".join(bad) if bad else f"{len(found)} cases ok"
    return report._judged(name, not bad, detail, f"{fmt(delivered)} TLS deliveries checked")
