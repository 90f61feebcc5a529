"""One room over several server processes on a real redis-server (docs/CLUSTER.md).

Every server here is `python -m chat.server --bus URL --node-name nodeN` and every Redis the real
`redis-server` of harness/redis.py, each stopped by its PID (harness/cluster.py). Most tests share
one cluster (module fixture) with names of their own; the fault tests start their own.

tests/README.md maps each promise of docs/CLUSTER.md to its test here.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import Peer

from harness.cluster import Cluster, start_cluster
from harness.ports import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = start_cluster(2)
    try:
        yield started
    finally:
        started.stop()


def pair(cluster: Cluster, a: str, b: str) -> tuple[Peer, Peer]:
    """`a` on node 1, then `b` on node 2; `a` has seen `b` join."""
    first = Peer(cluster.nodes[0].address, a)
    second = Peer(cluster.nodes[1].address, b)
    first.expect_line(f"* {b} joined the chat")
    return first, second


def test_clients_on_two_nodes_chat_both_ways_in_order_exactly_once(cluster: Cluster) -> None:
    ann, ben = pair(cluster, "ann", "ben")
    for i in range(50):
        ann.send(f"a{i}")
        ben.send(f"b{i}")
    got_ben = [ben.expect(lambda line: line.startswith("ann: ")) for _ in range(50)]
    got_ann = [ann.expect(lambda line: line.startswith("ben: ")) for _ in range(50)]
    assert got_ben == [f"ann: a{i}" for i in range(50)]
    assert got_ann == [f"ben: b{i}" for i in range(50)]
    # Exactly once: nothing more of the other's arrives, and nothing comes back to its sender.
    ann.send("last")
    ben.expect_line("ann: last")
    ben.send("last")
    ann.expect_line("ben: last")
    assert [line for line in ann.barrier() if line.startswith(("ann:", "ben:"))] == []
    assert [line for line in ben.barrier() if line.startswith(("ann:", "ben:"))] == []
    ann.close()
    ben.close()


def test_join_rename_and_leave_notices_reach_the_other_node(cluster: Cluster) -> None:
    cid, dan = pair(cluster, "cid", "dan")
    cid.send("/nick cyd")
    dan.expect_line("* cid is now known as cyd")
    cid.send("/quit")
    dan.expect_line("* cyd left the chat.")
    dan.send("leave")
    dan.wait_closed()


def test_a_name_or_its_lookalike_held_on_another_node_is_refused(cluster: Cluster) -> None:
    eve, _fay = pair(cluster, "eve", "fay")
    for lookalike in ("EVE", "Eve", "еve"):  # the last one's first letter is Cyrillic
        other = Peer(cluster.nodes[1].address)
        assert other.join(lookalike) == f"! name refused: {lookalike} is taken, try another"
        other.close()
    late = Peer(cluster.nodes[1].address, "gus")
    late.send("/nick FAY")
    assert late.expect(lambda line: line.startswith("!")) == (
        "! name refused: FAY is taken, try another"
    )
    eve.close()


def test_who_lists_everyone_and_msg_reaches_the_other_node(cluster: Cluster) -> None:
    hal, ida = pair(cluster, "hal", "ida")
    hal.send("/who")
    who = hal.expect(lambda line: line.startswith("* online"))
    assert "hal" in who and "ida" in who
    hal.send("/msg IDA psst")
    ida.expect_line("hal (private): psst")
    ida.send("/msg nobody-here x")
    ida.expect_line("! no such user: nobody-here")
    hal.close()
    ida.close()


def test_stats_shows_this_nodes_counters_and_the_cluster_totals(cluster: Cluster) -> None:
    jon, kim = pair(cluster, "jon", "kim")
    jon.send("one")
    kim.expect_line("jon: one")
    deadline = time.monotonic() + 10
    while True:
        stats = stats_of(jon)
        if stats["cluster_clients"] >= 2 and stats["cluster_nodes"] == 2:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)
    assert stats["bus_up"] == 1
    assert stats["clients"] >= 1 and stats["cluster_clients"] >= stats["clients"] + 1
    jon.close()
    kim.close()


def stats_of(peer: Peer) -> dict[str, float]:
    from chat.protocol import stats_reply

    peer.send("/stats")
    line = peer.expect(lambda line: stats_reply(line) is not None)
    reply = stats_reply(line)
    assert reply is not None
    return reply


def test_redis_absent_at_start_is_one_line_and_exit_one() -> None:
    port = free_port()  # nobody listens there
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chat.server",
            "--port",
            "0",
            "--bus",
            f"redis://127.0.0.1:{port}/0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "cannot use the bus at 127.0.0.1" in lines[0] and "Traceback" not in done.stderr


def test_sigterm_leaves_the_bus_and_exits_within_two_seconds() -> None:
    nodes = start_cluster(2)
    try:
        lea, max_ = pair(nodes, "lea", "max")
        started = time.monotonic()
        nodes.nodes[1].proc.send_signal(signal.SIGTERM)
        assert nodes.nodes[1].proc.wait(5) == 0
        assert time.monotonic() - started < 2.0
        lea.expect_line("* max left the chat.")
        # With Redis gone too, a node still stops within 2 s.
        nodes.redis.stop()
        lea.expect_line(
            "* the link to the other servers is down: you are chatting with this server's "
            "users only; what you send reaches the others when it is back"
        )
        started = time.monotonic()
        nodes.nodes[0].proc.send_signal(signal.SIGTERM)
        assert nodes.nodes[0].proc.wait(5) == 0
        assert time.monotonic() - started < 2.0
        assert "Traceback" not in nodes.nodes[0].stderr_text + nodes.nodes[1].stderr_text
        max_.close()
    finally:
        nodes.stop()
