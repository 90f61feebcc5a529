"""bench.report on synthetic results: targets met, missed or without data, --check, the table.

Each test builds a small pytest-benchmark JSON (the fields the report reads, shaped as
`--benchmark-json` writes them) in which every target is met, then breaks one thing. Drawing the
plots costs seconds, so only the end-to-end test draws them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_cluster import CLUSTER_TARGET_COUNT, cluster_met
from test_report_hostile import HOSTILE_TARGET_COUNT, hostile_met
from test_report_tls import TLS_TARGET_COUNT, tls_met

from bench import report
from bench.targets import CAPACITY_CLIENTS, JOIN_TARGET_S, REQUIRED_RATES_PER_S

TARGET_COUNT = 9 + HOSTILE_TARGET_COUNT + TLS_TARGET_COUNT + CLUSTER_TARGET_COUNT
WRITE_PLOTS = report.write_plots


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr(report, "write_plots", lambda rows, out: [])


def entry(case: str, server: str, clients: int, **info) -> dict:
    """One benchmark as pytest-benchmark writes it: name, group, stats, extra_info."""
    extra = {
        "case": case,
        "server": server,
        "clients": clients,
        "expected": 1000,
        "delivered": 1000,
        "lost": 0,
        "duplicates": 0,
        "out_of_order": 0,
        "unexpected": 0,
        "timed_out": False,
        "wall_s": 1.0,
        "deliveries_per_s": 100_000.0,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "max_ms": 3.0,
        "server_cpu_s": 0.5,
        "server_cpu_frac": 0.5,
        "server_cpu_s_per_million": 5.0,
        "driver_cpu_s": 0.5,
        "driver_cpu_frac": 0.5,
        "driver_saturated": False,
        "other_cpu_frac": 0.0,
        **info,
    }
    return {
        "group": f"{case} clients={clients}",
        "name": f"test_{case}[{clients}-{server}]",
        "stats": {"median": extra["wall_s"], "rounds": 1},
        "extra_info": extra,
    }


def all_met() -> list[dict]:
    """Rows in which the default server meets every target."""
    rows = [
        entry("burst", "threaded", 100, deliveries_per_s=2_000_000.0),
        entry("burst", "asyncio", 100, deliveries_per_s=200_000.0),
        entry("paced", "threaded", 500, p99_ms=6.0, server_cpu_s=1.0),
        entry("paced", "asyncio", 500, p99_ms=5.0, server_cpu_s=0.8),
        entry("stall", "threaded", 100, stalled=0, deliveries_per_s=900_000.0),
        entry("stall", "threaded", 100, stalled=1, deliveries_per_s=850_000.0),
        entry("server-stall", "threaded", 10, p99_ms=160.0, max_ms=195.0, uncorrected_p99_ms=30.0),
    ]
    for rate in REQUIRED_RATES_PER_S:
        offered = rate * 99
        rows.append(
            entry(
                "sweep",
                "threaded",
                100,
                offered_msgs_per_s=rate,
                offered_deliveries_per_s=offered,
                deliveries_per_s=float(offered),
                p99_ms=4.0,
                kept_up=True,
            )
        )
    for clients in CAPACITY_CLIENTS:
        rows.append(
            entry(
                "capacity",
                "threaded",
                clients,
                connect_s=JOIN_TARGET_S / 4,
                joined_within_target=True,
                broadcast_ms=100.0,
                rss_per_client_kib=50.0,
            )
        )
    for info in [*hostile_met(), *tls_met(), *cluster_met()]:
        rows.append(entry(info.pop("case"), info.pop("server"), info.pop("clients"), **info))
    return rows


def change(rows: list[dict], case: str, match: dict | None = None, **info) -> list[dict]:
    """The rows with `info` set in the extra_info of every row of `case` matching `match`."""
    for row in rows:
        extra = row["extra_info"]
        if extra["case"] == case and all(extra.get(k) == v for k, v in (match or {}).items()):
            extra.update(info)
    return rows


def drop(rows: list[dict], case: str, **match) -> list[dict]:
    """The rows without those of `case` matching `match`."""
    kept = []
    for row in rows:
        extra = row["extra_info"]
        if not (extra["case"] == case and all(extra.get(k) == v for k, v in match.items())):
            kept.append(row)
    assert len(kept) < len(rows), "nothing to drop"
    return kept


def run(tmp_path: Path, rows: list[dict], *options: str) -> int:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": {"cores": 2}, "benchmarks": rows}))
    return report.main([str(path), *options])


def targets_table(tmp_path: Path) -> list[str]:
    """The rows of REPORT.md's Targets table (header and rule excluded)."""
    text = (tmp_path / "REPORT.md").read_text()
    section = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")][1:]


def test_every_target_met_passes_the_check_silently(tmp_path, capsys):
    assert run(tmp_path, all_met(), "--check") == 0
    assert capsys.readouterr().out == ""
    table = targets_table(tmp_path)
    assert len(table) == TARGET_COUNT
    assert all(line.split(" | ")[1].startswith("met: ") for line in table), table


