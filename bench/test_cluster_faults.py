"""Faults under paced load, two nodes on Redis: Redis killed and restarted on its port, and a node
SIGKILLed. What the clients see is what counts: every client has every message or a notice that
counts exactly what it missed (checked against the loss measured here), every node's clients are
told the bus is back (timed from the restart to their "back" notice), the survivors' own traffic
loses nothing, and the dead node's names can be taken again (timed from the kill). The times are
targets for bench/report_cluster.py; the tests assert only what must hold at any speed.
"""

from __future__ import annotations

import pytest

from bench.cluster import cpu_info, drive_room, room_swarm
from bench.cluster_faults import (
    Faults,
    NameProbe,
    RedisRestart,
    bus_text,
    counted_loss,
    counted_pattern,
    first_notice,
    kill,
)
from bench.measure import QUIET_JOINS, Window, extra_info, join
from bench.swarm import SenderPlan
from bench.targets import CLUSTER_LEASE_S
from bench.test_cluster import ROOM_ARGS

FAULT_RATE_PER_S = 100.0  # the room's paced load, shared by the senders
FAULT_SENDERS = 4  # clients 0-3: two on each node
FAULT_IDLE_S = 3.0  # with lines lost for good, the window ends this long after the last read
NAME_PROBE_BOUND_S = CLUSTER_LEASE_S + 10.0
# Fewer events than a node's senders say while Redis is down (even in the quick run), so some
# are dropped and must be counted.
RESTART_SMALL_BUFFER = 20


def paced_plans(seconds: float) -> list[SenderPlan]:
    rate = FAULT_RATE_PER_S / FAULT_SENDERS
    return [SenderPlan(i, int(rate * seconds), rate_per_s=rate) for i in range(FAULT_SENDERS)]


def drive_with_faults(benchmark, room, swarm, faults: Faults, seconds: float):
    """The timed window: the paced plans for `seconds` while `faults` strike on their schedule;
    returns the window and every process's CPU over it."""
    window = Window()
    swarm.begin_window()
    cpu: dict[str, float] = {}

    def run() -> None:
        faults.start()
        plans = paced_plans(seconds)
        cpu.update(drive_room(window, room, swarm, plans, seconds + 60.0, 0.0, FAULT_IDLE_S))

    benchmark.pedantic(run, rounds=1, iterations=1)
    faults.join(30.0)
    return window, cpu


def seconds_between(later_ns: int | None, earlier_ns: int | None) -> float | None:
    if later_ns is None or earlier_ns is None:
        return None
    return round((later_ns - earlier_ns) / 1e9, 3)


@pytest.mark.timeout(300)
@pytest.mark.clients(full=(100,), quick=(10,))
@pytest.mark.parametrize(
    "bus_buffer", [0, RESTART_SMALL_BUFFER], ids=["buffer-default", "buffer-20"]
)
def test_cluster_redis_restart(benchmark, rooms, clients, bus_buffer, quick):
    """Redis is killed under paced load and started again on its port (empty) a little later.

    With the default --bus-buffer the nodes keep everything said meanwhile and nothing may be
    lost; with a buffer smaller than the outage's traffic the oldest are dropped, and each
    client's counted-gap notices must add up to exactly what it lost.
    """
    buffer_args = ("--bus-buffer", str(bus_buffer)) if bus_buffer else ()
    room = rooms(2, *QUIET_JOINS, *ROOM_ARGS, *buffer_args)
    swarm = join(room_swarm(room), clients)
    seconds, kill_at, back_at = (2.5, 0.5, 1.0) if quick else (6.0, 1.5, 3.0)
    assert room.redis is not None
    restart = RedisRestart(room.redis)
    steps = [(kill_at, "killed", lambda: killed(room, restart.kill))]
    faults = Faults([*steps, (back_at, "restarted", restart.restart)])
    benchmark.group = f"cluster redis-restart clients={clients} buffer={bus_buffer or 'default'}"
    window, cpu = drive_with_faults(benchmark, room, swarm, faults, seconds)
    if restart.restarted is not None:
        room.extra.append(restart.restarted)
        cpu["redis (restarted)"] = round(restart.restarted.cpu_s(), 3)  # all of it in the window
    assert not faults.errors, faults.errors
    window.verdict = swarm.verify()
    pattern, back, down = counted_pattern("bus_lost"), bus_text("bus_back"), bus_text("bus_down")
    lost, counted, wrong, back_s, down_s = [], [], [], {}, {}
    for client in swarm.clients:
        verdict = swarm.verify([client.index])
        lost.append(verdict.lost)
        counted.append(counted_loss(client, pattern))
        if verdict.duplicates or verdict.out_of_order or verdict.unexpected:
            wrong.append(f"{client.name}: {verdict.problems()}")
        node = swarm.node_of(client.index)
        back_s.setdefault(node, []).append(
            seconds_between(first_notice(client, back), faults.done_ns.get("restarted"))
        )
        down_s.setdefault(node, []).append(
            seconds_between(first_notice(client, down), faults.done_ns.get("killed"))
        )
    told = zip(swarm.clients, lost, counted, strict=True)
    mismatched = [(c.name, n, m) for c, n, m in told if n != m]
    info = extra_info("cluster_redis_restart", room, clients, window, nodes=2)
    info.update(cpu_info(cpu, window.verdict.delivered))
    info.update(
        senders=FAULT_SENDERS,
        rate_per_s=FAULT_RATE_PER_S,
        bus_buffer=bus_buffer or None,
        killed_at_s=kill_at,
        restarted_at_s=back_at,
        outage_s=seconds_between(faults.done_ns.get("restarted"), faults.done_ns.get("killed")),
        lost_total=sum(lost),
        counted_total=sum(counted),
        clients_with_loss=sum(1 for n in lost if n),
        loss_mismatched=len(mismatched),
        loss_mismatches=mismatched[:5],
        reordered_or_duplicated=len(wrong),
        node_back_s=[worst(back_s[node]) for node in sorted(back_s)],
        node_first_back_s=[first(back_s[node]) for node in sorted(back_s)],
        node_down_s=[worst(down_s[node]) for node in sorted(down_s)],
        all_told_back=all(s is not None for times in back_s.values() for s in times),
    )
    benchmark.extra_info.update(info)
    assert not wrong, wrong[:5]
    assert not mismatched, f"loss and counted-gap notices differ: {mismatched[:5]}"
    assert info["all_told_back"], f"not every client was told the bus is back: {back_s}"


