"""Hostile clients (issue 9): what the five cases share. Each case runs beside the same run
without the attacker: a flooder and a 50 MB burst (bench/test_hostile_flood.py), clients that
never read (bench/test_hostile_memory.py), a connection lock-out and a mass disconnect
(bench/test_hostile_connections.py, the lock-out's attacker in bench/hostile_crowd.py).

Only the default server (`threaded`, chat.server) runs them: the limits are its own. Its fixtures,
`threaded` and `swarms`, are in bench/conftest.py. Attackers connect from 127.0.0.2 and up
(127.0.0.1 is exempt from the per-address limits). Full sizes with --benchmark-only; with
--benchmark-disable (make test) every case runs at a tiny size, with small limits so that each
limit is still reached, and checks the same properties but no speed target. The targets are judged
by `python -m bench.report --check` (bench/report_hostile.py), which finds the rows by their
extra_info `case` (hostile_flood, hostile_burst, hostile_memory, hostile_lockout, hostile_mass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.swarm import Swarm

ATTACKER = "127.0.0.2"
ATTACKER_HOSTS = tuple(f"127.0.0.{i}" for i in range(2, 251))
MIB = 2**20
TIMEOUT_S = 120.0
# Quick mode: limits small enough that tiny sizes still reach them.
QUICK_FLOOD_RATE = 200_000
QUICK_FLOOD_BURST = 100_000
QUICK_QUEUED_TOTAL = 8 * MIB
QUICK_MAX_PENDING = 1 * MIB


@dataclass
class Sizes:
    """One case's sizes: the full run's, or quick mode's."""

    full: dict
    quick: dict

    def pick(self, quick: bool) -> dict:
        return self.quick if quick else self.full


def cut_count(swarm: Swarm, indices: Iterable[int]) -> int:
    """How many of these clients the server has cut."""
    return sum(1 for i in indices if swarm.clients[i].state == "closed")


def stat(stats: dict[str, float], key: str) -> int | None:
    """One /stats counter as an int; None if the server did not report it."""
    return int(stats[key]) if key in stats else None


def pedantic(benchmark, fn: Callable[[], object]) -> None:
    """Measure `fn` once: each case is one long window, not a repeated call."""
    benchmark.pedantic(fn, rounds=1, iterations=1)
