"""The server as a user meets it: real sockets on 127.0.0.1, server on port 0.

Most tests run the server in-process (fast, and its threads can be counted); the ones about the
command line, signals and tracebacks run `python -m chat.server` as a subprocess.
"""

from __future__ import annotations

import itertools
import selectors
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import Peer, room, running, start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.protocol import LineDecoder, parse_server_line, parse_stats
from chat.server import ChatServer


@pytest.fixture(params=["queued", "inline"])
def server(request) -> Iterator[ChatServer]:
    with running(delivery=request.param) as srv:
        yield srv


@pytest.fixture
def queued() -> Iterator[ChatServer]:
    with running() as srv:
        yield srv


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


# --- commands ----------------------------------------------------------------------------------


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
        "slow_consumers", "throttled", "queued_bytes", "stalled_clients", "evicted",
        "cut_hard_limit", "cut_write_deadline", "uptime_s",
    ]  # fmt: skip
    assert stats["clients"] == 3
    assert stats["connections"] == 4
    assert stats["messages_in"] == 2
    assert stats["deliveries_out"] == 4
    assert stats["slow_consumers"] == 0
    assert stats["throttled"] == 0
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


@pytest.mark.parametrize("word", ["leave", "/quit"])
def test_leave_ends_the_session_and_tells_the_others(server, word):
    alice, bob = room(server, "alice", "bob")
    bob.send(word)
    assert bob.wait_closed() == ["* goodbye, bob"]
    alice.expect_line("* bob left the chat.")


# --- bounds ------------------------------------------------------------------------------------


def test_handshake_timeout_closes_a_connection_that_never_names_itself():
    with running(handshake_timeout=0.5) as srv:
        peer = Peer(srv.address)
        started = time.monotonic()
        lines = peer.wait_closed(timeout_s=5)
        assert lines == ["! no name received within 0.5 s, closing"]
        assert time.monotonic() - started < 3


def test_one_client_over_max_clients_is_told_the_server_is_full():
    with running(max_clients=2) as srv:
        peers = room(srv, "a", "b")
        sock = socket.create_connection(srv.address, timeout=5)
        assert sock.recv(4096) == b"! server full (2 clients), try again later\n"
        assert sock.recv(4096) == b""
        peers[0].send("still here")  # the two inside are not disturbed
        peers[1].expect_line("a: still here")


def test_slow_consumer_is_cut_off_alone_while_the_others_get_everything():
    with running(max_pending=256 * 1024) as srv:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(srv.address)
        stalled.sendall(b"stalled\n")
        welcome = b""
        while b"* welcome" not in welcome:  # joined; from now on it never reads until it is cut
            welcome += stalled.recv(4096)
        alice, bob = room(srv, "alice", "bob")
        line = "x" * 1000
        count = 20_000  # 20 MB: far more than the stalled client's buffers and queue can hold
        notices = []
        for i in range(0, count, 100):  # bob keeps up: at most 100 KB is ever queued for him
            alice.send_raw("".join(f"{i + j} {line}\n" for j in range(100)).encode())
            for j in range(100):
                text = bob.expect(lambda x: x.startswith("alice: ") or notices.append(x), 20)
                assert text.startswith(f"alice: {i + j} ")
        notices += bob.collect(0.5)
        assert notices == ["* stalled was disconnected: too slow to read"]
        alice.expect_line("* stalled was disconnected: too slow to read")
        assert srv.stats()["slow_consumers"] == 1
        # It reads again at once: whole lines in order, then why it was cut, then the end.
        lines = read_to_the_end(stalled)
        assert lines[:2] == ["* alice joined the chat", "* bob joined the chat"]
        assert lines[-1] == (
            "! disconnected: you stopped reading and over 262144 bytes were queued for you"
        )
        chat = lines[2:-1]
        assert chat == [f"alice: {n} {line}" for n in range(len(chat))] and len(chat) > 100
        stalled.close()


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


def read_to_the_end(sock: socket.socket, timeout_s: float = 20.0) -> list[str]:
    """Every line a raw socket receives until the server closes it; it must end a line."""
    sock.settimeout(timeout_s)
    data = bytearray()
    for _ in range(100_000):  # bounded: each read returns at least one byte
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    assert data.endswith(b"\n"), bytes(data[-200:])
    return data.decode().split("\n")[:-1]


