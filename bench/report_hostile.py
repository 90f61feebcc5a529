"""The hostile-client targets of issue 9 (bench/test_hostile_*.py), judged for bench.report.

Each target compares the attacked run with the same run without the attacker, and its numbers
cell shows both side by side. bench/report_targets.py calls `hostile_targets(rows)` from its
`targets`, so the Targets table and `--check` include them; a target whose rows are missing is
no data.
"""

from __future__ import annotations

from bench.targets import (
    BURST_BYTES,
    BURST_READERS,
    FLOOD_CHATTERS,
    FLOOD_HELD_MARGIN,
    FLOOD_P99_VS_CALM_MAX,
    LOCKOUT_DRIBBLING,
    LOCKOUT_JOIN_TARGET_S,
    LOCKOUT_LEGIT_TRIES,
    LOCKOUT_SILENT,
    MASS_CLIENTS,
    MASS_MESSAGE_TARGET_MS,
    MASS_SIGTERM_TARGET_S,
    MEMORY_SPAMMERS,
)

MIB = 2**20


def hostile_targets(rows: list[dict]) -> list:
    """The five hostile-client targets (six verdicts) for the default server."""
    # Imported here: bench.report_targets imports this module. It holds the Target helpers and
    # the row cells (fmt, delivery_cell) these targets share with the others.
    from bench import report_targets as report

    return [
        _flood(report, rows),
        _burst(report, rows),
        _memory(report, rows),
        _lockout(report, rows),
        _mass_message(report, rows),
        _mass_sigterm(report, rows),
    ]


def _pair(report, rows: list[dict], case: str, clients: int) -> tuple[dict | None, dict | None]:
    """(calm, attacked) rows of `case` at the full size."""
    calm = report.one(rows, case, report.DEFAULT_SERVER, clients=clients, attacked=False)
    attacked = report.one(rows, case, report.DEFAULT_SERVER, clients=clients, attacked=True)
    return calm, attacked


def _flood(report, rows: list[dict]):
    name = (
        f"flood: {FLOOD_CHATTERS} chat at 10 msg/s, one floods at wire speed: none cut, nothing "
        f"lost, p99 <= {FLOOD_P99_VS_CALM_MAX:g}x without the flooder, flooder held at "
        "--flood-rate"
    )
    calm, hit = _pair(report, rows, "hostile_flood", FLOOD_CHATTERS)
    missing = report._missing(("hostile_flood calm", calm), ("hostile_flood flooded", hit))
    if missing:
        return report._no_data(name, *missing)
    ratio = hit["p99_ms"] / calm["p99_ms"] if calm["p99_ms"] and hit["p99_ms"] else None
    delivered = report.delivery_cell(hit) == "ok" and report.delivery_cell(calm) == "ok"
    within = ratio is not None and ratio <= FLOOD_P99_VS_CALM_MAX
    held = hit["flood_vs_rate"] <= FLOOD_HELD_MARGIN and (hit.get("throttled") or 0) > 0
    cut = hit["chatters_cut"] + calm["chatters_cut"]
    ok = delivered and within and held and cut == 0
    rate = report.fmt(hit["flood_fanout_bytes_per_s"] / MIB)
    return report._judged(
        name,
        ok,
        f"p99 {_x(ratio)} the calm run, flooder at {hit['flood_vs_rate']:.2f}x --flood-rate, "
        f"{cut} cut, delivery {report.delivery_cell(hit)}",
        f"p99 {report.fmt(calm['p99_ms'])} -> {report.fmt(hit['p99_ms'])} ms, max "
        f"{report.fmt(calm['max_ms'])} -> {report.fmt(hit['max_ms'])} ms; flooder {rate} MiB/s "
        f"past its burst vs {report.fmt(hit['flood_rate_bytes_per_s'] / MIB)} MiB/s "
        f"({report.fmt(hit['flood_lines'])} lines in {report.fmt(hit['flood_s'])} s), "
        f"throttled {report.fmt(hit.get('throttled'))}; deliveries "
        f"{report.fmt(hit['delivered'])}, lost {hit['lost']}",
    )


def _burst(report, rows: list[dict]):
    mb = BURST_BYTES / 1e6
    name = f"burst: {BURST_READERS} readers, one sender bursts {mb:g} MB: every line, none cut"
    found = {
        mode: report.one(
            rows, "hostile_burst", report.DEFAULT_SERVER, flood_control=mode, clients=BURST_READERS
        )
        for mode in ("on", "off")
    }
    on, off = found["on"], found["off"]
    if not on:
        return report._no_data(name, f"hostile_burst with flood control on, {BURST_READERS}")
    ok = on["none_cut"] and report.delivery_cell(on) == "ok"
    numbers = (
        f"default limits: {report.fmt(on['wall_s'])} s, {report.fmt(on['delivered'])} "
        f"deliveries, throttled {report.fmt(on.get('throttled'))}"
    )
    if off:
        numbers += (
            f"; flood control off: {report.fmt(off['wall_s'])} s, {off['readers_cut']} cut, "
            f"delivery {report.delivery_cell(off)}"
        )
    return report._judged(
        name, ok, f"{on['readers_cut']} cut, delivery {report.delivery_cell(on)}", numbers
    )