def killed(room, kill_it) -> None:
    """Read every process's CPU just before the kill (a dead one's stays at that), then kill."""
    room.cpu_by_process()
    kill_it()


def worst(times: list[float | None]) -> float | None:
    """The last client's time, None if any client never saw it."""
    return None if None in times else max(t for t in times if t is not None)


def first(times: list[float | None]) -> float | None:
    seen = [t for t in times if t is not None]
    return min(seen) if seen else None


@pytest.mark.timeout(300)
@pytest.mark.clients(full=(100,), quick=(10,))
def test_cluster_node_kill(benchmark, rooms, clients, quick):
    """Node 2 is SIGKILLed under paced load: node 1's clients lose nothing of node 1's own
    traffic, and a name of node 2's can be taken on node 1 again once its lease is out."""
    room = rooms(2, *QUIET_JOINS, *ROOM_ARGS)
    swarm = join(room_swarm(room), clients)
    seconds, kill_at = (2.0, 0.5) if quick else (5.0, 1.5)
    dead = room.nodes[1]
    probe = NameProbe(room.nodes[0].address, swarm.clients[1].name, NAME_PROBE_BOUND_S)
    steps = [(kill_at, "killed", lambda: killed(room, lambda: kill(dead)))]
    faults = Faults([*steps, (kill_at, "probing", probe.start)])
    benchmark.group = f"cluster node-kill clients={clients}"
    window, cpu = drive_with_faults(benchmark, room, swarm, faults, seconds)
    probe.join(NAME_PROBE_BOUND_S + 5.0)
    assert not faults.errors, faults.errors
    survivors = [c.index for c in swarm.clients if swarm.node_of(c.index) == 0]
    own = [i for i in range(FAULT_SENDERS) if swarm.node_of(i) == 0]
    window.verdict = swarm.verify(survivors, senders=own)
    info = extra_info("cluster_node_kill", room, clients, window, nodes=2)
    info.update(cpu_info(cpu, window.verdict.delivered))
    killed_ns = faults.done_ns.get("killed")
    info.update(
        senders=FAULT_SENDERS,
        rate_per_s=FAULT_RATE_PER_S,
        killed_at_s=kill_at,
        survivors=len(survivors),
        name_freed_s=seconds_between(probe.freed_ns, killed_ns),
        name_tries=probe.tries,
        lease_s=CLUSTER_LEASE_S,
    )
    benchmark.extra_info.update(info)
    assert window.verdict.ok, f"node 1's own traffic: {window.verdict.problems()}"
    assert probe.freed_ns is not None, f"{probe.name} still taken {NAME_PROBE_BOUND_S} s on"
