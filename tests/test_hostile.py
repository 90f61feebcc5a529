"""Hostile clients: floods, expensive commands, clients that never read, many connections.

Attackers connect from other loopback addresses (127.0.0.2 and up); every loop is bounded in count
and time. No test here times the server: each asserts what a client sees (what arrives, in which
order, who is cut) and the server's own counters.
"""

from __future__ import annotations

import socket
import sys
import time

from conftest import Peer, room, running, start_server

from chat.flood import COMMAND_COST_BYTES, LINE_COST_BYTES, FloodBudget, delivery_cost
from chat.protocol import parse_server_line, parse_stats
from chat.server import ChatServer
from harness import start_process

ATTACKER = "127.0.0.2"


def stats_of(peer: Peer) -> dict[str, float]:
    peer.send("/stats")
    return parse_stats(parse_server_line(peer.expect(lambda x: x.startswith("* stats:"))).text)


def stats_once_throttled(server: ChatServer, timeout_s: float = 5.0) -> dict[str, int | float]:
    """The server's counters, read again until some client has been throttled (bounded by
    `timeout_s`). Read in-process: asking by /stats would spend the asker's own budget."""
    deadline = time.monotonic() + timeout_s
    stats = server.stats()
    while stats["throttled"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = server.stats()
    assert stats["throttled"] >= 1, stats
    return stats


# --- the budget itself (no sockets) ------------------------------------------------------------


def test_budget_allows_a_burst_then_holds_the_sustained_rate():
    budget = FloodBudget(rate=1000, burst=5000, now=0.0)
    budget.charge(5000, now=0.0)
    assert budget.wait_s(0.0) == 0  # the whole burst, at once
    budget.charge(2000, now=0.0)
    assert budget.wait_s(0.0) == 2.0  # 2000 over at 1000/s
    assert budget.wait_s(1.5) == 0.5
    assert budget.wait_s(2.0) == 0
    assert budget.wait_s(100.0) == 0  # idle time refills only up to the burst
    budget.charge(5001, now=100.0)
    assert budget.wait_s(100.0) == 0.001


def test_zero_rate_turns_flood_control_off():
    budget = FloodBudget(rate=0, burst=1, now=0.0)
    budget.charge(10**12, now=0.0)
    assert budget.wait_s(0.0) == 0


def test_a_line_costs_its_bytes_and_a_fixed_share_per_recipient():
    assert delivery_cost(100, 50) == 50 * (100 + LINE_COST_BYTES)
    assert delivery_cost(100, 50, lines=3) == 50 * (100 + 3 * LINE_COST_BYTES)
    assert delivery_cost(100, 0) == 100 + LINE_COST_BYTES  # a reply to oneself still costs


# --- flood control through real sockets --------------------------------------------------------


def test_a_flooder_is_held_at_its_budget_while_others_chat_and_nothing_is_lost():
    lines = 2000  # 210 kB: more than one read of the server's (64 kB)
    body = "f" * 100
    # Each flood line costs 2 recipients x 164 bytes + 256 to read: 2000 lines are ~1.2 MB, 2 s
    # at 600 kB/s.
    with running(flood_rate=600_000, flood_burst=20_000) as srv:
        alice, bob = room(srv, "alice", "bob")
        flooder = Peer(srv.address, "flooder", source=ATTACKER)
        alice.expect_line("* flooder joined the chat")
        bob.expect_line("* flooder joined the chat")
        flooder.send_raw(b"".join(b"%d %s\n" % (i, body.encode()) for i in range(lines)))
        bob.expect(lambda line: line.startswith("flooder: 0 "))
        # The server stopped reading from the flooder: at most one read of its lines came in.
        stats = stats_once_throttled(srv)
        assert stats["bytes_in"] < len(b"alice\nbob\nflooder\n") + lines * 105
        alice.send("still here")  # a polite client is not held behind the flooder
        got = []
        for _ in range(lines):  # the flood lines left and alice's
            got.append(bob.expect(lambda x: True, timeout_s=20))
        numbers = [int(x.split()[1]) for x in got if x.startswith("flooder: ")]
        assert numbers == list(range(1, lines))  # every line, once, in order: nothing dropped
        assert "alice: still here" in got
        assert got.index("alice: still here") < len(got) - 1  # it did not wait for the flood
        assert flooder.barrier() == ["alice: still here"]  # still connected, never told off
        assert stats_of(bob)["slow_consumers"] == 0


def test_a_burst_inside_the_budget_shares_the_server_with_everyone_else():
    lines = 20_000  # about 110 kB and 8 MB of budget: inside the default burst, never throttled
    with running() as srv:
        alice, bob = room(srv, "alice", "bob")
        burster = Peer(srv.address, "burster", source=ATTACKER)
        alice.expect_line("* burster joined the chat")
        bob.expect_line("* burster joined the chat")
        burster.send_raw(b"".join(b"%d\n" % i for i in range(lines)))
        bob.expect_line("burster: 0")
        alice.send("still here")
        got = [bob.expect(lambda x: True, timeout_s=20) for _ in range(lines)]
        numbers = [int(x.split()[1]) for x in got if x.startswith("burster: ")]
        assert numbers == list(range(1, lines))  # every line, once, in order
        assert "alice: still here" in got
        stats = srv.stats()
        # Its reader worked through 64 kB reads of 5-byte lines: it rested between slices
        # (chat/flood.py SLICE_S) without ever being over its budget.
        assert stats["rested"] >= 1, stats
        assert stats["throttled"] == 0, stats
        assert burster.barrier() == ["alice: still here"]  # still connected, never told off


def test_expensive_commands_are_paced_by_the_same_budget():
    # A command a second, four at once: a person never notices, a script is held.
    with running(flood_rate=COMMAND_COST_BYTES, flood_burst=4 * COMMAND_COST_BYTES) as srv:
        (watcher,) = room(srv, "watcher")
        spammer = Peer(srv.address, "spammer", source=ATTACKER)
        spammer.send_raw(b"/help\n" * 200)
        spammer.expect(lambda x: x.startswith("* commands"))
        stats_once_throttled(srv)
        watcher.send("/who")  # the watcher is served at once
        watcher.expect(lambda x: x.startswith("* online (2)"))


def test_a_script_trying_names_is_paced_too():
    with running(flood_rate=20 * COMMAND_COST_BYTES, flood_burst=4 * COMMAND_COST_BYTES) as srv:
        (watcher,) = room(srv, "watcher")
        guesser = Peer(srv.address, source=ATTACKER)
        guesser.send_raw(b"".join(b"WATCHER\n" for _ in range(20)))  # each refused: taken
        guesser.expect(lambda x: x.startswith("! name refused: WATCHER is taken"))
        stats_once_throttled(srv)
        guesser.send("guesser")  # taken in turn, after the twenty before it
        guesser.expect(lambda x: x.startswith("* welcome, guesser!"), timeout_s=10)


def test_flood_control_can_be_turned_off():
    with running(flood_rate=0) as srv:
        alice, bob = room(srv, "alice", "bob")
        alice.send_raw(b"x" * 1000 + b"\n" + b"".join(b"%d\n" % i for i in range(20_000)))
        bob.expect_line("alice: " + "x" * 1000)
        for i in range(20_000):
            assert bob.expect(lambda x: True) == f"alice: {i}"
        stats = stats_of(bob)
        assert stats["throttled"] == 0
        assert stats["rested"] == 0  # off means off: alice's reader never rested either


# --- names and text that cannot impersonate ----------------------------------------------------


def test_a_lookalike_of_someone_online_is_refused_and_may_try_again():
    with running() as srv:
        (alice,) = room(srv, "alice")
        mallory = Peer(srv.address, source=ATTACKER)
        for lookalike in ("\u0430lice", "ａｌｉｃｅ", "al\u0131ce", "ALICE"):  # Cyrillic а, ...
            assert mallory.join(lookalike).startswith("! name refused: ")
        assert mallory.join("alice\u3164").startswith("! name refused: ")  # invisible filler
        assert mallory.join("mallory") == "* welcome, mallory! 2 online: alice, mallory"


def test_chat_text_that_could_forge_a_line_is_refused_and_nobody_sees_it():
    with running() as srv:
        alice, bob = room(srv, "alice", "bob")
        for text in ("hi\r* bob left the chat.", "a\u2028b", "nel\u0085x", "nul\0", "\x1b[2J"):
            alice.send_raw(text.encode() + b"\n")
            assert alice.expect(lambda _: True) == "! " + srv.texts("bad_text")
        alice.send("tab\there is fine")
        bob.expect_line("alice: tab\there is fine")
        assert bob.barrier() == []


def test_renaming_to_the_same_name_is_not_announced():
    with running() as srv:
        alice, bob = room(srv, "alice", "bob")
        bob.send("/nick bob")
        bob.expect_line("* you are now bob")
        assert alice.barrier() == []
        bob.send("/nick Bob")  # a new spelling is a rename others see
        alice.expect_line("* bob is now known as Bob")


def test_the_log_escapes_what_clients_send_and_keeps_private_text_out():
    server = start_server()  # INFO: every message is logged
    try:
        alice = Peer(server.address, "alice")
        bob = Peer(server.address, "bob")
        alice.expect_line("* bob joined the chat")
        alice.send("abc\u202edef")  # a bidi override would flip the rest of the operator's line
        bob.expect_line("alice: abc\u202edef")
        alice.send("/msg bob secret words")
        bob.expect_line("alice (private): secret words")
    finally:
        assert server.stop() == 0
    log = server.stderr_text
    assert "alice: abc\\u202edef" in log and "\u202e" not in log
    assert "alice -> bob: a private message" in log and "secret words" not in log


# --- connections -------------------------------------------------------------------------------


def greeted(source: str, address: tuple[str, int]) -> socket.socket:
    """A raw connection from `source` that has read the server's greeting."""
    sock = socket.create_connection(address, timeout=5, source_address=(source, 0))
    assert sock.recv(4096).startswith(b"* hello!")
    return sock


def refused_with(sock: socket.socket) -> bytes:
    """What a refused connection is told before the server closes it."""
    data = b""
    for _ in range(10):  # the line, then EOF
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"not closed after {data!r}")


