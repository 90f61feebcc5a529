"""The server(s) a `make loadtest` run loads: one chat server, or a cluster it starts itself.

`start_servers` starts either one `python -m chat.server` on a free port, or (`nodes` > 0) a
local redis-server and that many nodes sharing one room over it (harness.cluster), and returns
them as `ServersUnderTest`: where Locust connects (`--host` or `--chat-hosts`), what each process
used while the test ran, and one stop for all of them, by PID.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness import ServerProcess, start_chat_server
from loadtest.cpu_use import cpu_use_pct

SERVER_START_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 5.0
SAMPLE_EVERY_S = 0.5


@dataclass
class ServerUnderTest:
    """A `python -m chat.server` child (or a cluster's node, or its redis-server), started by the
    harness, and what it used while the test ran."""

    process: ServerProcess
    label: str = "chat server"
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def host(self) -> str:
        return self.process.host

    @property
    def port(self) -> int:
        return self.process.port

    def watch(self) -> None:
        """Sample CPU time, threads and memory in the background until usage() is called."""
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):  # the server is gone: its samples end there
            process = psutil.Process(self.pid)
            while not self._stop.is_set():
                with process.oneshot():
                    cpu = process.cpu_times()
                    self.samples.append(
                        (
                            time.monotonic(),
                            cpu.user + cpu.system,
                            process.num_threads(),
                            process.memory_info().rss,
                        )
                    )
                self._stop.wait(SAMPLE_EVERY_S)

    def usage(self) -> dict | None:
        """CPU (average and busiest second), peak threads and peak RSS over the samples."""
        self._stop.set()
        time.sleep(SAMPLE_EVERY_S)
        if len(self.samples) < 2:
            return None
        (t0, c0, _, _), (t1, c1, _, _) = self.samples[0], self.samples[-1]
        average, busiest = cpu_use_pct([(t, c) for t, c, _, _ in self.samples], window_s=1.0)
        return {
            "pid": self.pid,
            "wall_s": round(t1 - t0, 1),
            "cpu_s": round(c1 - c0, 2),
            "cpu_avg_pct": average,
            "cpu_peak_1s_pct": busiest,
            "threads_peak": max(s[2] for s in self.samples),
            "rss_peak_mb": round(max(s[3] for s in self.samples) / 2**20, 1),
        }

    def stop_watching(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it does not go."""
        self.stop_watching()
        self.process.stop(SERVER_STOP_TIMEOUT_S)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def start_server(extra_args: list[str], log_path: Path) -> ServerUnderTest:
    """Start the server on 127.0.0.1 and a free port; wait for its `listening on` line. Its log
    goes to `log_path`."""
    process = start_chat_server(
        "--quiet", *extra_args, log_path=log_path, timeout_s=SERVER_START_TIMEOUT_S
    )
    return ServerUnderTest(process)


@dataclass
class ServersUnderTest:
    """What a run loads: one server, or a cluster's nodes (and its Redis, watched too)."""

    nodes: list[ServerUnderTest]
    others: list[ServerUnderTest] = field(default_factory=list)  # the cluster's redis-server
    stop_all: list[Callable[[], None]] = field(
        default_factory=list
    )  # how to stop what was started, in order

    @property
    def clustered(self) -> bool:
        return bool(self.others)

    def locust_target(self) -> list[str]:
        """Where Locust's users connect: `--host`, or `--chat-hosts` over every node."""
        if not self.clustered:
            return ["--host", self.nodes[0].address]
        return ["--chat-hosts", ",".join(node.address for node in self.nodes)]

    def describe(self) -> str:
        return "; ".join(
            f"{s.label} pid {s.pid} on {s.host}:{s.port}" for s in [*self.nodes, *self.others]
        )

    def watch(self) -> None:
        for server in [*self.nodes, *self.others]:
            server.watch()

    def usage(self) -> dict[str, dict | None]:
        """Each process's use over the test, by label."""
        return {server.label: server.usage() for server in [*self.nodes, *self.others]}

    def stop(self) -> None:
        for stop in self.stop_all:
            stop()


def start_servers(nodes: int, extra_args: list[str], prefix: Path) -> ServersUnderTest:
    """One chat server (`nodes` 0) logging to PREFIX_server.log, or a local Redis and `nodes`
    chat servers on it, each logging to PREFIX_node-N.log."""
    if not nodes:
        server = start_server(extra_args, Path(f"{prefix}_server.log"))
        return ServersUnderTest([server], stop_all=[server.stop])
    from harness.cluster import start_cluster  # noqa: PLC0415 (only clustered runs need it)

    cluster = start_cluster(nodes, "--quiet", *extra_args)
    members = [ServerUnderTest(node, f"node {i}") for i, node in enumerate(cluster.nodes, 1)]
    redis = ServerUnderTest(cluster.redis, "redis")

    def stop() -> None:
        for server in [*members, redis]:
            server.stop_watching()
        cluster.stop()
        for i, node in enumerate(cluster.nodes, 1):
            Path(f"{prefix}_node-{i}.log").write_text(node.stderr_text)

    return ServersUnderTest(members, [redis], [stop])
