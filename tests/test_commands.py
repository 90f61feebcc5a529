"""The server's commands after the name: /who, /msg, /nick, /help, /stats, leave and /quit.

Real sockets on 127.0.0.1, the server in-process on port 0 (fixtures in tests/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from conftest import Peer, room, running

from chat.protocol import parse_server_line, parse_stats


def test_who_lists_everyone_online(server):
    alice, _bob, _carol = room(server, "alice", "Bob", "carol")  # all three stay connected
    alice.send("/who")
    alice.expect_line("* online (3): alice, Bob, carol")
    alice.send("/WHO")  # commands ignore case
    alice.expect_line("* online (3): alice, Bob, carol")


def test_who_splits_a_long_list_into_lines_of_about_a_thousand_bytes():
    # 40 names of 32 characters, 62 bytes each in UTF-8: about 2,600 bytes in all.
    names = sorted(f"{i:02}" + "ж" * 30 for i in range(40))
    with running(notice_limit=0) as srv:
        peers = [Peer(srv.address, name) for name in names]
        peers[0].send("/who")
        first = peers[0].expect(lambda line: line.startswith("* online ("))  # after notices_off
        assert first.startswith("* online (40): ")
        lines = [first, *peers[0].barrier()]  # the rest of the reply, and nothing else
        assert len(lines) == 3
        assert all(line.startswith("* ") and len(line.encode()) <= 1000 for line in lines)
        listed = ", ".join(line[2:] for line in lines)[len("online (40): ") :].split(", ")
        assert listed == names


def test_private_message_reaches_only_its_target(server):
    alice, bob, carol = room(server, "alice", "bob", "carol")
    alice.send("/msg BOB psst, secret")
    bob.expect_line("alice (private): psst, secret")
    alice.send("/msg nobody hi")
    alice.expect_line("! no such user: nobody")
    alice.send("/msg bob")
    alice.expect_line("! usage: /msg NAME text")
    assert carol.barrier() == []  # bob had it before carol asked: it would be queued by now
    assert alice.barrier() == [] and bob.barrier() == []


def test_nick_renames_and_tells_the_others(server):
    alice, bob = room(server, "alice", "bob")
    bob.send("/nick robert")
    bob.expect_line("* you are now robert")
    alice.expect_line("* bob is now known as robert")
    bob.send("/nick ALICE")
    bob.expect(lambda line: line.startswith("! name refused: ALICE is taken"))
    bob.send("/nick bad name")
    assert bob.expect(lambda _: True) == (
        "! name refused: bad name has characters other than letters, digits, _ - ."
    )
    bob.send("/nick " + "r" * 33)
    assert bob.expect(lambda _: True).startswith("! name refused: longer than 32")
    bob.send("/nick")
    assert bob.expect(lambda _: True) == "! usage: /nick NEWNAME"
    assert alice.barrier() == []  # refused renames are not announced
    bob.send("hi")
    alice.expect_line("robert: hi")
    assert Peer(server.address).join("bob").startswith("* welcome")  # the old name is free


def test_help_lists_the_commands_and_the_notice_limit(queued):
    (alice,) = room(queued, "alice")
    alice.send("/help")
    lines = alice.collect()
    text = "\n".join(lines)
    for command in ("/msg", "/who", "/nick", "/stats", "/help", "/quit", "leave", "//"):
        assert command in text
    assert "1000" in text
    assert all(line.startswith("* ") for line in lines)


def test_stats_counts_messages_and_deliveries(server):
    alice, bob, carol = room(server, "alice", "bob", "carol")
    started = time.monotonic()
    stranger = Peer(server.address)  # connected, no name yet: a connection but not a client
    alice.send("one")
    alice.send("two")
    bob.expect_line("alice: two")
    carol.expect_line("alice: two")
    alice.send("/stats")
    line = alice.expect(lambda x: x.startswith("* stats:"))
    stats = parse_stats(parse_server_line(line).text)
    assert list(stats) == [
        "clients", "connections", "messages_in", "bytes_in", "deliveries_out", "bytes_out",
        "slow_consumers", "throttled", "rested", "queued_bytes", "stalled_clients", "evicted",
        "cut_hard_limit", "cut_write_deadline", "uptime_s",
    ]  # fmt: skip
    assert stats["clients"] == 3
    assert stats["connections"] == 4
    assert stats["messages_in"] == 2
    assert stats["deliveries_out"] == 4
    assert stats["slow_consumers"] == 0
    assert stats["throttled"] == 0
    assert stats["rested"] == 0  # a few lines never keep a reader busy for its slice
    for counter in ("stalled_clients", "evicted", "cut_hard_limit", "cut_write_deadline"):
        assert stats[counter] == 0, counter
    assert settled(lambda: server.stats()["queued_bytes"]) == 0  # freed as each send returns
    # Every byte every client sent: names, two messages and the /stats line itself.
    assert stats["bytes_in"] == len(b"alice\nbob\ncarol\none\ntwo\n/stats\n")
    # Every byte the server sent before this reply: each peer has read all of it.
    peers = (alice, bob, carol, stranger)
    sent_before = sum(p.received_bytes for p in peers) - len(line.encode()) - 1
    # A writer counts a send once it returns, a moment after the peer may have read it: the
    # reply may miss the last few, so it is exact against the server's own count once settled.
    assert stats["bytes_out"] <= sent_before
    assert settled(lambda: server.stats()["bytes_out"]) == sum(p.received_bytes for p in peers)
    assert 0 <= stats["uptime_s"] <= time.monotonic() - started + 2  # started just before us
    time.sleep(0.5)
    alice.send("/stats")
    later = parse_stats(parse_server_line(alice.expect(lambda _: True)).text)
    assert later["uptime_s"] >= stats["uptime_s"] + 0.4
    assert later["bytes_in"] == stats["bytes_in"] + len(b"/stats\n")


def settled(read: Callable[[], float], timeout_s: float = 5.0) -> float:
    """A counter's value once it has stopped moving for 50 ms (bounded by `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        again = read()
        if again == value:
            return value
        value = again
    return value


@pytest.mark.parametrize("word", ["leave", "/quit"])
def test_leave_ends_the_session_and_tells_the_others(server, word):
    alice, bob = room(server, "alice", "bob")
    bob.send(word)
    assert bob.wait_closed() == ["* goodbye, bob"]
    alice.expect_line("* bob left the chat.")
