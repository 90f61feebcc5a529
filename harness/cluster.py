"""Several chat servers ("nodes") sharing one room over a real redis-server (docs/CLUSTER.md).

`start_cluster(2)` starts a Redis (harness/redis.py) and two `python -m chat.server --bus URL
--node-name nodeN` processes on free ports; `Cluster.stop()` stops every one of them by PID.
Shared by tests/test_cluster.py, bench/ and `make cluster`, which runs

    python -m harness.cluster --ports 5555,5556

until Ctrl-C or SIGTERM, then stops everything it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.process import ServerProcess, start_chat_server
from harness.redis import redis_url, start_redis


@dataclass
class Cluster:
    """A Redis and the chat nodes on it; `url` is the `--bus` URL they share."""

    redis: ServerProcess
    nodes: list[ServerProcess] = field(default_factory=list)
    url: str = ""
    owns_redis: bool = True  # started here, so stopped here

    def node_args(self, index: int) -> list[str]:
        """The bus options node `index` (from 1) was started with."""
        return ["--bus", self.url, "--node-name", f"node{index}"]

    def add_node(self, *server_args: str, port: int | None = None) -> ServerProcess:
        """Start one more node on the bus (`port`: where it listens; default a free one)."""
        args = [*self.node_args(len(self.nodes) + 1), *server_args]
        if port is not None:
            args += ["--port", str(port)]
        node = start_chat_server(*args)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        """Stop every node, then Redis (if started here), each by PID."""
        for node in self.nodes:
            node.stop()
        if self.owns_redis:
            self.redis.stop()


def start_cluster(
    nodes: int = 2,
    *server_args: str,
    redis: ServerProcess | None = None,
    ports: Sequence[int] | None = None,
) -> Cluster:
    """A Redis (or the one given, which stays running after stop()) and `nodes` chat servers
    on it, each started with `server_args` and listening on `ports` (default: free ones)."""
    owns = redis is None
    server = start_redis() if redis is None else redis
    cluster = Cluster(server, [], redis_url(server), owns)
    try:
        for index in range(nodes):
            cluster.add_node(*server_args, port=None if ports is None else ports[index])
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main(argv: Sequence[str] | None = None) -> int:
    """`make cluster`: a Redis and a node per port, until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.cluster",
        description="A local Redis and chat nodes sharing one room, until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--ports", default="5555,5556", help="one node per port, comma-separated")
    # Anything else is passed to every node: `--host 0.0.0.0`, `--lang ru`, ...
    args, server_args = parser.parse_known_args(argv)
    ports = [int(port) for port in args.ports.split(",") if port]
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    # chat.server binds 127.0.0.1 by default; --host 0.0.0.0 among server_args opens it up.
    cluster = start_cluster(len(ports), *server_args, ports=ports)
    try:
        redis = cluster.redis
        print(f"redis on {redis.host}:{redis.port} (pid {redis.pid}, --bus {cluster.url})")
        for index, node in enumerate(cluster.nodes, 1):
            print(f"node{index} on {node.host}:{node.port} (pid {node.pid})")
        print("try: nc 127.0.0.1 PORT in two terminals; Ctrl-C stops everything")
        sys.stdout.flush()
        while not done.wait(0.5):
            for node in cluster.nodes:
                if not node.alive():
                    print(f"a node on port {node.port} exited: {node.stderr_text[-500:]}")
                    return 1
    finally:
        cluster.stop()
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
