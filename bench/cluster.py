"""The cluster dimension's plumbing: one node or several on Redis, their CPU, a drive over them.

`started_rooms(nodes, *args)` gives a `Room`: with one node, the default chat server alone (no
bus: what the bus is compared with); with more, a local redis-server and that many nodes sharing
one room over it (harness.cluster, the bus's own launcher). Either way every process is stopped
by PID afterwards. A `Room` reads the CPU of each of its processes (a killed one keeps its last
reading), so a window can say what each node and Redis spent per delivery.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench.measure import IDLE_TIMEOUT_S, Window, drive_once
from bench.servers import chat_args, start_server
from bench.swarm import SenderPlan, Swarm
from harness import ServerProcess


@dataclass
class Room:
    """One room served by `nodes` (and `redis` when there are several nodes)."""

    nodes: list[ServerProcess]
    redis: ServerProcess | None = None
    cluster: object | None = None  # harness.cluster's Cluster, when there is one
    extra: list[ServerProcess] = field(default_factory=list)  # started later (a Redis restart)
    last_cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "threaded"  # every node is the default chat server

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    def processes(self) -> dict[str, ServerProcess]:
        """Each process of the room by label: `node 1`, `node 2`, ..., `redis`."""
        found = {f"node {i}": node for i, node in enumerate(self.nodes, 1)}
        if self.redis is not None:
            found["redis"] = self.redis
        return found

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds so far of each process (a dead one: its last reading)."""
        for label, process in self.processes().items():
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.last_cpu_s[label] = process.cpu_s()
        return dict(self.last_cpu_s)

    def cpu_s(self) -> float:
        """All the room's processes together: what `drive_once` charges the window."""
        return sum(self.cpu_by_process().values())


@contextlib.contextmanager
def started_rooms() -> Iterator[Callable[..., Room]]:
    """`start(nodes, *args)` starts a room; all stopped by PID on the way out."""
    rooms: list[Room] = []

    def start(nodes: int, *args: str) -> Room:
        room = start_room(nodes, *args)
        rooms.append(room)
        return room

    try:
        yield start
    finally:
        for room in rooms:
            stop_room(room)


def start_room(nodes: int, *args: str) -> Room:
    """One default chat server (no bus), or a local Redis and `nodes` of them on it."""
    if nodes == 1:
        return Room([start_server("threaded", *args)])
    from harness.cluster import start_cluster  # noqa: PLC0415 (the bus's launcher)

    cluster = start_cluster(nodes, "--quiet", *chat_args(), *args)
    return Room(list(cluster.nodes), cluster.redis, cluster)


def stop_room(room: Room) -> None:
    if room.cluster is not None:
        room.cluster.stop()  # type: ignore[attr-defined]
    for process in [*room.nodes, *([room.redis] if room.redis else []), *room.extra]:
        process.stop()  # a no-op for what the cluster stopped; a restarted Redis is stopped here


def room_swarm(room: Room, prefix: str = "c") -> Swarm:
    """A swarm of the room: client i on node i mod n (clients split evenly)."""
    return Swarm(room.addresses, prefix)


def drive_room(
    window: Window,
    room: Room,
    swarm: Swarm,
    plans: list[SenderPlan],
    timeout_s: float,
    poll_interval_s: float = 0.0,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> dict[str, float]:
    """One drive over the whole room (its CPU is every node's and Redis's); returns each
    process's CPU seconds over the drive."""
    before = room.cpu_by_process()
    drive_once(window, room, swarm, plans, timeout_s, poll_interval_s, idle_timeout_s)
    after = room.cpu_by_process()
    return {label: round(after[label] - before.get(label, 0.0), 3) for label in after}


def cpu_info(cpu: dict[str, float], delivered: int) -> dict:
    """Per process CPU over the window, and per million deliveries (the room's whole work)."""
    millions = delivered / 1e6
    per_million = {
        label: round(seconds / millions, 3) if millions else None for label, seconds in cpu.items()
    }
    return {"process_cpu_s": cpu, "process_cpu_s_per_million": per_million}