def _memory(report, rows: list[dict]):
    name = (
        f"memory: {MEMORY_SPAMMERS} clients spam /help, never read: peak RSS under the "
        "baseline + --max-queued-total"
    )
    calm, hit = _pair(report, rows, "hostile_memory", MEMORY_SPAMMERS)
    missing = report._missing(("hostile_memory calm", calm), ("hostile_memory spam", hit))
    if missing:
        return report._no_data(name, *missing)
    why = ", ".join(
        f"{key.replace('_', ' ')} {report.fmt(hit.get(key))}"
        for key in ("cut_hard_limit", "evicted", "cut_write_deadline")
    )
    return report._judged(
        name,
        bool(hit["rss_under_budget"]) and hit["server_alive"],
        f"peak {report.fmt(hit['peak_rss_mib'])} MiB of {report.fmt(hit['limit_rss_mib'])} MiB",
        f"baseline {report.fmt(hit['baseline_rss_mib'])} MiB + budget "
        f"{report.fmt(hit['max_queued_total_mib'])} MiB; silent clients peak "
        f"{report.fmt(calm['peak_rss_mib'])} MiB; {hit['disconnected']} of {MEMORY_SPAMMERS} "
        f"disconnected ({why}), the last after {report.fmt(hit['last_cut_s'])} s",
    )


def _lockout(report, rows: list[dict]):
    tries = LOCKOUT_LEGIT_TRIES
    name = (
        f"lock-out: {LOCKOUT_SILENT:,} silent + {LOCKOUT_DRIBBLING:,} dribbling connections from "
        f"127.0.0.2-250: {tries} of {tries} from 127.0.0.1 join within {LOCKOUT_JOIN_TARGET_S:g} s"
    )
    calm = report.one(rows, "hostile_lockout", report.DEFAULT_SERVER, attacked=False)
    hit = report.one(
        rows,
        "hostile_lockout",
        report.DEFAULT_SERVER,
        attacked=True,
        clients=LOCKOUT_SILENT + LOCKOUT_DRIBBLING,
    )
    missing = report._missing(("hostile_lockout calm", calm), ("hostile_lockout crowded", hit))
    if missing:
        return report._no_data(name, *missing)
    refused = hit["refused_address_busy"] + hit["refused_address_rate"] + hit["refused_full"]
    return report._judged(
        name,
        bool(hit["legit_all_in_time"]),
        f"{hit['legit_joined']} of {hit['legit_tries']} in, slowest "
        f"{report.fmt(hit['legit_join_max_s'])} s",
        f"calm slowest {report.fmt(calm['legit_join_max_s'])} s; attacker: "
        f"{report.fmt(hit['attacker_connects'])} connects, {report.fmt(refused)} refused "
        f"(address busy {report.fmt(hit['refused_address_busy'])}, rate "
        f"{report.fmt(hit['refused_address_rate'])}, full {report.fmt(hit['refused_full'])}), "
        f"{report.fmt(hit['pushed_out'])} pushed out, {report.fmt(hit['handshake_timeout'])} "
        f"timed out, {report.fmt(hit['attacker_held_at_end'])} held at the end",
    )


def _mass_pair(report, rows: list[dict], name: str):
    calm, hit = _pair(report, rows, "hostile_mass", MASS_CLIENTS)
    missing = report._missing(("hostile_mass calm", calm), ("hostile_mass disconnect", hit))
    return calm, hit, (report._no_data(name, *missing) if missing else None)


def _mass_message(report, rows: list[dict]):
    name = (
        f"mass disconnect of {MASS_CLIENTS:,}: a message between two others arrives within "
        f"{MASS_MESSAGE_TARGET_MS:g} ms"
    )
    calm, hit, no_data = _mass_pair(report, rows, name)
    if no_data:
        return no_data
    return report._judged(
        name,
        bool(hit["message_within_target"]),
        f"slowest {report.fmt(hit['bob_max_ms'])} ms",
        f"calm slowest {report.fmt(calm['bob_max_ms'])} ms; first message after the disconnect "
        f"{report.fmt(hit['bob_first_ms'])} ms, p99 {report.fmt(hit['bob_p99_ms'])} ms "
        f"({hit['probes']} messages at 10/s)",
    )


def _mass_sigterm(report, rows: list[dict]):
    name = (
        f"mass disconnect of {MASS_CLIENTS:,}: SIGTERM during it exits 0 within "
        f"{MASS_SIGTERM_TARGET_S:g} s"
    )
    calm, hit, no_data = _mass_pair(report, rows, name)
    if no_data:
        return no_data
    return report._judged(
        name,
        bool(hit["sigterm_within_target"]),
        f"exit {hit['sigterm_status']} after {report.fmt(hit['sigterm_exit_s'])} s",
        f"SIGTERM {report.fmt(hit['sigterm_after_s'])} s into the disconnect; with everyone "
        f"connected: exit {calm['sigterm_status']} after {report.fmt(calm['sigterm_exit_s'])} s",
    )


def _x(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.2f}x"
