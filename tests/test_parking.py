"""Quiet readers park (chat/parking.py): after PARK_AFTER_S without a byte from its client, a
session thread waits for one reaper instead of sitting in recv, so a mass disconnect wakes one
thread instead of thousands. Nothing a client relies on may change: a parked client that speaks
is heard, one that leaves is announced and forgotten, one past its handshake deadline is cut,
and one still there at SIGTERM gets the goodbye. Real sockets on 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from conftest import Peer, room, running, start_server

from chat.parking import PARK_AFTER_S
from chat.protocol import stats_reply

PARKED_S = PARK_AFTER_S + 0.4  # long enough to be parked for sure
CROWD = 200
SETTLE_S = 15.0


def stats_of(peer: Peer) -> dict[str, float]:
    peer.send("/stats")
    reply = stats_reply(peer.expect(lambda line: stats_reply(line) is not None))
    assert reply is not None
    return reply


def eventually(check, timeout_s: float = SETTLE_S):
    """Poll `check` (bounded in time) until it returns something true; return that, or the last
    falsy value once the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_a_parked_client_that_speaks_again_is_heard(server):
    alice, bob = room(server, "alice", "bob")
    time.sleep(PARKED_S)
    bob.send("back again")
    assert alice.expect_line("bob: back again")
    alice.send("welcome back")  # and its outbox still works while it was parked
    assert bob.expect_line("alice: welcome back")


def test_a_line_split_across_a_long_pause_arrives_whole(server):
    alice, bob = room(server, "alice", "bob")
    bob.send_raw("привет, ".encode()[:-3])  # half a line, cut inside a character
    time.sleep(PARKED_S)
    bob.send_raw("привет, ".encode()[-3:] + b"world\n")
    assert alice.expect_line("bob: привет, world")
    assert alice.barrier() == []  # once, whole, and nothing else


def test_a_parked_client_that_leaves_is_announced_and_forgotten(server):
    alice, bob = room(server, "alice", "bob")
    time.sleep(PARKED_S)
    bob.close()
    assert alice.expect_line("* bob left the chat.")
    assert eventually(lambda: stats_of(alice)["connections"] == 1)
    assert alice.barrier() == []


def test_a_parked_nameless_connection_is_still_cut_at_its_deadline():
    with running(handshake_timeout=1.5) as server:
        started = time.monotonic()
        silent = Peer(server.address)
        assert silent.wait_closed(5.0) == ["! no name received within 1.5 s, closing"]
        assert time.monotonic() - started < 1.5 + 1.0


def _crowd(address: tuple[str, int], count: int) -> list[socket.socket]:
    crowd = []
    for index in range(count):
        sock = socket.create_connection(address, timeout=5.0)
        sock.sendall(f"crowd{index}\n".encode())
        crowd.append(sock)
    return crowd


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def test_a_crowd_of_parked_clients_leaving_at_once_all_end_while_others_talk():
    """200 parked clients vanish together: everyone still there keeps chatting, all 200 are
    forgotten, and their threads are really gone (the reaper lets them out a few at a time)."""
    server = start_server("--quiet")
    try:
        alice = Peer(server.address, "alice")
        bob = Peer(server.address, "bob")
        baseline = _threads(server.proc.pid)
        crowd = _crowd(server.address, CROWD)
        assert eventually(lambda: stats_of(alice)["clients"] == CROWD + 2)
        time.sleep(PARKED_S)
        for sock in crowd:
            sock.close()
        alice.send("still here?")
        assert bob.expect(lambda line: line == "alice: still here?", 10.0)
        assert eventually(lambda: stats_of(bob)["connections"] == 2)
        assert eventually(lambda: _threads(server.proc.pid) <= baseline)
        bob.send("yes")
        assert alice.expect(lambda line: line == "bob: yes", 10.0)
    finally:
        server.stop()
    assert "Traceback" not in server.stderr_text


def test_sigterm_with_parked_clients_says_goodbye_to_each_and_exits_in_time():
    server = start_server("--quiet")
    try:
        peers = [Peer(server.address, f"p{index}") for index in range(20)]
        assert eventually(lambda: stats_of(peers[0])["clients"] == 20)
        time.sleep(PARKED_S)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(5) == 0
        assert time.monotonic() - started < 2.0
        for peer in peers:
            assert peer.wait_closed()[-1:] == ["* server is shutting down, goodbye"]
    finally:
        server.stop()
    assert "Traceback" not in server.stderr_text
