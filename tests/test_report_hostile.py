"""bench.report_hostile on synthetic rows: each hostile-client target met, missed or no data.

`hostile_met()` is also what tests/test_report.py adds to its all-met results.
"""

from __future__ import annotations

import pytest

from bench import report
from bench.report_hostile import hostile_targets
from bench.targets import (
    BURST_READERS,
    FLOOD_CHATTERS,
    LOCKOUT_DRIBBLING,
    LOCKOUT_SILENT,
    MASS_CLIENTS,
    MEMORY_SPAMMERS,
)

HOSTILE_TARGET_COUNT = 6
DELIVERED = {
    "expected": 1000,
    "delivered": 1000,
    "lost": 0,
    "duplicates": 0,
    "out_of_order": 0,
    "unexpected": 0,
    "timed_out": False,
    "wall_s": 1.0,
    "p99_ms": 2.0,
    "max_ms": 3.0,
}


def hostile_met() -> list[dict]:
    """extra_info of every hostile case, calm and attacked, with every target met."""
    return [*flood_met(), *burst_met(), *memory_met(), *lockout_met(), *mass_met()]


def flood_met() -> list[dict]:
    """The flood case, calm and attacked."""
    flood = {"case": "hostile_flood", "server": "threaded", "clients": FLOOD_CHATTERS}
    flood |= DELIVERED | {"chatters_cut": 0, "throttled": 0}
    flooded = flood | {
        "attacked": True,
        "p99_ms": 3.0,
        "throttled": 5,
        "flood_vs_rate": 1.0,
        "flood_fanout_bytes_per_s": 8 * 2**20,
        "flood_rate_bytes_per_s": 8 * 2**20,
        "flood_lines": 30_000,
        "flood_s": 10.0,
    }
    return [flood | {"attacked": False}, flooded]


def burst_met() -> list[dict]:
    """The burst case, with flood control on and off."""
    burst = {"case": "hostile_burst", "server": "threaded", "clients": BURST_READERS}
    burst |= DELIVERED | {"readers_cut": 0, "none_cut": True, "throttled": 1}
    return [burst | {"flood_control": "on"}, burst | {"flood_control": "off"}]


def memory_met() -> list[dict]:
    """The memory case, calm and attacked."""
    memory = {"case": "hostile_memory", "server": "threaded", "clients": MEMORY_SPAMMERS}
    memory |= {
        "baseline_rss_mib": 40.0,
        "peak_rss_mib": 300.0,
        "limit_rss_mib": 552.0,
        "max_queued_total_mib": 512.0,
        "rss_under_budget": True,
        "server_alive": True,
        "disconnected": 100,
        "last_cut_s": 3.0,
        "cut_hard_limit": 100,
        "evicted": 0,
        "cut_write_deadline": 0,
    }
    return [memory | {"attacked": False}, memory | {"attacked": True}]


def lockout_met() -> list[dict]:
    """The lockout case, calm (no attackers) and attacked."""
    lockout = {"case": "hostile_lockout", "server": "threaded", "legit_tries": 10}
    lockout |= {"legit_joined": 10, "legit_join_max_s": 0.01, "legit_all_in_time": True}
    lockout |= dict.fromkeys(
        (
            "refused_address_busy",
            "refused_address_rate",
            "refused_full",
            "pushed_out",
            "handshake_timeout",
            "attacker_connects",
            "attacker_held_at_end",
        ),
        100,
    )
    return [
        lockout | {"attacked": False, "clients": 0},
        lockout | {"attacked": True, "clients": LOCKOUT_SILENT + LOCKOUT_DRIBBLING},
    ]


def mass_met() -> list[dict]:
    """The mass case, calm and attacked."""
    mass = {"case": "hostile_mass", "server": "threaded", "clients": MASS_CLIENTS} | DELIVERED
    mass |= {"probes": 30, "bob_first_ms": 5.0, "bob_p99_ms": 9.0, "bob_max_ms": 10.0}
    mass |= {"message_within_target": True, "sigterm_exit_s": 0.6, "sigterm_status": 0}
    mass |= {"sigterm_within_target": True, "sigterm_after_s": 1.0}
    return [mass | {"attacked": False}, mass | {"attacked": True}]


def statuses(rows: list[dict]) -> list[str]:
    return [t.status for t in hostile_targets(rows)]


def test_every_hostile_target_met():
    assert statuses(hostile_met()) == [report.MET] * HOSTILE_TARGET_COUNT


def test_without_rows_every_hostile_target_is_no_data():
    assert statuses([]) == [report.NO_DATA] * HOSTILE_TARGET_COUNT


def set_in(rows: list[dict], case: str, attacked: bool | None = None, **info) -> list[dict]:
    for row in rows:
        if row["case"] == case and (attacked is None or row.get("attacked") == attacked):
            row.update(info)
    return rows


@pytest.mark.parametrize(
    ("case", "info", "index"),
    [
        ("hostile_flood", {"p99_ms": 4.5}, 0),  # 2.25x the calm p99
        ("hostile_flood", {"chatters_cut": 1}, 0),
        ("hostile_flood", {"flood_vs_rate": 1.5}, 0),
        ("hostile_flood", {"throttled": 0}, 0),
        ("hostile_flood", {"lost": 1}, 0),
        ("hostile_burst", {"none_cut": False, "readers_cut": 2}, 1),
        ("hostile_memory", {"rss_under_budget": False}, 2),
        ("hostile_lockout", {"legit_all_in_time": False}, 3),
        ("hostile_mass", {"message_within_target": False}, 4),
        ("hostile_mass", {"sigterm_within_target": False}, 5),
    ],
)
def test_an_attacked_run_that_misses_is_missed_alone(case, info, index):
    rows = set_in(hostile_met(), case, attacked=True if case != "hostile_burst" else None, **info)
    expected = [report.MET] * HOSTILE_TARGET_COUNT
    expected[index] = report.MISSED
    assert statuses(rows) == expected


def test_the_flood_without_its_calm_run_is_no_data():
    rows = [r for r in hostile_met() if not (r["case"] == "hostile_flood" and not r["attacked"])]
    assert statuses(rows)[0] == report.NO_DATA
