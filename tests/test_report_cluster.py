"""bench.report_cluster on synthetic rows: each cluster target met, missed or no data, and the
tables.

`cluster_met()` is also what tests/test_report.py adds to its all-met results.
"""

from __future__ import annotations

import pytest
from test_report_hostile import DELIVERED

from bench import report
from bench.report_cluster import cluster_section, cluster_targets
from bench.targets import (
    CLUSTER_BACK_TARGET_S,
    CLUSTER_CLIENTS,
    CLUSTER_JOIN_TARGET_S,
    CLUSTER_NAME_FREE_TARGET_S,
)

CLUSTER_TARGET_COUNT = 5


def cluster_met() -> list[dict]:
    """extra_info of every cluster case, one node and two, with every cluster target met."""
    rows = []
    for nodes, p99, speed in ((1, 4.0, 2e6), (2, 5.0, 1e6)):
        common = DELIVERED | {"server": "threaded", "nodes": nodes}
        cpu = {f"node {i}": 1.0 for i in range(1, nodes + 1)} | ({"redis": 0.5} if nodes else {})
        rows += [
            common
            | {"case": "cluster_paced", "clients": 500, "p50_ms": 1.0, "p99_ms": p99}
            | {"uncorrected_p99_ms": p99, "remote_p99_ms": p99 if nodes == 2 else None}
            | {"server_cpu_s_per_million": 2.0, "process_cpu_s_per_million": cpu},
            common
            | {"case": "cluster_burst", "clients": 100, "deliveries_per_s": speed, "p99_ms": 9.0}
            | {"server_cpu_s_per_million": 1.0, "process_cpu_s_per_million": cpu},
        ]
    two = DELIVERED | {"server": "threaded", "nodes": 2}
    rows += [
        two
        | {"case": "cluster_capacity", "clients": CLUSTER_CLIENTS, "connect_s": 12.0}
        | {"connect_s_per_node": [11.0, 12.0], "broadcast_ms": 900.0, "node_rss_mib": [300, 310]},
        two
        | {"case": "cluster_capacity", "clients": CLUSTER_CLIENTS // 2, "connect_s": 9.0}
        | {"connect_s_per_node": [9.0], "broadcast_ms": 300.0, "nodes": 1},
        two
        | {"case": "cluster_redis_restart", "clients": 100, "node_back_s": [0.3, 0.4]}
        | {"node_down_s": [0.01, 0.01], "lost_total": 37, "counted_total": 37}
        | {"loss_mismatched": 0, "outage_s": 1.5, "rate_per_s": 100.0, "lost": 37}
        | {"bus_buffer": 20},
        two
        | {"case": "cluster_redis_restart", "clients": 100, "node_back_s": [0.3, 0.3]}
        | {"node_down_s": [0.01, 0.01], "lost_total": 0, "counted_total": 0, "outage_s": 1.5}
        | {"loss_mismatched": 0, "rate_per_s": 100.0, "bus_buffer": None},
        two
        | {"case": "cluster_node_kill", "clients": 100, "survivors": 50, "timed_out": True}
        | {"name_freed_s": 5.2, "name_tries": 21, "lease_s": 5.0, "rate_per_s": 100.0},
    ]
    return rows


def statuses(rows: list[dict]) -> list[str]:
    return [t.status for t in cluster_targets(rows)]


def set_in(rows: list[dict], case: str, nodes: int, **info) -> list[dict]:
    """`info` set in the first row of `case` on `nodes` nodes (a small-buffer restart's)."""
    for row in rows:
        if row["case"] == case and row["nodes"] == nodes:
            row.update(info)
            return rows
    raise AssertionError(f"no {case} row on {nodes} nodes")


def test_every_cluster_target_met():
    assert statuses(cluster_met()) == [report.MET] * CLUSTER_TARGET_COUNT


def test_without_rows_every_cluster_target_is_no_data():
    assert statuses([]) == [report.NO_DATA] * CLUSTER_TARGET_COUNT


@pytest.mark.parametrize(
    ("case", "info", "index"),
    [
        ("cluster_paced", {"p99_ms": 6.1}, 0),  # 1.525x one node
        ("cluster_burst", {"out_of_order": 1}, 1),
        ("cluster_capacity", {"connect_s": CLUSTER_JOIN_TARGET_S + 1}, 2),
        ("cluster_capacity", {"lost": 1}, 2),
        ("cluster_redis_restart", {"node_back_s": [0.3, CLUSTER_BACK_TARGET_S + 0.1]}, 3),
        ("cluster_redis_restart", {"node_back_s": [0.3, None]}, 3),  # a node's clients not told
        ("cluster_redis_restart", {"loss_mismatched": 1}, 3),
        ("cluster_node_kill", {"lost": 1}, 4),
        ("cluster_node_kill", {"name_freed_s": CLUSTER_NAME_FREE_TARGET_S + 0.1}, 4),
        ("cluster_node_kill", {"name_freed_s": None}, 4),
    ],
)
def test_a_cluster_run_that_misses_is_missed_alone(case, info, index):
    expected = [report.MET] * CLUSTER_TARGET_COUNT
    expected[index] = report.MISSED
    assert statuses(set_in(cluster_met(), case, 2, **info)) == expected


def test_a_lost_line_on_one_node_misses_the_paced_target_whatever_the_ratio():
    rows = set_in(cluster_met(), "cluster_paced", 1, lost=1)
    assert statuses(rows)[0] == report.MISSED


def test_the_restart_target_judges_the_default_buffer_and_the_small_one_together():
    [target] = [t for t in cluster_targets(cluster_met()) if t.name.startswith("Redis")]
    assert target.numbers == (
        "buffer 20: lost 37, notices counted 37; default buffer: lost 0, notices counted 0 "
        "(100 clients)"
    )
    rows = cluster_met()
    rows[-2]["node_back_s"] = [0.3, CLUSTER_BACK_TARGET_S + 0.5]  # the default buffer's run
    assert statuses(rows)[3] == report.MISSED


def test_one_node_without_two_is_no_data_for_every_cluster_target():
    rows = [r for r in cluster_met() if r.get("nodes") == 1]
    assert statuses(rows) == [report.NO_DATA] * CLUSTER_TARGET_COUNT


def test_the_tables_put_one_node_and_two_side_by_side_with_each_process_cpu():
    lines = cluster_section(cluster_met())
    assert lines[0] == "## Cluster: one node beside two on Redis (same run)"
    assert "| paced p99 ms | 500 | 4 | 5 | 1.25x | ok |" in lines
    assert "| burst deliveries/s | 100 | 2,000,000 | 1,000,000 | 0.5x | ok |" in lines
    assert "| paced | 500 | 2 | node 1 1; node 2 1; redis 0.5 |" in lines
    text = "\n".join(lines)
    assert "| 2 | 20,000 | 12 (11, 12) | 900 | 300, 310 | ok |" in text
    assert "| 1 | 10,000 | 9 (9) | 300 | – | ok |" in text
    assert "the counted-gap notices said 37, 0 clients where they differ" in text
    assert "100 msg/s, buffer 20, down 1.5 s" in text and "default buffer, down 1.5 s" in text
    assert "taken again 5.2 s after the kill" in text
    assert cluster_section([]) == []