def test_two_hundred_clients_join_and_leave_while_messages_flow(queued):
    baseline = threading.active_count()
    (watcher,) = room(queued, "watcher")
    talker = Peer(queued.address, "talker")
    stop = threading.Event()
    sent = []

    def talk() -> None:
        for i in range(10_000):  # bounded; stops early once the churn is done
            if stop.is_set():
                return
            talker.send(f"m{i}")
            sent.append(i)
            time.sleep(0.001)

    thread = threading.Thread(target=talk)
    thread.start()
    peers = []
    for i in range(200):
        peer = Peer(queued.address, f"user{i}")
        peers.append(peer)
        if i % 3 == 0:
            peer.send("hello from a crowd")
    for i, peer in enumerate(peers):
        if i % 2:
            peer.send("leave")
        else:
            peer.close()
    stop.set()
    thread.join(10)
    talker.send("/quit")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and threading.active_count() > baseline + 1:
        time.sleep(0.05)
    assert threading.active_count() == baseline + 1  # only the watcher's reader thread is left
    assert queued.stats()["clients"] == 1
    # The talker's leave comes after all its messages; the crowd's threads are all gone by now.
    lines = [watcher.expect(lambda _: True)]
    while lines[-1] != "* talker left the chat.":
        lines.append(watcher.expect(lambda _: True))
    lines += watcher.barrier()
    numbers = [int(x[len("talker: m") :]) for x in lines if x.startswith("talker: m")]
    assert numbers == sent and len(sent) > 0  # every message, once, in order
    for i in range(200):
        mine = [x for x in lines if x.startswith((f"* user{i} ", f"user{i}: "))]
        said = [f"user{i}: hello from a crowd"] if i % 3 == 0 else []
        # The crowd's own lines: the join first, then what it said, then its leave; once each.
        assert mine[0] == f"* user{i} joined the chat" and mine[-1] == f"* user{i} left the chat."
        assert sorted(mine[1:-1]) == said


def test_notices_stop_above_the_notice_limit():
    with running(notice_limit=2) as srv:
        alice, bob = room(srv, "alice", "bob")  # 2 online: bob's join is announced
        carol = Peer(srv.address, "carol")  # 3 > 2: nobody is told, and carol is told why
        assert carol.expect(lambda _: True) == (
            "* join and leave notices are off while more than 2 are online"
        )
        dave = Peer(srv.address, "dave")
        dave.send("leave")
        dave.wait_closed()  # its leave was handled before its socket closed: 3 left, still > 2
        assert alice.barrier() == [] and bob.barrier() == []
        carol.send("leave")  # back to 2: announced again
        alice.expect_line("* carol left the chat.")
        bob.expect_line("* carol left the chat.")


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


# --- many clients at once ----------------------------------------------------------------------


def burst(address, clients: int, messages: int, timeout_s: float = 60) -> dict[str, list[int]]:
    """`clients` peers each pipeline `messages` numbered lines; returns, per receiver and sender,
    the numbers received in arrival order. One selector, no thread per client."""
    socks = []
    for i in range(clients):
        peer = Peer(address, f"c{i}")
        socks.append(peer)
    for peer in socks:  # joins done: drop join notices
        peer.collect(0.05)
    sel = selectors.DefaultSelector()
    received: dict[int, list[bytes]] = {i: [] for i in range(clients)}
    decoders = {i: LineDecoder(1 << 16) for i in range(clients)}
    for i, peer in enumerate(socks):
        peer.sock.setblocking(False)
        sel.register(peer.sock, selectors.EVENT_READ, i)
    payloads = [b"".join(b"%d\n" % n for n in range(messages)) for _ in range(clients)]
    offsets = [0] * clients
    expected = (clients - 1) * messages
    counts = [0] * clients
    deadline = time.monotonic() + timeout_s
    while min(counts) < expected and time.monotonic() < deadline:
        for i, peer in enumerate(socks):  # keep every sender's pipeline full, without blocking
            if offsets[i] < len(payloads[i]):
                try:
                    offsets[i] += peer.sock.send(payloads[i][offsets[i] : offsets[i] + 65536])
                except BlockingIOError:
                    pass
        for key, _ in sel.select(0.05):
            i = key.data
            data = key.fileobj.recv(1 << 20)
            assert data, f"c{i} was disconnected"
            lines = decoders[i].feed(data)
            received[i].extend(lines)
            counts[i] += sum(1 for line in lines if not line.startswith(b"* "))
    result: dict[str, list[int]] = {}
    for i, lines in received.items():
        for line in lines:
            if line.startswith(b"* "):
                continue
            sender, _, number = line.partition(b": ")
            result.setdefault(f"c{i}<-{sender.decode()}", []).append(int(number))
    for peer in socks:
        peer.close()
    return result


