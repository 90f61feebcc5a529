"""The client swarm: many chat clients in one process, one epoll loop, no thread per client.

A measured window does the least it can per read: `recv`, stamp, keep the chunk, count newlines.
Everything else (framing with chat.protocol.LineDecoder, parsing server lines and probes,
checking order, duplicates and losses, latency) happens after the window in `verify`. The swarm
records its own CPU time so a result limited by the driver rather than the server is flagged.

This module holds `Swarm`: the measured window's loop and the call to verify; joining (one server
or the nodes of a cluster, clients split evenly) is in bench.swarm_join. The client and its
epoll registry are in bench.swarm_client, what senders send in bench.swarm_send, a
window's bookkeeping and reports in bench.swarm_window, the delivery check in bench.swarm_verify;
what callers import from those is re-exported here.
"""

from __future__ import annotations

import fcntl
import gc
import ssl
import struct
import termios
import time
from collections.abc import Iterable, Sequence
from functools import partial

from bench.swarm_arena import ReceiveArena
from bench.swarm_client import (
    NOT_NOW,
    READ,
    READABLE,
    WRITE,
    Client,
    Poller,
    SwarmError,
    more_records,
)
from bench.swarm_join import CONNECT_WAVE, Address, Joining
from bench.swarm_send import (
    PacedSender,
    SenderPlan,
    Watch,
    burst,
    expected_bytes,
    next_due_wait_ns,
)
from bench.swarm_verify import Verdict, percentile_ms, verify_reader
from bench.swarm_window import DRIVER_SATURATED_FRACTION, ConnectReport, DriveReport, DriveState
from bench.wire import CHAT_WIRE, ChatWire
from chat.cli import raise_open_files_limit
from chat.protocol import encode_line, password_line

__all__ = [
    "CONNECT_WAVE",
    "DRIVER_SATURATED_FRACTION",
    "IDLE_TIMEOUT_S",
    "Client",
    "ConnectReport",
    "DriveReport",
    "Poller",
    "SenderPlan",
    "Swarm",
    "SwarmError",
    "Verdict",
    "percentile_ms",
    "raise_open_files_limit",
]

IDLE_TIMEOUT_S = 10.0


