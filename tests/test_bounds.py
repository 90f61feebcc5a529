"""The server's limits: handshake timeout, a full server, a slow consumer, the notice limit, and
many clients at once (churn, and a burst from a hundred senders).

Real sockets on 127.0.0.1; in-process servers (tests/conftest.py), except the burst, which runs
`python -m chat.server` as a subprocess.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time

import pytest
from conftest import Peer, room, running, start_server

from chat.protocol import LineDecoder

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
        assert_slow_consumer_cut_alone(srv)


def assert_slow_consumer_cut_alone(srv, tls: ssl.SSLContext | None = None) -> None:
    """A client that joined and stops reading (over TLS with the client context `tls`) is cut
    alone as a slow consumer while alice floods and bob keeps up; read again, it gets whole
    lines in order, then why it was cut, then the end. `srv` runs with max_pending 256 KiB."""
    stalled: socket.socket = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.settimeout(10)
    stalled.connect(srv.address)
    if tls is not None:
        stalled = tls.wrap_socket(stalled, server_hostname=srv.address[0])
    stalled.sendall(b"stalled\n")
    welcome = b""
    while b"* welcome" not in welcome:  # joined; from now on it never reads until it is cut
        welcome += stalled.recv(4096)
    alice, bob = room(srv, "alice", "bob", tls=tls)
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
