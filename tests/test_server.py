"""The server as a user meets it: joining, chatting and bad input, over real sockets on 127.0.0.1.

The server runs in-process on port 0 (the `server` fixture runs each test with both delivery
modes, `queued` with the default; tests/conftest.py). Commands are in test_commands.py, limits
and crowds in test_bounds.py, the command line, signals and the log in test_process.py.
"""

from __future__ import annotations

import itertools
import socket
import struct
import time

import pytest
from conftest import Peer, room, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.server import ChatServer

# --- joining -----------------------------------------------------------------------------------


def test_a_connection_is_greeted_with_the_name_rules(server):
    sock = socket.create_connection(server.address, timeout=5)
    assert sock.recv(4096) == b"* hello! send your name: 1-32 letters, digits, _ - or .\n"
    sock.close()


def test_newcomer_is_welcomed_with_who_is_online_and_others_are_told(server):
    alice = Peer(server.address, "alice")
    bob = Peer(server.address)
    assert bob.join("bob") == "* welcome, bob! 2 online: alice, bob"
    alice.expect_line("* bob joined the chat")


@pytest.mark.parametrize(
    "name, reason",
    [
        ("bad name", "characters other than letters"),
        ("x" * 33, "longer than 32"),
        ("ALICE", "ALICE is taken"),
        ("a\x1b[2Jb", "characters other than letters"),
    ],
)
def test_refused_name_gets_the_reason_and_may_try_again(queued, name, reason):
    alice = Peer(queued.address, "alice")
    peer = Peer(queued.address)
    answer = peer.join(name)
    assert answer.startswith("! name refused") and reason in answer
    assert peer.join("carol").startswith("* welcome, carol!")
    alice.close()


@pytest.mark.parametrize("word", ["leave", "/quit"])
def test_leave_before_a_name_closes_quietly(queued, word):
    peer = Peer(queued.address)
    peer.send(word)
    assert peer.wait_closed() == []


def test_blanks_around_a_name_are_stripped(server):
    (alice,) = room(server, "alice")
    carol = Peer(server.address)
    assert carol.join("  carol\t ") == "* welcome, carol! 2 online: alice, carol"
    alice.expect_line("* carol joined the chat")
    carol.send("hi")
    alice.expect_line("carol: hi")


def test_welcome_lists_the_first_twenty_names_then_how_many_more():
    names = [f"user{i:02}" for i in range(22)]
    with running(notice_limit=0) as srv:  # no join notices: nothing to consume
        peers = [Peer(srv.address, name) for name in names]
        newcomer = Peer(srv.address)
        welcome = newcomer.join("late")
        assert welcome == f"* welcome, late! 23 online: {', '.join(names[:20])}, and 3 more"
        assert len(peers) == len(names)


def test_name_and_first_messages_in_one_packet_all_count(server):
    (alice,) = room(server, "alice")
    bob = Peer(server.address)
    bob.send_raw(b"bob\nfirst\nsecond\n")
    alice.expect_line("* bob joined the chat")
    alice.expect_line("bob: first")
    alice.expect_line("bob: second")


def test_russian_notices_with_lang_ru():
    with running(lang="ru") as srv:
        alice, bob = room_ru(srv)
        bob.send("leave")
        alice.expect_line("* bob покинул чат.")


def room_ru(srv) -> list[Peer]:
    alice = Peer(srv.address, "alice")
    bob = Peer(srv.address, "bob")
    alice.expect_line("* bob присоединился к чату!")
    return [alice, bob]


# --- chatting ----------------------------------------------------------------------------------


def test_message_reaches_everyone_else_exactly_as_the_original_and_not_its_sender(server):
    alice, bob, carol = room(server, "alice", "bob", "carol")
    alice.send("hello, world")
    assert bob.expect(lambda _: True) == "alice: hello, world"
    assert carol.expect(lambda _: True) == "alice: hello, world"
    assert alice.barrier() == []  # never echoed: nothing came before the reply to alice's next line


def test_merged_messages_in_one_send_arrive_as_separate_lines(server):
    alice, bob = room(server, "alice", "bob")
    alice.send_raw(b"one\ntwo\r\nthree\n")
    assert [bob.expect(lambda _: True) for _ in range(3)] == [
        "alice: one",
        "alice: two",
        "alice: three",
    ]