class Swarm(Joining):
    """Many clients of one server (or of the nodes of one cluster), driven from one epoll loop."""

    def __init__(
        self,
        address: Address | Sequence[Address],
        prefix: str = "c",
        tls: ssl.SSLContext | None = None,
        password: str | None = None,
        wire: ChatWire = CHAT_WIRE,
    ) -> None:
        """A swarm of the server at `address`, clients named `prefix` + index; over TLS with
        the client context `tls`; presenting `password` before each name; speaking `wire`
        (the chat protocol, or a peer's: bench/wire.py).

        Several addresses (the nodes of a cluster): client i connects to address i mod n, so
        the clients are split evenly and `node_of(i)` says where each one is.
        """
        raise_open_files_limit()
        one = isinstance(address[0], str)
        self.addresses: list[Address] = [address] if one else list(address)  # type: ignore[list-item]
        self.address = self.addresses[0]
        self.prefix = prefix
        self.tls = tls
        self.hello = encode_line(password_line(password)) if password is not None else b""
        self.wire = wire
        self.clients: list[Client] = []
        self.poller = Poller()
        self.sent: dict[int, int] = {}
        # This window's lines from senders of another swarm (another process): name -> count.
        self.foreign: dict[str, int] = {}
        self.stalled: set[int] = set()
        self.arena = ReceiveArena()

    # --- a measured window ---------------------------------------------------------------------

    def begin_window(self, stalled: Iterable[int] = ()) -> None:
        """Forget what was read; stop reading from the `stalled` clients from now on."""
        for client in self.clients:
            client.chunks.clear()
            client.pending = 0
        self.arena.reset()
        self.sent = {}
        self.foreign = {}
        for index in stalled:
            client = self.clients[index]
            if client.state != "closed" and client.events & READ:
                client.events &= ~READ
                self.poller.apply(client)
            self.stalled.add(index)

    def disconnect(self, indices: Iterable[int]) -> None:
        """Close these clients' sockets at once, without a word (a mass disconnect)."""
        for index in indices:
            self.poller.close_client(self.clients[index])

    def unread_bytes(self, index: int) -> int:
        """Bytes waiting in a client's socket receive queue: all that reached a stalled client."""
        client = self.clients[index]
        if client.state == "closed":
            return 0
        answer = fcntl.ioctl(client.sock.fileno(), termios.FIONREAD, b"\0" * 4)
        return struct.unpack("i", answer)[0]

    def resume(self, index: int) -> None:
        """Read a stalled client again; the next `drive` waits for every line sent to it so far."""
        self.stalled.discard(index)
        client = self.clients[index]
        client.pending = self._expected_for(index)
        if client.state != "closed" and not client.events & READ:
            client.events |= READ
            self.poller.apply(client)

    def expect_from(self, name: str, count: int) -> None:
        """This window, `name` (a client of another swarm) sends `count` more lines to the room:
        the next `drive` waits for them too, and `verify` checks them."""
        self.foreign[name] = self.foreign.get(name, 0) + count

    def reserve(self, plans: list[SenderPlan]) -> None:
        """Touch the pages the next window's reads will land on now, before any clock starts."""
        readers = [c for c in self.clients if c.index not in self.stalled and c.state != "closed"]
        self.arena.reserve(expected_bytes(plans, readers))

    def drive(
        self,
        plans: list[SenderPlan],
        timeout_s: float,
        poll_interval_s: float = 0.0,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> DriveReport:
        """Send what `plans` say and read until every reader has every line or the time is up.

        `poll_interval_s` > 0 spaces the polls out (throughput runs only): a server that writes
        one line per send would otherwise have the swarm spend a recv on every single line.
        Nothing read for `idle_timeout_s` with nothing left to send also ends it, timed out.
        """
        self.reserve(plans)
        readers = self._expect(plans)
        # A collection pass over millions of kept chunks would stall the loop for milliseconds.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            intervals_ns = int(poll_interval_s * 1e9), int(idle_timeout_s * 1e9)
            return self._drive(plans, readers, timeout_s, *intervals_ns)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _drive(
        self,
        plans: list[SenderPlan],
        readers: set[int],
        timeout_s: float,
        interval_ns: int,
        idle_ns: int,
    ) -> DriveReport:
        """The window's loop: send what is due, poll (at most every `interval_ns`), read."""
        cpu0, t0 = time.process_time(), time.monotonic_ns()
        paced = self._start_senders(plans, t0)
        window = DriveState(readers, paced, t0, cpu0, deadline_ns=t0 + int(timeout_s * 1e9))
        poll = self.poller.epoll.poll
        last_poll_ns = 0
        while self._still_waiting(window):
            now = time.monotonic_ns()
            if window.out_of_time(now, idle_ns):
                break
            wait_ns = min(window.deadline_ns - now, idle_ns)
            if window.paced:
                wait_ns = self._send_due(window, now)
            if interval_ns and now - last_poll_ns < interval_ns:
                time.sleep((interval_ns - (now - last_poll_ns)) / 1e9)
            last_poll_ns = time.monotonic_ns()
            self._read_ready(window, poll(max(wait_ns, 0) / 1e9))
        return window.report()

    def _still_waiting(self, window: DriveState) -> bool:
        """Whether the loop goes on: someone is short of lines, or a paced sender has more."""
        if window.readers or window.paced:
            return True
        if not window.done:
            return False
        # Everyone's newline count is in: now (off the clock) rule out notices.
        window.readers = {c.index for c in window.done if not self._complete(c)}
        window.done = []
        return bool(window.readers)

    def _read_ready(self, window: DriveState, events: list[tuple[int, int]]) -> None:
        """Flush the writable, read the readable: stamp and keep each chunk, count its newlines.

        The per-read path of the whole benchmark: everything it uses is a local. Reads land in
        the arena's reserved blocks, so no read allocates or touches a fresh page.
        """
        clients, flush = self.poller.clients, self.poller.flush
        tls = self.tls is not None
        readers, done = window.readers, window.done
        monotonic_ns = time.monotonic_ns
        arena = self.arena
        last_read_ns = window.last_read_ns
        for fd, mask in events:
            client = clients[fd]
            if mask & WRITE:
                flush(client)
            if not mask & READABLE:
                continue
            room = arena.room()
            try:
                size = client.sock.recv_into(room)
            except NOT_NOW:
                continue
            except OSError:
                size = 0
            if tls and size:
                size = more_records(client.sock, room, size)
            if size:
                stamp = last_read_ns = monotonic_ns()
                client.chunks.append((stamp, arena.take(room, size)))
                if client.pending > 0:
                    client.pending -= arena.newlines(size)
                    if client.pending <= 0 and client.index in readers:
                        readers.discard(client.index)
                        done.append(client)
                        window.last_line_ns, window.last_line_cpu_s = stamp, time.process_time()
            else:
                self.poller.close_client(client)
                readers.discard(client.index)
        window.last_read_ns = last_read_ns

    def _expect(self, plans: list[SenderPlan]) -> set[int]:
        """Add this window's lines to every reader's expected count; returns the readers."""
        total = sum(p.count for p in plans) + sum(self.foreign.values())
        own = {p.index: p.count for p in plans}
        readers = set()
        for client in self.clients:
            if client.index in self.stalled or client.state == "closed":
                continue
            client.pending += self.wire.expected_newlines(total, own.get(client.index, 0))
            if client.pending > 0:
                readers.add(client.index)
        return readers

    def _complete(self, client: Client) -> bool:
        """Newline count reached: subtract notices and errors, which are not chat lines."""
        client.pending = self._expected_for(client.index) - client.chat_lines_read()
        return client.pending <= 0

    def _expected_for(self, index: int) -> int:
        """Newlines owed to a client for everything sent since the window began."""
        total = sum(self.sent.values()) + sum(self.foreign.values())
        return self.wire.expected_newlines(total, self.sent.get(index, 0))

    def _start_senders(self, plans: list[SenderPlan], t0: int) -> list[PacedSender]:
        """Queue every burst now; return the paced senders, each due from its start offset."""
        paced = []
        for plan in plans:
            first = self.sent.get(plan.index, 0)
            self.sent[plan.index] = first + plan.count
            client = self.clients[plan.index]
            encode = partial(self.wire.message, client.name)
            if plan.rate_per_s <= 0:
                self._queue(client, burst(plan, first, encode))
            elif plan.count > 0:
                paced.append(PacedSender(plan, first, t0, self._watch(plan), encode))
        return paced

    def _watch(self, plan: SenderPlan) -> Watch | None:
        """For a plan with `max_in_flight`: the next client, whose lines tell what arrived.

        It counts every line that client reads, so such a plan is meant to be the only sender.
        """
        if plan.max_in_flight <= 0:
            return None
        watcher = self.clients[(plan.index + 1) % len(self.clients)]
        return Watch(watcher, self.wire.newlines_per_delivery)

    def _send_due(self, window: DriveState, now: int) -> int:
        """Send every paced probe that is due (unless its sender waits); returns the wait (ns)."""
        for sender in window.paced:
            if sender.due_ns <= now and not sender.waiting:
                window.max_lag_ns = max(window.max_lag_ns, now - sender.due_ns)
                self._queue(self.clients[sender.plan.index], sender.lines_due(now))
        window.paced[:] = [sender for sender in window.paced if not sender.finished]
        return next_due_wait_ns(window.paced, now)

    def _queue(self, client: Client, data: bytes) -> None:
        client.wbuf += data
        self.poller.flush(client)

    # --- after the window ----------------------------------------------------------------------

    def verify(
        self,
        indices: Iterable[int] | None = None,
        timed_senders: Iterable[int] | None = None,
        senders: Iterable[int] | None = None,
    ) -> Verdict:
        """Check each sender's sequence at these readers (default: all but the stalled); time it.

        Latencies are kept for the lines of `timed_senders` only (default: every sender).
        `senders`: check only these senders' lines (default: every sender); the others' lines
        are left out, neither counted nor unexpected (a node's own traffic, say).
        """
        verdict = Verdict()
        timed = None if timed_senders is None else {self.clients[i].name for i in timed_senders}
        names = {self.clients[i].name: (i, n) for i, n in self.sent.items()}
        names.update({name: (-1, n) for name, n in self.foreign.items()})
        ignored: set[str] = set()
        if senders is not None:
            kept = {self.clients[i].name for i in senders}
            ignored = {name for name in names if name not in kept}
            names = {name: value for name, value in names.items() if name in kept}
        if indices is None:
            indices = (c.index for c in self.clients if c.index not in self.stalled)
        for index in indices:
            verify_reader(self.clients[index], names, verdict, timed, ignored)
        return verdict

    def close(self) -> None:
        """Close every client socket."""
        for client in self.clients:
            self.poller.close_client(client)
            client.chunks.clear()
        self.poller.close()
        self.arena.release()
