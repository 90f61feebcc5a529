"""The cluster dimension: the same cases against one node and against two nodes on Redis, side by
side in one run, clients split evenly, every delivery checked. What the bus costs (latency, CPU
per delivery on each node and in Redis) and what it buys (clients in one room: 20,000 over two
nodes, a swarm process per node). The fault cases are in bench/test_cluster_faults.py;
bench/report_cluster.py puts the pairs side by side and judges the targets (bench/targets.py).
"""

from __future__ import annotations

import time

import pytest

from bench.cluster import cpu_info, drive_room, room_swarm
from bench.cluster_faults import SERVER_LANG
from bench.measure import QUIET_JOINS, Window, assert_delivered, extra_info, finish, join
from bench.swarm import SenderPlan
from bench.swarm_procs import SwarmProcess
from bench.targets import CLUSTER_CLIENTS
from bench.test_latency import PACED_RATE_PER_S, PACED_SECONDS
from bench.test_throughput import (
    BURST_CLIENTS,
    BURST_MESSAGES,
    BURST_SIZE,
    POLL_INTERVAL_S,
    QUICK_MESSAGES,
    TIMEOUT_S,
)
from harness.latency import histogram_of, summary_ms

NODES = pytest.mark.parametrize("nodes", [1, 2], ids=["1-node", "2-nodes"])
ROOM_ARGS = ("--lang", SERVER_LANG)
JOIN_TIMEOUT_S = 120.0


def side_latency(swarm, indices: list[int], prefix: str) -> dict:
    """p50/p99 (corrected) of the deliveries to these receivers only."""
    summary = summary_ms(histogram_of(swarm.verify(indices).corrected_ns))
    return {f"{prefix}_p50_ms": summary["p50"], f"{prefix}_p99_ms": summary["p99"]}


@pytest.mark.timeout(240)
@pytest.mark.clients(full=(500,), quick=(10,))
@NODES
def test_cluster_paced(benchmark, rooms, clients, nodes, quick):
    """One sender at 100 msg/s, as test_paced_latency, to clients split over the nodes: the
    latency the bus adds, and each process's CPU per delivery."""
    room = rooms(nodes, *QUIET_JOINS, *ROOM_ARGS)
    swarm = join(room_swarm(room), clients)
    seconds = 0.3 if quick else PACED_SECONDS
    plan = SenderPlan(0, int(PACED_RATE_PER_S * seconds), rate_per_s=PACED_RATE_PER_S)
    window = Window()
    swarm.begin_window()
    cpu: dict[str, float] = {}
    benchmark.group = f"cluster paced clients={clients}"
    benchmark.pedantic(
        lambda: cpu.update(drive_room(window, room, swarm, [plan], timeout_s=seconds + 30.0)),
        rounds=1,
        iterations=1,
    )
    verdict = finish(window, swarm)
    info = extra_info("cluster_paced", room, clients, window, rate_per_s=PACED_RATE_PER_S)
    receivers = range(1, clients)
    info.update(side_latency(swarm, [i for i in receivers if swarm.node_of(i) == 0], "local"))
    info.update(side_latency(swarm, [i for i in receivers if swarm.node_of(i) != 0], "remote"))
    info.update(cpu_info(cpu, verdict.delivered), nodes=nodes)
    benchmark.extra_info.update(info)
    assert_delivered(window)


@pytest.mark.timeout(300)
@pytest.mark.clients(full=(BURST_CLIENTS,), quick=(10,))
@NODES
def test_cluster_burst(benchmark, rooms, clients, nodes, quick):
    """Every client sends 200 messages at once, as test_burst_all_senders, split over the
    nodes: exactly once and in each sender's order across the bus, and the throughput."""
    room = rooms(nodes, *QUIET_JOINS, *ROOM_ARGS)
    swarm = join(room_swarm(room), clients)
    messages = QUICK_MESSAGES if quick else BURST_MESSAGES
    plans = [SenderPlan(i, messages, size=BURST_SIZE) for i in range(clients)]
    window = Window()
    swarm.begin_window()
    cpu: dict[str, float] = {}
    benchmark.group = f"cluster burst clients={clients}"
    benchmark.pedantic(
        lambda: cpu.update(drive_room(window, room, swarm, plans, TIMEOUT_S, POLL_INTERVAL_S)),
        rounds=1,
        iterations=1,
    )
    verdict = finish(window, swarm)
    info = extra_info(
        "cluster_burst", room, clients, window, senders=clients, messages=messages, nodes=nodes
    )
    info.update(cpu_info(cpu, verdict.delivered))
    benchmark.extra_info.update(info)
    assert_delivered(window)


