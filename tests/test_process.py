"""The server as a process: `python -m chat.server` on 127.0.0.1 for signals, the log, tracebacks,
IPv6, `--help` and a port already in use. Every process is stopped by its PID.
"""

from __future__ import annotations

import signal
import socket
import struct
import time

import pytest
from conftest import Peer, ServerProcess, start_server


def test_sigterm_tells_everyone_and_exits_zero_within_two_seconds():
    server = start_server()
    alice = Peer(server.address, "alice")
    stalled = socket.create_connection(server.address)  # a client that never reads
    stalled.sendall(b"stalled\n")
    alice.expect_line("* stalled joined the chat")
    bob = Peer(server.address, "bob")
    bob.send("hi")
    alice.expect_line("bob: hi")
    stop_and_expect_goodbye(server, signal.SIGTERM, alice, bob)
    stalled.close()


def test_sigint_is_a_clean_stop_too():
    server = start_server("--quiet")
    alice = Peer(server.address, "alice")
    stop_and_expect_goodbye(server, signal.SIGINT, alice)


def stop_and_expect_goodbye(server: ServerProcess, signum: int, *peers: Peer) -> None:
    """`signum` stops the server: exit 0 within 2 s, each peer told goodbye, no traceback."""
    started = time.monotonic()
    server.proc.send_signal(signum)
    assert server.proc.wait(5) == 0
    assert time.monotonic() - started < 2.0
    for peer in peers:
        assert peer.wait_closed() == ["* server is shutting down, goodbye"]
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
