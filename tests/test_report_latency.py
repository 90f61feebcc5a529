"""Latency summaries and the change report on synthetic numbers: HdrHistogram percentiles and
merging, per-second series with their gaps, fan-out spread, corrected vs uncorrected tables, and
`--compare` flagging only what moved beyond a case's noise."""

from __future__ import annotations

import json

from bench import report, report_plots
from bench.report_compare import SAME, WORSE, changes
from bench.report_tables import server_stall_table, spread_table
from harness.latency import (
    SpreadTracker,
    encode,
    histogram_of,
    merge_encoded,
    per_interval,
    summary_ms,
)

MS = 1_000_000


def test_percentiles_come_from_hdrhistogram_in_milliseconds():
    summary = summary_ms(histogram_of([k * MS for k in range(1, 1001)]))
    assert summary["p50"] == 500.0 or abs(summary["p50"] - 500) / 500 < 1e-3
    assert abs(summary["p99"] - 990) / 990 < 1e-3
    assert abs(summary["p999"] - 999) / 999 < 1e-3
    assert abs(summary["max"] - 1000) / 1000 < 1e-3
    assert summary_ms(histogram_of([]))["p99"] is None


def test_histograms_of_two_processes_merge_into_one_distribution():
    low, high = histogram_of([1 * MS] * 90), histogram_of([100 * MS] * 10)
    merged = merge_encoded([encode(low), encode(high)])
    assert merged.get_total_count() == 100
    assert abs(summary_ms(merged)["p99"] - 100) < 0.1
    assert abs(summary_ms(merged)["p50"] - 1) < 0.01


def test_per_second_series_keeps_empty_seconds_as_gaps():
    t0 = 10 * 1_000_000_000
    stamps = [t0 + 100 * MS, t0 + 200 * MS, t0 + 2_500 * MS]
    rows = per_interval(stamps, [1 * MS, 3 * MS, 200 * MS], t0)
    assert [r["t_s"] for r in rows] == [0, 1, 2]
    assert [r["count"] for r in rows] == [2, 0, 1]
    assert rows[1]["p99"] is None
    assert abs(rows[2]["max"] - 200) < 0.5


def test_spread_is_first_to_last_receiver_per_broadcast_with_two_or_more():
    spread = SpreadTracker()
    for stamp in (5, 9, 7):
        spread.arrived(("a", 0), stamp)
    spread.arrived(("a", 1), 20)
    assert spread.spreads_ns() == [4]  # one receiver only: no spread


def row(case: str, server: str, clients: int, **numbers) -> dict:
    name = f"{case}-{server}"
    return {"case": case, "server": server, "clients": clients, "name": name, **numbers}


def test_stalled_server_table_shows_corrected_beside_uncorrected():
    text = server_stall_table(
        [row("server-stall", "threaded", 10, p99_ms=180.0, uncorrected_p99_ms=1.5, stalled_s=0.2)]
    )
    header, _, cells = text.splitlines()[-3:]
    assert "uncorrected p99 ms" in header and "| p99 ms |" in header
    assert "| 180 |" in cells and "| 1.5 |" in cells


def test_spread_table_has_one_row_per_client_count_and_server():
    rows = [
        row("broadcast", "threaded", 100, spread_p50_ms=0.4, spread_p99_ms=0.9),
        row("fanout", "threaded", 100, spread_p50_ms=2.0, spread_p99_ms=7.0),
    ]
    last = spread_table(rows).splitlines()[-1]
    assert last == "| 100 | threaded | 0.4 | 0.9 | 2 | 7 |"


def test_compare_flags_only_changes_beyond_the_measured_noise():
    old = [row("fanout", "threaded", 100, deliveries_per_s=1000.0, p99_ms=10.0)]
    same_code = [row("fanout", "threaded", 100, deliveries_per_s=900.0, p99_ms=14.0)]
    new = [row("fanout", "threaded", 100, deliveries_per_s=1080.0, p99_ms=30.0)]
    found = {c.measure: c for c in changes(old, new, [same_code])}
    assert found["deliveries/s"].verdict == SAME  # 8% up, noise measured at 11%
    assert found["p99 ms"].verdict == WORSE  # 3x, noise measured at 40%
    assert found["p99 ms"].measured