def test_one_address_may_hold_only_so_many_connections_and_loopback_is_exempt():
    with running(max_per_address=3) as srv:
        held = [greeted(ATTACKER, srv.address) for _ in range(3)]
        extra = socket.create_connection(srv.address, timeout=5, source_address=(ATTACKER, 0))
        assert refused_with(extra) == (
            b"! too many connections from your address (limit 3), try again later\n"
        )
        others = [greeted("127.0.0.3", srv.address) for _ in range(3)]  # each address its own
        local = [greeted("127.0.0.1", srv.address) for _ in range(5)]  # exempt by default
        held.pop().close()
        deadline = time.monotonic() + 5
        while srv.stats()["connections"] > 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        held.append(greeted(ATTACKER, srv.address))  # its place is free again
        for sock in held + others + local:
            sock.close()


def test_one_address_may_open_only_so_many_new_connections_a_minute():
    with running(max_per_address=0, new_per_address=3) as srv:
        for _ in range(3):
            greeted(ATTACKER, srv.address).close()
        extra = socket.create_connection(srv.address, timeout=5, source_address=(ATTACKER, 0))
        assert refused_with(extra).startswith(b"! too many new connections from your address")
        greeted("127.0.0.3", srv.address).close()  # another address is not affected


def test_without_exemptions_loopback_is_limited_too():
    with running(max_per_address=1, exempt=()) as srv:
        first = greeted("127.0.0.1", srv.address)
        second = socket.create_connection(srv.address, timeout=5)
        assert refused_with(second).startswith(b"! too many connections from your address")
        first.close()