def _bytes_in(server: ChatServer) -> int:
    return int(server.stats()["bytes_in"])


def send_in_separate_reads(server: ChatServer, sock: socket.socket, pieces: list[bytes]) -> None:
    """Send `pieces` so that the server provably reads each one on its own: before the next piece
    goes out, the server's `bytes_in` counter must show that it has received all of this one.
    (The decoder tests replay every split in memory; this proves the socket path does it too.)"""
    for piece in pieces:
        target = _bytes_in(server) + len(piece)
        sock.sendall(piece)
        deadline = time.monotonic() + 5
        while _bytes_in(server) < target:
            assert time.monotonic() < deadline, "the server never read the piece"
            time.sleep(0.001)
        assert _bytes_in(server) == target


def test_message_split_at_every_byte_offset_arrives_whole(queued):
    alice, bob = room(queued, "alice", "bob")
    payload = "привет 👋 ok".encode() + b"\n"
    for cut in range(1, len(payload)):
        send_in_separate_reads(queued, alice.sock, [payload[:cut], payload[cut:]])
        assert bob.expect(lambda _: True) == "alice: привет 👋 ok", cut


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
            lambda t: t.strip() and not t.startswith("/") and t.strip() != "leave"
        ),
        min_size=1,
        max_size=5,
    ),
    data=st.data(),
)
def test_any_split_of_a_stream_of_messages_is_delivered_intact(queued, texts, data):
    alice, bob = room(queued, f"a{time.monotonic_ns()}", f"b{time.monotonic_ns()}")
    stream = b"".join(t.encode() + b"\n" for t in texts)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=4))))
    bounds = [0, *cuts, len(stream)]
    send_in_separate_reads(queued, alice.sock, [stream[a:b] for a, b in itertools.pairwise(bounds)])
    got = [bob.expect(lambda line: not line.startswith("*")) for _ in texts]
    assert [line.split(": ", 1)[1] for line in got] == texts
    alice.close()
    bob.close()


def test_double_slash_sends_a_literal_slash(server):
    alice, bob = room(server, "alice", "bob")
    alice.send("//shrug")
    bob.expect_line("alice: /shrug")


def test_empty_lines_are_ignored(server):
    alice, bob = room(server, "alice", "bob")
    alice.send_raw(b"\n\r\n   \nreal\n")
    assert bob.expect(lambda _: True) == "alice: real"


# --- bad input ---------------------------------------------------------------------------------


def test_overlong_line_is_discarded_and_sender_stays_connected(queued):
    alice, bob = room(queued, "alice", "bob")
    alice.send_raw(b"x" * 100_000 + b"\nstill here\n")
    alice.expect_line("! line too long (over 4096 bytes), discarded")
    assert bob.expect(lambda _: True) == "alice: still here"  # bob never saw any of it
    alice.send("and again")
    bob.expect_line("alice: and again")


def test_max_line_option_sets_the_limit():
    with running(max_line=10) as srv:
        alice, bob = room(srv, "alice", "bob")
        alice.send("0123456789")
        alice.send("0123456789x")
        bob.expect_line("alice: 0123456789")
        alice.expect_line("! line too long (over 10 bytes), discarded")


def test_invalid_utf8_is_discarded_with_an_error_and_nothing_else_is_lost(server):
    alice, bob = room(server, "alice", "bob")
    alice.send_raw(b"before\n\xff\xfe bad\nafter\n")
    alice.expect_line("! invalid UTF-8, line discarded")
    assert [bob.expect(lambda _: True) for _ in range(2)] == ["alice: before", "alice: after"]


def test_unknown_command_gets_an_error(server):
    (alice,) = room(server, "alice")
    alice.send("/frobnicate now")
    alice.expect_line("! unknown command /frobnicate, try /help")


def test_client_reset_mid_message_affects_nobody_else(server):
    alice, bob, carol = room(server, "alice", "bob", "carol")
    bob.send_raw(b"half a mess")
    time.sleep(0.05)
    bob.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    bob.sock.close()  # RST, not FIN
    alice.expect_line("* bob left the chat.")
    alice.send("still fine")
    # Two senders (bob's thread, alice): no order between them is promised, only that both come.
    got = {carol.expect(lambda _: True), carol.expect(lambda _: True)}
    assert got == {"* bob left the chat.", "alice: still fine"}
