"""Shared fixtures: a chat server in its own process on 127.0.0.1, in-process servers, rooms.

`server` (an in-process server, each test run with both delivery modes) and `queued` (the
default mode only) serve the server tests: test_server, test_commands, test_bounds. The client
tests override `server` with a server process (`english_server`).

Starting a server process, free ports and the raw-socket Peer live in harness/; they are
re-exported here because the tests import them from this conftest. The client tests' fixtures
live in client_helpers.py, next to what they start, and are registered here by importing them.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from client_helpers import english_server, peers, popen_client, pty_client, terminal
from tls_helpers import password_file, tls_files

from chat.server import ChatServer, Config
from harness import Peer, ServerProcess
from harness import start_chat_server as start_server

__all__ = ["Peer", "ServerProcess", "room", "running", "start_server"]
# Fixtures of the client tests (tests/client_helpers.py): pytest finds them in this namespace.
__all__ += ["english_server", "peers", "popen_client", "pty_client", "terminal"]
# ... and of the TLS and password tests (tests/tls_helpers.py).
__all__ += ["password_file", "tls_files"]


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    """A fresh server subprocess with default settings, stopped (by PID) afterwards."""
    server = start_server("--quiet")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["queued", "inline"])
def server(request) -> Iterator[ChatServer]:
    with running(delivery=request.param) as srv:
        yield srv


@pytest.fixture
def queued() -> Iterator[ChatServer]:
    with running() as srv:
        yield srv


@contextmanager
def running(**options) -> Iterator[ChatServer]:
    """An in-process server on 127.0.0.1, port 0 (`.address`), stopped afterwards."""
    server = ChatServer(Config(host="127.0.0.1", port=0, **options))
    server.address = server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)
        server.shutdown()


def room(server, *names: str, tls: ssl.SSLContext | None = None) -> list[Peer]:
    """Join `names` in order (over TLS with the client context `tls`) and consume the join
    notices, so each peer starts with no backlog."""
    peers: list[Peer] = []
    for name in names:
        peer = Peer(server.address, name, tls=tls)
        for other in peers:
            other.expect_line(f"* {name} joined the chat")
        peers.append(peer)
    return peers
