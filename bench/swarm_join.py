"""Joining, for the swarm: clients connect in waves, send their names, wait for the welcome.

`Joining` is the part of bench.swarm.Swarm that brings clients into the room (and drains what
the room says meanwhile); the measured window's loop is in bench.swarm.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time

from bench.swarm_arena import ReceiveArena
from bench.swarm_client import READABLE, WRITE, Client, Poller, SwarmError
from bench.swarm_window import ConnectReport
from bench.wire import ChatWire

CONNECT_WAVE = 256
Address = tuple[str, int]


class Joining:
    """How a swarm's clients join; its state is the Swarm's (set up in Swarm.__init__)."""

    addresses: list[Address]
    prefix: str
    tls: ssl.SSLContext | None
    hello: bytes
    wire: ChatWire
    clients: list[Client]
    poller: Poller
    arena: ReceiveArena

    def node_of(self, index: int) -> int:
        """Which of the addresses client `index` connects to: index mod their number."""
        return index % len(self.addresses)

    def connect(
        self,
        count: int,
        *,
        timeout_s: float = 60.0,
        rcvbuf: dict[int, int] | None = None,
        source: str | None = None,
    ) -> ConnectReport:
        """Connect and name `count` more clients in waves; returns once every one is welcomed.

        `source`: the local address they connect from (another loopback address, for attackers).
        """
        start, cpu0 = time.monotonic(), time.process_time()
        deadline = start + timeout_s
        first, end = len(self.clients), len(self.clients) + count
        next_index, in_flight, joined = first, 0, 0
        while joined < count:
            while in_flight < CONNECT_WAVE and next_index < end:
                self._open(next_index, (rcvbuf or {}).get(next_index), source)
                next_index += 1
                in_flight += 1
            if time.monotonic() > deadline:
                raise SwarmError(f"only {joined} of {count} clients joined in {timeout_s} s")
            for client, mask in self.poller.select(0.2):
                if self._advance_join(client, mask):
                    joined += 1
                    in_flight -= 1
        return ConnectReport(count, time.monotonic() - start, time.process_time() - cpu0)

    def _open(self, index: int, rcvbuf: int | None, source: str | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if source:
            sock.bind((source, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        err = sock.connect_ex(self.addresses[self.node_of(index)])
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise SwarmError(f"connect failed: {errno.errorcode.get(err, err)}")
        client = Client(index, f"{self.prefix}{index}", sock, self.wire)
        self.clients.append(client)
        self.poller.register(client, WRITE)

    def _advance_join(self, client: Client, mask: int) -> bool:
        """One step of a client's join; True when it has just been welcomed."""
        if client.state == "connecting" and mask & WRITE:
            client.connected(self.tls, self.hello)
            self.poller.modify(client, client.events)
            return False
        if client.state == "handshaking":
            client.shake(self.hello)
            self.poller.modify(client, client.events)
            return False
        if not mask & READABLE:
            return False
        data = self.poller.recv_or_close(client)
        if client.state != "joining" or data is None:
            return False
        return client.greeting_received(data)

    def settle(self, quiet_s: float = 0.2, timeout_s: float = 30.0) -> int:
        """Read and discard until nothing arrives for `quiet_s` (join notices); returns bytes."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while time.monotonic() < deadline:
            events = self.poller.select(quiet_s)
            if not events:
                break
            for client, mask in events:
                if mask & READABLE:
                    total += len(self.poller.recv_or_close(client) or b"")
        return total