# The inline baseline needs ~30 s for the full burst (one blocking send per delivery), so CI
# gives it a smaller one; the benchmarks compare the two at full size.
@pytest.mark.parametrize("delivery, clients, messages", [("queued", 100, 200), ("inline", 30, 100)])
def test_burst_from_many_clients_arrives_exactly_once_and_in_order(delivery, clients, messages):
    server = start_server("--quiet", "--delivery", delivery)
    try:
        result = burst(server.address, clients, messages)
        assert len(result) == clients * (clients - 1)  # every receiver heard from every sender
        for pair, numbers in result.items():
            assert numbers == list(range(messages)), pair
        assert "Traceback" not in server.stderr_text
    finally:
        assert server.stop() == 0


# --- the process: command line, signals ----------------------------------------------------------


def test_sigterm_tells_everyone_and_exits_zero_within_two_seconds():
    server = start_server()
    alice = Peer(server.address, "alice")
    stalled = socket.create_connection(server.address)  # a client that never reads
    stalled.sendall(b"stalled\n")
    alice.expect_line("* stalled joined the chat")
    bob = Peer(server.address, "bob")
    bob.send("hi")
    alice.expect_line("bob: hi")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(5) == 0
    assert time.monotonic() - started < 2.0
    assert alice.wait_closed() == ["* server is shutting down, goodbye"]
    assert bob.wait_closed() == ["* server is shutting down, goodbye"]
    assert "Traceback" not in server.stderr_text
    stalled.close()


def test_sigint_is_a_clean_stop_too():
    server = start_server("--quiet")
    alice = Peer(server.address, "alice")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(5) == 0
    assert time.monotonic() - started < 2.0
    assert alice.wait_closed() == ["* server is shutting down, goodbye"]
    assert "Traceback" not in server.stderr_text


def test_server_logs_joins_messages_and_leaves_like_the_original():
    server = start_server("--lang", "ru")
    try:
        alice = Peer(server.address, "alice")
        bob = Peer(server.address, "bob")
        alice.expect_line("* bob присоединился к чату!")
        bob.send("привет")
        alice.expect_line("bob: привет")
        bob.send("leave")
        alice.expect_line("* bob покинул чат.")
    finally:
        server.stop()
    log = server.stderr_text
    for expected in ("bob присоединился к чату!", "bob: привет", "bob покинул чат."):
        assert expected in log


def test_misbehaving_clients_never_cause_a_traceback():
    server = start_server()
    try:
        peers = [Peer(server.address, f"p{i}") for i in range(5)]
        peers[0].send_raw(b"\xff\n" + b"y" * 10_000 + b"\n/msg\n/nick\n/nick a b\n")
        peers[1].sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peers[1].send_raw(b"partial")
        peers[1].sock.close()
        half = socket.create_connection(server.address)
        half.sendall(b"\xd0")  # half a character as a name, then gone
        half.close()
        peers[2].sock.shutdown(socket.SHUT_WR)
        peers[3].send("still ok")
        peers[4].expect_line("p3: still ok")
        errors = [peers[0].expect(lambda line: line.startswith("! ")) for _ in range(5)]
        assert errors == [
            "! invalid UTF-8, line discarded",
            "! line too long (over 4096 bytes), discarded",
            "! usage: /msg NAME text",
            "! usage: /nick NEWNAME",
            "! name refused: a b has characters other than letters, digits, _ - .",
        ]
        peers[0].send("and p0 still chats")
        peers[4].expect_line("p0: and p0 still chats")
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr_text


def test_ipv6_loopback_when_available():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        probe = socket.create_server(("::1", 0), family=socket.AF_INET6)
        probe.close()
    except OSError:
        pytest.skip("no ::1 on this machine")
    server = start_server("--host", "::1")
    try:
        peer = Peer(server.address, "alice")
        peer.send("/who")
        peer.expect_line("* online (1): alice")
    finally:
        server.stop()


def test_help_option_explains_every_option():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "chat.server", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    for option in (
        "--host", "--port", "--max-line", "--max-pending", "--handshake-timeout",
        "--max-clients", "--notice-limit", "--delivery", "--lang", "--log-level", "--quiet",
    ):  # fmt: skip
        assert option in out


def test_port_in_use_is_one_clear_error():
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "chat.server", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    holder.close()
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1" in done.stderr and "Traceback" not in done.stderr
