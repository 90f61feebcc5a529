"""One room over several server processes on a real redis-server (docs/CLUSTER.md).

Every server here is `python -m chat.server --bus URL --node-name nodeN` and every Redis the real
`redis-server` of harness/redis.py, each stopped by its PID (harness/cluster.py). Most tests share
one cluster (module fixture) with names of their own; the fault tests start their own.

tests/README.md maps each promise of docs/CLUSTER.md to its test here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import Peer, ServerProcess

from harness.cluster import Cluster, start_cluster
from harness.ports import free_port
from harness.process import start_chat_server
from harness.redis import start_redis

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


def test_a_burst_from_clients_on_both_nodes_arrives_exactly_once_in_each_senders_order(
    cluster: Cluster,
) -> None:
    import threading

    names = [f"burst{i}" for i in range(6)]
    peers = [Peer(cluster.nodes[i % 2].address, name, timeout_s=20) for i, name in enumerate(names)]
    for peer in peers:  # everyone has seen everyone join: nobody starts with a backlog
        peer.send("/who")
        peer.expect(lambda line: line.startswith("* online") and all(n in line for n in names))
    count = 100

    def burst(peer: Peer, name: str) -> None:
        for i in range(count):
            peer.send(f"{name}-{i}")

    senders = [threading.Thread(target=burst, args=pair) for pair in zip(peers, names, strict=True)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    for me, peer in zip(names, peers, strict=True):
        heard: dict[str, list[int]] = {}
        for _ in range(count * (len(names) - 1)):
            line = peer.expect(lambda line: line.startswith("burst"))
            sender, _, text = line.partition(": ")
            heard.setdefault(sender, []).append(int(text.rpartition("-")[2]))
        assert me not in heard
        assert heard == {name: list(range(count)) for name in names if name != me}
        assert not [line for line in peer.barrier() if line.startswith("burst")]
    for peer in peers:
        peer.close()


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


DOWN = (
    "* the link to the other servers is down: you are chatting with this server's users only; "
    "what you send reaches the others when it is back"
)
BACK = "* the link to the other servers is back"
BACK_WITHIN_S = 3.0  # the promise is about 2 s (reconnect backoff capped at 0.5 s); slack for CI


def restart_redis(nodes: Cluster) -> float:
    """Start Redis again where it was; returns when it accepts connections (monotonic)."""
    nodes.redis = start_redis(nodes.redis.port)
    return time.monotonic()


def wait_for_log(node: ServerProcess, text: str, timeout_s: float = 5.0) -> None:
    """The node's stderr is read by a thread of this process: give it a moment to catch up."""
    deadline = time.monotonic() + timeout_s
    while text not in node.stderr_text:
        assert time.monotonic() < deadline, node.stderr_text[-2000:]
        time.sleep(0.05)


def test_redis_restart_is_announced_and_nothing_is_lost() -> None:
    nodes = start_cluster(2)
    try:
        ann, ben = pair(nodes, "ann", "ben")
        amy = Peer(nodes.nodes[0].address, "amy")
        ben.expect_line("* amy joined the chat")
        nodes.redis.stop()
        for peer in (ann, ben, amy):
            peer.expect_line(DOWN, timeout_s=5)
        # The link is down: ann's own node still carries her words to amy at once.
        for i in range(10):
            ann.send(f"m{i}")
            amy.expect_line(f"ann: m{i}")
        ben.send("local only")
        # While it is down: no new names (uniqueness cannot be checked), /who says it is partial,
        # /msg to someone on another node says why it cannot reach them.
        newcomer = Peer(nodes.nodes[1].address)
        assert newcomer.join("cy") == (
            "! name refused: the link to the other servers is down, try again in a moment"
        )
        ben.send("/who")
        assert ben.expect(lambda line: line.startswith("* online")) == "* online (1): ben"
        ben.expect_line("* (the link to the other servers is down: this server's users only)")
        ben.send("/msg ann hello?")
        ben.expect_line(
            "! ann is not on this server and the link to the other servers is down, "
            "try again in a moment"
        )
        back_at = restart_redis(nodes)
        for peer in (ann, ben, amy):
            peer.expect_line(BACK, timeout_s=10)
            assert time.monotonic() - back_at < BACK_WITHIN_S
        # What was said during the outage follows, in order, exactly once, nothing announced lost.
        got = [ben.expect(lambda line: line.startswith("ann: ")) for _ in range(10)]
        assert got == [f"ann: m{i}" for i in range(10)]
        ann.expect_line("ben: local only")
        amy.expect_line("ben: local only")
        ann.send("after")
        ben.expect_line("ann: after")
        assert not [line for line in ben.barrier() if "lost" in line or line.startswith("ann:")]
        assert stats_of(ben)["bus_lost"] == 0
        # Names were taken again on the new Redis: a look-alike of a remote user is refused.
        late = Peer(nodes.nodes[1].address)
        assert late.join("ANN").startswith("! name refused: ANN is taken")
    finally:
        nodes.stop()