def test_missed_target_fails_the_check_with_one_line_naming_it(tmp_path, capsys):
    rows = change(all_met(), "burst", {"server": "threaded"}, deliveries_per_s=1_000_000.0)
    assert run(tmp_path, rows, "--check") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "missed: burst fan-out, 100 clients x 200 msgs: >= 8x asyncio, nothing "
        "lost: 5.0x (needs 8x)"
    ]
    burst = [line for line in targets_table(tmp_path) if line.startswith("| burst fan-out")]
    assert burst and "| **missed**: 5.0x (needs 8x) |" in burst[0]


def test_target_without_its_row_is_no_data_in_the_check_and_the_table(tmp_path, capsys):
    rows = drop(all_met(), "paced", server="asyncio")
    assert run(tmp_path, rows, "--check") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("no data: paced, 500 clients")
    assert lines[0].endswith("no row for paced asyncio at 500 clients")
    table = targets_table(tmp_path)
    assert len(table) == TARGET_COUNT, "a target without data must stay in the table"
    paced = [line for line in table if line.startswith("| paced, 500 clients")]
    assert paced and "**no data**: no row for paced asyncio at 500 clients" in paced[0]


def test_without_check_a_missed_target_still_exits_zero(tmp_path, capsys):
    rows = drop(change(all_met(), "stall", {"stalled": 1}, lost=5), "burst")
    assert run(tmp_path, rows) == 0
    assert capsys.readouterr().out == ""
    assert "**missed**" in (tmp_path / "REPORT.md").read_text()


def test_a_required_rate_not_kept_up_is_missed(tmp_path, capsys):
    rows = change(all_met(), "sweep", {"offered_msgs_per_s": 2000}, kept_up=False)
    assert run(tmp_path, rows, "--check") == 1
    assert capsys.readouterr().out.splitlines() == [
        "missed: rate sweep keeps up at 1,000, 2,000, 4,000, 8,000 msg/s (90% of offered), "
        "all delivered: behind at 2,000"
    ]


def test_a_missing_required_rate_is_no_data(tmp_path, capsys):
    rows = drop(all_met(), "sweep", offered_msgs_per_s=4000)
    assert run(tmp_path, rows, "--check") == 1
    assert capsys.readouterr().out.splitlines() == [
        "no data: rate sweep keeps up at 1,000, 2,000, 4,000, 8,000 msg/s (90% of offered), "
        "all delivered: no row for sweep threaded at 4,000 msg/s"
    ]


def test_a_capacity_run_joined_late_is_missed(tmp_path, capsys):
    late = JOIN_TARGET_S * 2
    rows = change(all_met(), "capacity", {"clients": 1000}, connect_s=late)
    rows = change(rows, "capacity", {"clients": 1000}, joined_within_target=False)
    assert run(tmp_path, rows, "--check") == 1
    assert capsys.readouterr().out.splitlines() == [
        "missed: capacity runs of 1,000, 10,000 clients each joined within 10 s: late at 1,000"
    ]


def test_missing_largest_capacity_run_is_no_data_for_both_its_targets(tmp_path, capsys):
    rows = drop(all_met(), "capacity", clients=10000)
    assert run(tmp_path, rows, "--check") == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["no data", "no data"]
    assert all(line.endswith("no row for capacity threaded at 10,000 clients") for line in lines)


@pytest.mark.parametrize("problem", ["lost", "duplicates", "out_of_order", "unexpected"])
def test_a_delivery_failure_misses_the_target_whatever_the_speed(tmp_path, capsys, problem):
    rows = change(all_met(), "stall", {"stalled": 1}, **{problem: 1})
    assert run(tmp_path, rows, "--check") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("missed: one stalled reader changes nothing for the others")


def test_no_results_at_all_fails(tmp_path, capsys):
    assert run(tmp_path, [], "--check") == 1
    assert "no benchmark results" in capsys.readouterr().err


def test_targets_on_rows_lists_every_target_once():
    found = report.targets([row["extra_info"] for row in all_met()])
    assert [t.status for t in found] == [report.MET] * TARGET_COUNT
    assert len({t.name for t in found}) == TARGET_COUNT
    assert report.targets([]) and all(t.status == report.NO_DATA for t in report.targets([]))


def test_end_to_end_writes_the_report_and_five_plots_and_the_clusters(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(report, "write_plots", WRITE_PLOTS)
    assert run(tmp_path, all_met(), "--check") == 0
    plots = sorted(p.name for p in tmp_path.glob("*.png"))
    five = ["capacity.png", "latency.png", "over_time.png", "sweep.png", "throughput.png"]
    assert plots == sorted([*five, "cluster.png"])  # the cluster plot: the run has its cases
    text = (tmp_path / "REPORT.md").read_text()
    assert all(f"![{Path(name).stem}]({name})" in text for name in plots)
    assert "wrote" in capsys.readouterr().err


def test_the_hot_path_case_has_a_table_of_its_own(tmp_path):
    hotpath = entry("hotpath", "threaded", 100, deliveries=300_000, server_cpu_s_per_million=6.1)
    rows = [*all_met(), hotpath]
    assert run(tmp_path, rows) == 0
    text = (tmp_path / "REPORT.md").read_text()
    section = text.split("## Delivery hot path", 1)[1].split("\n## ", 1)[0]
    assert "| 100 | 300,000 | 6.1 |" in section
