"""bench.report_tls on synthetic rows: each TLS target met, missed or no data, and the table.

`tls_met()` is also what tests/test_report.py adds to its all-met results.
"""

from __future__ import annotations

import pytest
from test_report_hostile import DELIVERED

from bench import report
from bench.report_tls import tls_section, tls_targets
from bench.targets import TLS_JOIN_CLIENTS, TLS_JOIN_TARGET_S

TLS_TARGET_COUNT = 4


def tls_met() -> list[dict]:
    """extra_info of every TLS case, plain and TLS, with every TLS target met."""
    rows = []
    for transport, speed, p99, join_s in (("plain", 2e6, 4.0, 5.0), ("tls", 1.2e6, 5.0, 20.0)):
        common = DELIVERED | {"server": "threaded", "transport": transport}
        rows += [
            common
            | {"case": "tls_burst", "clients": 100, "deliveries_per_s": speed}
            | {"server_cpu_s_per_million": 1e6 / speed},
            common | {"case": "tls_paced", "clients": 100, "p50_ms": 1.0, "p99_ms": p99},
            common | {"case": "tls_paced", "clients": 1000, "p50_ms": 3.0, "p99_ms": p99 * 2},
            common
            | {"case": "tls_join", "clients": TLS_JOIN_CLIENTS, "connect_s": join_s}
            | {"joins_per_s": TLS_JOIN_CLIENTS / join_s, "server_cpu_ms_per_join": 1.0},
        ]
    return rows


def statuses(rows: list[dict]) -> list[str]:
    return [t.status for t in tls_targets(rows)]


def set_in(rows: list[dict], case: str, transport: str, **info) -> list[dict]:
    for row in rows:
        if row["case"] == case and row["transport"] == transport:
            row.update(info)
    return rows


def test_every_tls_target_met():
    assert statuses(tls_met()) == [report.MET] * TLS_TARGET_COUNT


def test_without_rows_every_tls_target_is_no_data():
    assert statuses([]) == [report.NO_DATA] * TLS_TARGET_COUNT


@pytest.mark.parametrize(
    ("case", "info", "index"),
    [
        ("tls_burst", {"deliveries_per_s": 0.9e6}, 0),  # 0.45x plain
        ("tls_paced", {"p99_ms": 5.3}, 1),  # 1.325x plain at 100 clients
        ("tls_join", {"connect_s": TLS_JOIN_TARGET_S + 1}, 2),
    ],
)
def test_a_tls_run_that_misses_is_missed_alone(case, info, index):
    expected = [report.MET] * TLS_TARGET_COUNT
    expected[index] = report.MISSED
    assert statuses(set_in(tls_met(), case, "tls", **info)) == expected


def test_a_lost_line_over_tls_misses_its_target_whatever_the_speed():
    rows = set_in(tls_met(), "tls_paced", "tls", lost=1, delivered=999)
    assert statuses(rows)[3] == report.MISSED


def test_plain_without_tls_is_no_data_for_the_ratios():
    rows = [r for r in tls_met() if r["transport"] == "plain"]
    assert statuses(rows) == [report.NO_DATA] * TLS_TARGET_COUNT


def test_the_table_puts_plain_and_tls_side_by_side():
    lines = tls_section(tls_met())
    assert lines[0] == "## TLS beside plain (same run)"
    assert "| burst deliveries/s | 100 | 2,000,000 | 1,200,000 | 0.6x | ok |" in lines
    assert tls_section([]) == []