@pytest.mark.timeout(900)
@NODES
def test_cluster_capacity(benchmark, rooms, nodes, quick):
    """10,000 clients per node join one room (20,000 over two nodes), from one swarm process
    per node (a process holds at most 20,000 files here); then one broadcast reaches them all."""
    per_node = 10 if quick else CLUSTER_CLIENTS // 2
    clients = per_node * nodes
    room = rooms(nodes, "--max-clients", str(per_node + 100), *ROOM_ARGS)
    swarms = [SwarmProcess(address, f"n{i}-") for i, address in enumerate(room.addresses)]
    try:
        benchmark.group = f"cluster capacity clients={clients}"
        joined = benchmark.pedantic(lambda: join_all(swarms, per_node), rounds=1, iterations=1)
        sender = joined["names"][0][0]
        for i, swarm in enumerate(swarms):
            swarm.ask("window", foreign={sender: 1} if i else {})
        for swarm in swarms:
            swarm.answer(JOIN_TIMEOUT_S)
        cpu0 = room.cpu_by_process()
        for i, swarm in reversed(list(enumerate(swarms))):  # the listeners first
            swarm.ask("drive", plans=[(0, 1)] if i == 0 else [], timeout_s=60.0)
        results = [swarm.answer(60.0) for swarm in swarms]
        cpu1 = room.cpu_by_process()
    finally:
        for swarm in swarms:
            swarm.close()
    counts = {k: sum(r["verdict"][k] for r in results) for k in results[0]["verdict"]}
    latencies = summary_ms(histogram_of([ns for r in results for ns in r["latencies_ns"]]))
    benchmark.extra_info.update(
        {
            "case": "cluster_capacity",
            "server": room.label,
            "clients": clients,
            "nodes": nodes,
            **counts,
            "timed_out": any(r["timed_out"] for r in results),
            "connect_s": round(joined["connect_s"], 3),
            "connect_s_per_node": [round(s, 3) for s in joined["per_node_s"]],
            "connect_driver_cpu_s": [round(s, 3) for s in joined["driver_cpu_s"]],
            "broadcast_ms": round(max(r["wall_s"] for r in results) * 1e3, 3),
            "p50_ms": latencies["p50"],
            "p99_ms": latencies["p99"],
            "max_ms": latencies["max"],
            "process_cpu_s": {k: round(cpu1[k] - cpu0.get(k, 0.0), 3) for k in cpu1},
            "node_threads": [node.threads() for node in room.nodes],
            "node_rss_mib": [round(node.rss_bytes() / 2**20, 1) for node in room.nodes],
        }
    )
    bad = {k: v for k, v in counts.items() if k not in ("expected", "delivered") and v}
    assert not bad and counts["delivered"] == clients - 1, f"broadcast: {counts}"


def join_all(swarms: list[SwarmProcess], per_node: int) -> dict:
    """Every swarm process joins its clients at once; the time until the last one is in."""
    start = time.monotonic()
    for swarm in swarms:
        swarm.ask("connect", count=per_node, timeout_s=JOIN_TIMEOUT_S)
    answers = []
    for swarm in swarms:
        answers.append(swarm.answer(JOIN_TIMEOUT_S))
    # Joined means welcomed; the notices' settling after it is not part of the join.
    return {
        "connect_s": max(a["connect_s"] for a in answers),
        "wall_s": time.monotonic() - start,
        "per_node_s": [a["connect_s"] for a in answers],
        "driver_cpu_s": [a["driver_cpu_s"] for a in answers],
        "names": [a["names"] for a in answers],
    }