def test_compare_writes_a_readable_change_report(tmp_path, capsys):
    def save(name: str, rate: float) -> str:
        entry = {"name": "fanout-threaded", "stats": {"median": 1.0, "rounds": 1}}
        entry["extra_info"] = row("fanout", "threaded", 100, deliveries_per_s=rate)
        path = tmp_path / name
        path.write_text(json.dumps({"benchmarks": [entry]}))
        return str(path)

    old, new = save("old.json", 1000.0), save("new.json", 3000.0)
    assert report.main(["--compare", old, new, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "COMPARE.md").read_text()
    assert "**1 of 1 measures moved beyond noise: 1 better, 0 worse.**" in text
    assert "| fanout-threaded | deliveries/s | 1,000 | 3,000 | 3x |" in text
    assert "1 of 1 measures moved" in capsys.readouterr().err


def test_over_time_plot_draws_the_cases_series_and_the_load_tests_csv_beside_them(tmp_path):
    (tmp_path / "locust_latency_over_time.csv").write_text(
        "Timestamp,Deliveries,p50 ms,p99 ms,max ms\n100,5,1.0,2.0,3.0\n101,0,,,\n102,7,1.5,9,12\n"
    )
    series = report_plots.read_loadtest_series(tmp_path / "locust_latency_over_time.csv")
    assert [t for t, _ in series] == [0.0, 1.0, 2.0]
    assert series[1][1]["p99"] is None and series[2][1]["max"] == 12
    over_time = [{"t_s": 0, "count": 3, "p50": 1.0, "p99": 180.0, "max": 200.0}]
    rows = [row("server-stall", "threaded", 10, over_time=over_time)]
    path = report_plots.over_time_plot(rows, tmp_path)
    assert path.name == "over_time.png" and path.stat().st_size > 0


def test_the_stalled_server_target_wants_the_stall_in_the_corrected_tail_only():
    def verdict(**numbers) -> str:
        rows = [row("server-stall", "threaded", 10, **numbers)]
        return next(t for t in report.targets(rows) if t.name.startswith("server stopped")).status

    assert verdict(p99_ms=160.0, max_ms=195.0, uncorrected_p99_ms=30.0) == report.MET
    assert verdict(p99_ms=160.0, max_ms=195.0, uncorrected_p99_ms=150.0) == report.MISSED
    assert verdict(p99_ms=20.0, max_ms=195.0, uncorrected_p99_ms=5.0) == report.MISSED
    assert next(t for t in report.targets([]) if t.name.startswith("server")).status == "no data"


def test_the_driver_target_is_missed_at_0_9_of_a_core_at_the_8000_sweep_point():
    def verdict(fraction: float) -> str:
        numbers = {"p99_ms": 2.0, "deliveries_per_s": 792_000.0, "kept_up": True}
        sweep = row("sweep", "threaded", 100, offered_msgs_per_s=8000, **numbers)
        rows = [sweep | {"driver_cpu_frac": fraction}]
        return next(t for t in report.targets(rows) if t.name.startswith("swarm driver")).status

    assert verdict(0.6) == report.MET
    assert verdict(0.95) == report.MISSED


def test_a_skipped_peer_is_one_line_in_the_report(tmp_path):
    why = "ngircd: not installed (Debian package ngircd; no apt-get here to install it)"
    machine = {"peers_skipped": {"ngircd": why}}
    text = report.render(machine, [row("paced", "threaded", 2)], [], tmp_path / "b.json", tmp_path)
    assert [line for line in text.splitlines() if "Peer " in line] == [f"Peer skipped: {why}."]