def test_messages_past_the_buffer_are_counted_exactly() -> None:
    nodes = start_cluster(2, "--bus-buffer", "5")
    try:
        ann, ben = pair(nodes, "ann", "ben")
        amy = Peer(nodes.nodes[0].address, "amy")
        ben.expect_line("* amy joined the chat")
        nodes.redis.stop()
        ann.expect_line(DOWN, timeout_s=5)
        ben.expect_line(DOWN, timeout_s=5)
        for i in range(20):  # each in a read of its own, so each is one event of node 1's
            ann.send(f"m{i}")
            amy.expect_line(f"ann: m{i}")
        restart_redis(nodes)
        ben.expect_line(BACK, timeout_s=10)
        notice = ben.expect(lambda line: line.startswith("* ") and "lost" in line)
        lost = int(notice.split()[1])
        got = [ben.expect(lambda line: line.startswith("ann: ")) for _ in range(20 - lost)]
        assert notice == f"* {lost} messages from other servers were lost"
        assert got == [f"ann: m{i}" for i in range(lost, 20)]  # the newest kept, in order
        assert lost == 15  # the buffer kept 5 events, one line each
        assert not [line for line in ben.barrier() if line.startswith("ann:")]
        assert stats_of(ben)["bus_lost"] == 15
        wait_for_log(nodes.nodes[1], "bus: 15 lines from node node1 were lost")
        wait_for_log(nodes.nodes[0], "bus: 15 events of this node's were dropped")
    finally:
        nodes.stop()


def test_a_killed_nodes_users_are_announced_gone_and_their_names_freed() -> None:
    lease_s = 3.0
    nodes = start_cluster(2, "--bus-lease", str(lease_s))
    try:
        ann, bob = pair(nodes, "ann", "bob")
        refused = Peer(nodes.nodes[0].address)
        assert refused.join("Bob").startswith("! name refused")
        nodes.nodes[1].proc.kill()
        killed_at = time.monotonic()
        ann.expect_line("* bob left the chat: server node2 stopped answering", timeout_s=15)
        assert time.monotonic() - killed_at < lease_s + 3.0  # the lease, a heartbeat, slack
        assert refused.join("Bob").startswith("* welcome, Bob!")
        ann.expect_line("* Bob joined the chat")
        ann.send("/who")
        assert ann.expect(lambda line: line.startswith("* online")) == "* online (2): ann, Bob"
        bob.close()
    finally:
        nodes.stop()


def test_redis_refusing_at_start_is_one_line_and_exit_one() -> None:
    guarded = start_redis(None, "--requirepass", "sesame")
    port = guarded.port
    try:
        for url in (f"redis://127.0.0.1:{port}/0", f"redis://:wrong@127.0.0.1:{port}/0"):
            done = subprocess.run(
                [sys.executable, "-m", "chat.server", "--port", "0", "--bus", url],
                capture_output=True,
                text=True,
                timeout=30,
            )
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1, done.stderr
            assert "cannot use the bus at 127.0.0.1" in lines[0]
            assert "wrong" not in lines[0]  # never the password
        node = start_chat_server("--bus", f"redis://:sesame@127.0.0.1:{port}/0")
        assert node.stop() == 0
        assert "joined the bus" in node.stderr_text and "sesame" not in node.stderr_text
    finally:
        guarded.stop()


def test_without_bus_nothing_of_it_is_imported() -> None:
    code = (
        "import sys\n"
        "from chat.config import Config\n"
        "from chat.server import ChatServer\n"
        "server = ChatServer(Config(port=0))\n"
        "server.bind()\n"
        "server.join_bus()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis' or m == 'chat.bus'))\n"
        "print(server.bus)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.split("\n")[:2] == ["[]", "None"], done.stderr


def test_a_node_stalled_past_its_lease_is_buried_then_rejoins_with_its_users() -> None:
    lease_s = 3.0
    nodes = start_cluster(2, "--bus-lease", str(lease_s))
    stalled = nodes.nodes[1]
    try:
        ann, bob = pair(nodes, "ann", "bob")
        stalled.proc.send_signal(signal.SIGSTOP)  # alive, but silent on the bus
        try:
            ann.expect_line("* bob left the chat: server node2 stopped answering", timeout_s=15)
        finally:
            stalled.proc.send_signal(signal.SIGCONT)
        # Back: it finds its lease gone, takes its users' names again and says they are here.
        ann.expect_line("* bob joined the chat", timeout_s=10)
        bob.expect_line(DOWN, timeout_s=5)
        bob.expect_line(BACK, timeout_s=5)
        bob.send("still here")
        ann.expect_line("bob: still here")
        taken = Peer(nodes.nodes[0].address)
        assert taken.join("bob").startswith("! name refused: bob is taken")
    finally:
        nodes.stop()


def test_make_cluster_runs_until_sigterm_then_stops_every_process() -> None:
    ports = f"{free_port()},{free_port()}"
    cmd = [sys.executable, "-m", "harness.cluster", "--ports", ports, "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if line.startswith("try:"):
                break
        pids += [int(pid) for pid in re.findall(r"pid (\d+)", "".join(printed))]
        assert len(pids) == 3, printed  # Redis and two nodes
        first, second = (int(port) for port in ports.split(","))
        ann, bob = Peer(("127.0.0.1", first), "ann"), Peer(("127.0.0.1", second), "bob")
        ann.expect_line("* bob joined the chat")
        bob.send("hi")
        ann.expect_line("bob: hi")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}"), f"process {pid} left running"
    finally:  # whatever failed: the harness stops its children, or they are stopped here
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in pids:
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)
