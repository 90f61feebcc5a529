"""TLS: the server's handshake and its failures, the client's certificate checks, and the
existing rules (framing, slow consumers, shutdown) over TLS. Real TLS over 127.0.0.1 with
certificates made by trustme (tests/tls_helpers.py). tests/README.md maps each promise here.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import ssl
import threading
import time

import pytest
from client_helpers import run_piped
from conftest import Peer, room, running, start_server
from test_bounds import assert_slow_consumer_cut_alone, read_to_the_end
from test_process import stop_and_expect_goodbye
from tls_helpers import TlsFiles, server_start_failure

from chat.parking import PARK_AFTER_S
from chat.tls import TlsStream, server_context

NOT_TLS_LINE = (
    "! this port speaks TLS: connect with a TLS client (chat.client --tls, "
    "openssl s_client -connect HOST:PORT -quiet)"
)


@pytest.mark.parametrize("delivery", ["queued", "inline"])
def test_clients_chat_over_tls(tls_files: TlsFiles, delivery: str):
    with running(delivery=delivery, **tls_files.server_options()) as srv:
        context = tls_files.client_context()
        alice = Peer(srv.address, "alice", tls=context)
        bob = Peer(srv.address, "bob", tls=context)
        alice.expect_line("* bob joined the chat")
        assert isinstance(alice.sock, ssl.SSLSocket) and alice.sock.version() in (
            "TLSv1.2",
            "TLSv1.3",
        )
        alice.send("hello over TLS")
        bob.expect_line("alice: hello over TLS")
        bob.send("/msg alice psst")
        alice.expect_line("bob (private): psst")
        assert bob.barrier() == []


def test_plain_and_tls_clients_share_one_room(tls_files: TlsFiles):
    with running(tls_port=0, **tls_files.server_options()) as srv:
        assert srv.tls_address is not None and srv.tls_address != srv.address
        plain = Peer(srv.address, "plain")
        secure = Peer(srv.tls_address, "secure", tls=tls_files.client_context())
        plain.expect_line("* secure joined the chat")
        secure.send("hi plain")
        plain.expect_line("secure: hi plain")
        plain.send("hi secure")
        secure.expect_line("plain: hi secure")


def test_client_refuses_an_untrusted_certificate_in_one_line(tls_files: TlsFiles):
    server = start_server("--quiet", *tls_files.server_args())
    try:
        done = run_piped(server.port, "alice\nhello\n", "--tls")
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and "certificate is not trusted" in lines[0], done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    finally:
        server.stop()
    assert "Traceback" not in server.stderr_text


def test_client_with_ca_chats_over_tls(tls_files: TlsFiles):
    server = start_server("--quiet", *tls_files.server_args())
    try:
        bob = Peer(server.address, "bob", tls=tls_files.client_context())
        done = run_piped(server.port, "alice\nhello bob\n", "--ca", str(tls_files.ca_cert))
        assert done.returncode == 0, done.stderr
        assert "* welcome, alice!" in done.stdout
        bob.expect_line("alice: hello bob")
    finally:
        server.stop()


def test_plain_client_on_the_tls_port_is_closed_with_one_warning(tls_files: TlsFiles):
    server = start_server("--quiet", *tls_files.server_args())
    try:
        alice = Peer(server.address, "alice", tls=tls_files.client_context())
        plain = socket.create_connection(server.address, timeout=5)
        plain.sendall(b"mallory\nhello\n")
        assert read_to_the_end(plain, timeout_s=5) == [NOT_TLS_LINE]
        plain.close()
        assert alice.barrier() == []  # nobody else saw anything
        alice.send("/who")
        alice.expect_line("* online (1): alice")
    finally:
        server.stop()
    warnings = [line for line in server.stderr_lines if "TLS handshake" in line]
    assert len(warnings) == 1 and "plain text, not TLS" in warnings[0], server.stderr_text
    assert "Traceback" not in server.stderr_text


def test_slow_and_silent_handshakes_are_cut_at_the_deadline(tls_files: TlsFiles, caplog):
    caplog.set_level(logging.WARNING, logger="chat.server")
    with running(handshake_timeout=0.5, **tls_files.server_options()) as srv:
        silent = socket.create_connection(srv.address, timeout=5)
        stalled = socket.create_connection(srv.address, timeout=5)
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, then nothing
        started = time.monotonic()
        assert silent.recv(4096) == b""
        assert stalled.recv(4096) == b""
        assert time.monotonic() - started < 3
        alice = Peer(srv.address, "alice", tls=tls_files.client_context())  # still serving
        assert alice.barrier() == []
    warnings = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert all(w.endswith("failed: not done within 0.5 s") for w in warnings), warnings


def test_a_line_split_across_tls_records_arrives_whole(tls_files: TlsFiles):
    with running(**tls_files.server_options()) as srv:
        alice, bob = room(srv, "alice", "bob", tls=tls_files.client_context())
        pieces = ["hel", "lo wo", "rld ", "\u00e9"[:1], " and ", "\u2603", "!\n"]
        data = "".join(pieces).encode()
        cut_points = [3, 8, 12, 13, 14, 17, 18]  # one inside the snowman's three bytes
        start = 0
        for end in [*cut_points, len(data)]:
            expected = srv.stats()["bytes_in"] + end - start
            alice.send_raw(data[start:end])  # each sendall is one TLS record
            wait_for(lambda expected=expected: srv.stats()["bytes_in"] >= expected)
            start = end
        bob.expect_line("alice: " + data.decode().rstrip("\n"))
        assert bob.barrier() == []


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_slow_consumer_over_tls_is_cut_alone_with_whole_lines_then_the_reason(tls_files):
    with running(max_pending=256 * 1024, **tls_files.server_options()) as srv:
        assert_slow_consumer_cut_alone(srv, tls=tls_files.client_context())


def test_shutdown_says_goodbye_over_tls(tls_files: TlsFiles):
    server = start_server("--quiet", *tls_files.server_args())
    context = tls_files.client_context()
    alice = Peer(server.address, "alice", tls=context)
    bob = Peer(server.address, "bob", tls=context)
    alice.expect_line("* bob joined the chat")
    stop_and_expect_goodbye(server, signal.SIGTERM, alice, bob)


@pytest.mark.parametrize("which", ["missing", "not a certificate"])
def test_unusable_certificate_is_one_line_and_exit_one(tls_files: TlsFiles, tmp_path, which):
    cert = tmp_path / "nothing.pem"
    if which == "not a certificate":
        cert.write_text("hello\n")
    assert "TLS" in server_start_failure("--tls-cert", str(cert))


def test_quiet_tls_clients_park_wake_for_their_next_line_and_are_ended_when_gone(tls_files):
    with running(**tls_files.server_options()) as srv:
        alice, bob = room(srv, "alice", "bob", tls=tls_files.client_context())
        time.sleep(PARK_AFTER_S * 2.5)  # both readers are parked in the reaper's selector now
        alice.send("still here")
        bob.expect_line("alice: still here")
        time.sleep(PARK_AFTER_S * 2.5)
        bob.close()  # gone while parked: the reaper ends its session
        alice.expect_line("* bob left the chat.")


def test_tls_stream_counts_unsent_ciphertext_as_refused_and_sends_every_byte_once(tls_files):
    """The writer's view of a TLS client: bytes count as sent only once their records are in
    the kernel, so a reader that stops shows up as refused bytes; the tail sent again later is
    never encrypted twice."""
    server_side, client_side = socket.socketpair()
    for sock in (server_side, client_side):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    stream = TlsStream(server_side, server_context(str(tls_files.cert), str(tls_files.key)))
    context = tls_files.client_context()
    context.check_hostname = False
    reading, received = threading.Event(), bytearray()

    def client() -> None:
        tls = context.wrap_socket(client_side, server_hostname="127.0.0.1")
        reading.wait(10)
        tls.settimeout(10)
        while data := tls.recv(1 << 16):
            received.extend(data)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    stream.handshake()
    data = b"".join(b"%07d\n" % i for i in range(200_000))  # 1.6 MB, far past both buffers
    view = memoryview(data)
    sent = stream.send(view)
    view = view[sent:]
    while sent and view:  # until the kernel refuses
        sent = stream.send(view)
        view = view[sent:]
    assert view, "nothing was refused"
    assert stream.send(view) == 0  # nothing is taken while the reader does not read
    reading.set()
    deadline = time.monotonic() + 20
    while view:
        assert time.monotonic() < deadline, "the rest never went out"
        select.select([], [stream], [], 1.0)
        view = view[stream.send(view) :]
    stream.shutdown(socket.SHUT_RDWR)  # close_notify: the reader's recv ends
    thread.join(20)
    stream.close()
    assert bytes(received) == data
