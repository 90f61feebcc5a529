"""The bench swarm over several addresses (a cluster's nodes) and across swarms (processes).

Without a cluster: one plain server given twice is two "nodes" that share a room, so the
plumbing (the even split, the check across addresses, lines from another swarm's senders) is
tested through real sockets without Redis.
"""

from __future__ import annotations

from bench.swarm import SenderPlan, Swarm
from harness import ServerProcess

QUIET = 5.0


def test_clients_are_split_evenly_over_the_addresses_and_every_line_is_checked(
    server_process: ServerProcess,
) -> None:
    twice = [server_process.address, server_process.address]
    swarm = Swarm(twice, prefix="split")
    try:
        swarm.connect(6, timeout_s=QUIET)
        swarm.settle()
        assert [swarm.node_of(c.index) for c in swarm.clients] == [0, 1, 0, 1, 0, 1]
        swarm.begin_window()
        report = swarm.drive([SenderPlan(0, 5), SenderPlan(1, 5)], timeout_s=QUIET)
        verdict = swarm.verify()
        assert not report.timed_out
        assert verdict.ok and verdict.expected == verdict.delivered == 2 * 5 * 5
        # Only one node's own senders: the other's lines are left out, neither lost nor unexpected.
        own = swarm.verify(senders=[0])
        assert own.ok and own.expected == 5 * 5
    finally:
        swarm.close()


def test_lines_from_another_swarm_are_waited_for_and_checked(
    server_process: ServerProcess,
) -> None:
    sending, listening = Swarm(server_process.address, "a"), Swarm(server_process.address, "b")
    try:
        for swarm in (sending, listening):
            swarm.connect(3, timeout_s=QUIET)
        sending.settle()
        listening.settle()
        sending.begin_window()
        listening.begin_window()
        listening.expect_from(sending.clients[0].name, 4)
        sending.drive([SenderPlan(0, 4)], timeout_s=QUIET)
        report = listening.drive([], timeout_s=QUIET)
        verdict = listening.verify()
        assert not report.timed_out
        assert verdict.ok and verdict.delivered == 3 * 4
        assert sending.verify().delivered == 2 * 4
    finally:
        sending.close()
        listening.close()