def test_connections_without_a_name_cannot_fill_the_server():
    with running(max_unnamed=3, max_per_address=0) as srv:
        (alice,) = room(srv, "alice")  # named: never pushed out
        silent = [greeted(ATTACKER, srv.address) for _ in range(3)]
        newcomer = Peer(srv.address)  # the fourth without a name pushes out the oldest
        assert refused_with(silent[0]) == (
            b"! too many connections are waiting for a name, try again\n"
        )
        assert newcomer.join("bob") == "* welcome, bob! 2 online: alice, bob"
        alice.expect_line("* bob joined the chat")
        for sock in silent[1:]:
            sock.close()


def test_handshake_deadline_is_kept_for_many_silent_connections_at_once():
    timeout_s = 1.0
    with running(handshake_timeout=timeout_s, max_per_address=0, new_per_address=0) as srv:
        started = time.monotonic()
        silent = [greeted(ATTACKER, srv.address) for _ in range(50)]
        for sock in silent:
            assert refused_with(sock) == b"! no name received within 1 s, closing\n"
        # Each was closed no sooner than its deadline and within a second after it.
        assert timeout_s <= time.monotonic() - started < timeout_s + 1.0 + 1.0


def test_max_clients_is_lowered_to_fit_the_open_files_limit():
    server_cmd = f"exec {sys.executable} -m chat.server --port 0 --max-clients 100000"
    server = start_process(["sh", "-c", f"ulimit -n 200 && {server_cmd}"])
    try:
        held = [greeted("127.0.0.1", server.address) for _ in range(200 - 64)]
        over = socket.create_connection(server.address, timeout=5)
        assert refused_with(over) == b"! server full (136 clients), try again later\n"
        for sock in held:
            sock.close()
    finally:
        assert server.stop() == 0
    assert "--max-clients 100000 does not fit the open-files limit (200): using 136" in (
        server.stderr_text
    )
