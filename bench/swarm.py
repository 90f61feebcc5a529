"""The client swarm: many chat clients in one process, one epoll loop, no thread per client.

A measured window does the least it can per read: `recv`, stamp, keep the chunk, count newlines.
Everything else (framing with chat.protocol.LineDecoder, parsing server lines and probes,
checking order, duplicates and losses, latency) happens after the window in `verify`. The swarm
records its own CPU time so a result limited by the driver rather than the server is flagged.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import itertools
import select
import socket
import struct
import termios
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from chat.cli import raise_open_files_limit
from chat.probe import parse_probe, probe_text
from chat.protocol import (
    DELIMITER,
    ENCODING,
    ERROR_PREFIX,
    LINE_TOO_LONG,
    NOTICE_PREFIX,
    Accepted,
    ClientHandshake,
    LineDecoder,
    encode_line,
    parse_server_line,
)

RECV_BYTES = 1 << 20
JOIN_RECV_BYTES = 1 << 16  # below malloc's mmap threshold: joining does many small reads
SEND_BYTES = 1 << 18
CONNECT_WAVE = 256
IDLE_TIMEOUT_S = 10.0
DRIVER_SATURATED_FRACTION = 0.9
READ = select.EPOLLIN
WRITE = select.EPOLLOUT
# Errors and hang-ups are reported as readable: the recv that follows sees them.
READABLE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
# How notices and errors start, at the start of a read and after a newline: not chat lines.
SERVER_LINE_PREFIXES = (NOTICE_PREFIX.encode(ENCODING), ERROR_PREFIX.encode(ENCODING))
SERVER_LINE_STARTS = tuple(DELIMITER + prefix for prefix in SERVER_LINE_PREFIXES)


class SwarmError(RuntimeError):
    """The server refused or dropped the swarm's clients while they were joining."""


class Client:
    """One simulated chat client: a non-blocking socket plus what it has read and must send."""

    __slots__ = (
        "index",
        "name",
        "sock",
        "state",
        "joining",
        "chunks",
        "pending",
        "wbuf",
        "woff",
        "events",
    )

    def __init__(self, index: int, name: str, sock: socket.socket) -> None:
        self.index = index
        self.name = name
        self.sock = sock
        self.state = "connecting"
        # While joining: the framing and the client handshake of the server's first lines.
        self.joining: tuple[LineDecoder, ClientHandshake] | None = None
        self.chunks: list[tuple[int, bytes]] = []
        self.pending = 0
        self.wbuf = bytearray()
        self.woff = 0
        self.events = WRITE


@dataclass
class SenderPlan:
    """What one client sends in a window: `count` probes, all at once or at `rate_per_s`."""

    index: int
    count: int
    rate_per_s: float = 0.0
    size: int = 0
    start_offset_s: float = 0.0


@dataclass
class ConnectReport:
    """How long `count` clients took from the first connect to the last welcome."""

    count: int
    connect_s: float
    driver_cpu_s: float

    @property
    def driver_cpu_frac(self) -> float:
        return self.driver_cpu_s / self.connect_s if self.connect_s > 0 else 0.0


@dataclass
class DriveReport:
    """One measured window: wall time to the last expected line, and the driver's own CPU."""

    wall_s: float
    driver_cpu_s: float
    timed_out: bool
    max_send_lag_ms: float

    @property
    def driver_cpu_frac(self) -> float:
        return self.driver_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def driver_saturated(self) -> bool:
        return self.driver_cpu_frac > DRIVER_SATURATED_FRACTION


@dataclass
class Verdict:
    """Delivery check over a whole window: counts and per-delivery latencies (ns)."""

    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    unexpected: int = 0
    latencies_ns: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicates == self.out_of_order == self.unexpected == 0

    def problems(self) -> str:
        return (
            f"expected={self.expected} delivered={self.delivered} lost={self.lost} "
            f"duplicates={self.duplicates} out_of_order={self.out_of_order} "
            f"unexpected={self.unexpected}"
        )


class Poller:
    """`select.epoll` keyed by client: what `selectors` does, minus its per-event bookkeeping.

    The swarm's loop pays this cost once per read, and a read can carry a single line.
    """

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.clients: dict[int, Client] = {}

    def register(self, client: Client, events: int) -> None:
        fd = client.sock.fileno()
        self.epoll.register(fd, events)
        self.clients[fd] = client

    def modify(self, client: Client, events: int) -> None:
        self.epoll.modify(client.sock.fileno(), events)

    def unregister(self, client: Client) -> None:
        fd = client.sock.fileno()
        self.epoll.unregister(fd)
        del self.clients[fd]

    def select(self, timeout_s: float) -> list[tuple[Client, int]]:
        clients = self.clients
        return [(clients[fd], mask) for fd, mask in self.epoll.poll(timeout_s)]

    def close(self) -> None:
        self.epoll.close()


class Swarm:
    """Many clients of one server, driven from one epoll loop."""

    def __init__(self, address: tuple[str, int], prefix: str = "c") -> None:
        raise_open_files_limit()
        self.address = address
        self.prefix = prefix
        self.clients: list[Client] = []
        self.poller = Poller()
        self.sent: dict[int, int] = {}
        self.stalled: set[int] = set()

    # --- joining -------------------------------------------------------------------------------

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
        err = sock.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise SwarmError(f"connect failed: {errno.errorcode.get(err, err)}")
        client = Client(index, f"{self.prefix}{index}", sock)
        self.clients.append(client)
        self.poller.register(client, WRITE)

    def _advance_join(self, client: Client, mask: int) -> bool:
        """One step of a client's join; True when it has just been welcomed."""
        if client.state == "connecting" and mask & WRITE:
            err = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise SwarmError(f"{client.name}: connect failed: {errno.errorcode.get(err, err)}")
            client.sock.send(encode_line(client.name))
            client.state = "joining"
            client.joining = (LineDecoder(max_line_bytes=RECV_BYTES), ClientHandshake())
            client.events = READ
            self.poller.modify(client, READ)
            return False
        if not mask & READABLE:
            return False
        data = self._recv_or_close(client)
        if client.state != "joining" or data is None:
            return False
        if not data:
            raise SwarmError(f"{client.name}: closed while joining: {bytes(client.wbuf)!r}")
        client.wbuf += data  # nothing to send yet, so the write buffer holds the greeting
        assert client.joining is not None
        decoder, handshake = client.joining
        for raw in decoder.feed(data):
            if raw is LINE_TOO_LONG:
                continue
            outcome = handshake.line_received(raw.decode(ENCODING, "replace"))
            if isinstance(outcome, Accepted):
                # What followed the welcome in this read (join notices) is not kept, as settle()
                # would discard it anyway.
                client.state = "joined"
                client.joining = None
                client.wbuf.clear()
                return True
            if outcome is not None:
                raise SwarmError(f"{client.name}: refused: {bytes(client.wbuf)!r}")
        return False

    def _recv_or_close(self, client: Client) -> bytes | None:
        """What one recv gives: None when nothing is there yet, b"" (and closed) at EOF."""
        try:
            data = client.sock.recv(JOIN_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            self._close(client)
        return data

    def _close(self, client: Client) -> None:
        if client.state != "closed":
            if client.events:
                self.poller.unregister(client)
                client.events = 0
            client.sock.close()
            client.state = "closed"

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
                    total += len(self._recv_or_close(client) or b"")
        return total

    # --- a measured window ---------------------------------------------------------------------

    def begin_window(self, stalled: Iterable[int] = ()) -> None:
        """Forget what was read; stop reading from the `stalled` clients from now on."""
        for client in self.clients:
            client.chunks.clear()
            client.pending = 0
        self.sent = {}
        for index in stalled:
            client = self.clients[index]
            if client.state != "closed" and client.events & READ:
                client.events &= ~READ
                self._apply_events(client)
            self.stalled.add(index)

    def disconnect(self, indices: Iterable[int]) -> None:
        """Close these clients' sockets at once, without a word (a mass disconnect)."""
        for index in indices:
            self._close(self.clients[index])

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
            self._apply_events(client)

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
        cpu0, t0 = time.process_time(), time.monotonic_ns()
        deadline = t0 + int(timeout_s * 1e9)
        paced = self._start_senders(plans, t0)
        last_line_ns, last_read_ns, last_poll_ns, max_lag_ns = t0, t0, 0, 0
        last_line_cpu = cpu0
        poll = self.poller.epoll.poll
        clients = self.poller.clients
        # One preallocated buffer: a fresh 1 MiB bytes per recv would cost an mmap each time.
        rbuf = bytearray(RECV_BYTES)
        rview = memoryview(rbuf)
        done: list[Client] = []
        while readers or paced or done:
            if not readers and not paced:
                # Everyone's newline count is in: now (off the clock) rule out notices.
                readers = {c.index for c in done if not self._complete(c)}
                done = []
                if not readers:
                    break
            now = time.monotonic_ns()
            # Nothing read for idle_ns with nothing left to send: the server is stuck.
            if now > deadline or (not paced and now - last_read_ns > idle_ns):
                break
            wait_ns = min(deadline - now, idle_ns)
            if paced:
                lag_ns, wait_ns = self._send_due(paced, now)
                max_lag_ns = max(max_lag_ns, lag_ns)
            if interval_ns and now - last_poll_ns < interval_ns:
                time.sleep((interval_ns - (now - last_poll_ns)) / 1e9)
            last_poll_ns = time.monotonic_ns()
            for fd, mask in poll(max(wait_ns, 0) / 1e9):
                client = clients[fd]
                if mask & WRITE:
                    self._flush(client)
                if not mask & READABLE:
                    continue
                try:
                    size = client.sock.recv_into(rbuf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    size = 0
                if size:
                    stamp = last_read_ns = time.monotonic_ns()
                    data = rview[:size].tobytes()
                    client.chunks.append((stamp, data))
                    if client.pending > 0:
                        client.pending -= data.count(b"\n")
                        if client.pending <= 0 and client.index in readers:
                            readers.discard(client.index)
                            done.append(client)
                            last_line_ns, last_line_cpu = stamp, time.process_time()
                else:
                    self._close(client)
                    readers.discard(client.index)
        timed_out = bool(readers or paced or done)
        # The window ends with the last expected line, not with the checks that follow it.
        end_ns = time.monotonic_ns() if timed_out else last_line_ns
        cpu_s = (time.process_time() if timed_out else last_line_cpu) - cpu0
        return DriveReport((end_ns - t0) / 1e9, cpu_s, timed_out, max_lag_ns / 1e6)

    def _expect(self, plans: list[SenderPlan]) -> set[int]:
        """Add this window's lines to every reader's expected count; returns the readers."""
        total = sum(p.count for p in plans)
        own = {p.index: p.count for p in plans}
        readers = set()
        for client in self.clients:
            if client.index in self.stalled or client.state == "closed":
                continue
            client.pending += total - own.get(client.index, 0)
            if client.pending > 0:
                readers.add(client.index)
        return readers

    def _complete(self, client: Client) -> bool:
        """Newline count reached: subtract notices and errors, which are not chat lines."""
        data = b"".join(chunk for _, chunk in client.chunks)
        other = sum(map(data.count, SERVER_LINE_STARTS)) + data.startswith(SERVER_LINE_PREFIXES)
        expected = self._expected_for(client.index)
        client.pending = expected - (data.count(b"\n") - other)
        return client.pending <= 0

    def _expected_for(self, index: int) -> int:
        return sum(n for sender, n in self.sent.items() if sender != index)

    def _start_senders(self, plans: list[SenderPlan], t0: int) -> list[list]:
        """Queue every burst now; return the paced senders' schedules [due_ns, step_ns, plan, k]."""
        paced = []
        for plan in plans:
            first = self.sent.get(plan.index, 0)
            self.sent[plan.index] = first + plan.count
            client = self.clients[plan.index]
            if plan.rate_per_s <= 0:
                stamp = time.monotonic_ns()
                lines = [
                    encode_line(probe_text(first + k, stamp, plan.size)) for k in range(plan.count)
                ]
                self._queue(client, b"".join(lines))
            elif plan.count > 0:
                step_ns = int(1e9 / plan.rate_per_s)
                due = t0 + int(plan.start_offset_s * 1e9)
                paced.append([due, step_ns, plan, first, first + plan.count])
        return paced

    def _send_due(self, paced: list[list], now: int) -> tuple[int, int]:
        """Send every paced probe that is due, stamped now; returns (max lag, wait) in ns."""
        lag = 0
        for entry in paced:
            due, step_ns, plan, seq, end = entry
            if due > now:
                continue
            lag = max(lag, now - due)
            lines = []
            while due <= now and seq < end:
                lines.append(encode_line(probe_text(seq, now, plan.size)))
                due += step_ns
                seq += 1
            entry[0], entry[3] = due, seq
            self._queue(self.clients[plan.index], b"".join(lines))
        paced[:] = [entry for entry in paced if entry[3] < entry[4]]
        wait = min((entry[0] for entry in paced), default=now + 500_000_000) - now
        return lag, wait

    def _queue(self, client: Client, data: bytes) -> None:
        client.wbuf += data
        self._flush(client)

    def _flush(self, client: Client) -> None:
        buf = client.wbuf
        with memoryview(buf) as view:
            while client.woff < len(buf):
                try:
                    sent = client.sock.send(view[client.woff : client.woff + SEND_BYTES])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    client.woff = len(buf)
                    break
                client.woff += sent
        if client.woff >= len(buf):
            buf.clear()
            client.woff = 0
            wanted = client.events & ~WRITE
        else:
            wanted = client.events | WRITE
        if wanted != client.events and client.state != "closed":
            client.events = wanted
            self._apply_events(client)

    def _apply_events(self, client: Client) -> None:
        registered = client.sock.fileno() in self.poller.clients
        if client.events and registered:
            self.poller.modify(client, client.events)
        elif client.events:
            self.poller.register(client, client.events)
        elif registered:
            self.poller.unregister(client)

    # --- after the window ----------------------------------------------------------------------

    def verify(
        self, indices: Iterable[int] | None = None, timed_senders: Iterable[int] | None = None
    ) -> Verdict:
        """Check each sender's sequence at these readers (default: all but the stalled); time it.

        Latencies are kept for the lines of `timed_senders` only (default: every sender).
        """
        verdict = Verdict()
        timed = None if timed_senders is None else {self.clients[i].name for i in timed_senders}
        names = {self.clients[i].name: (i, n) for i, n in self.sent.items()}
        if indices is None:
            indices = (c.index for c in self.clients if c.index not in self.stalled)
        for index in indices:
            self._verify_reader(self.clients[index], names, verdict, timed)
        return verdict

    def _verify_reader(
        self, client: Client, names: dict, verdict: Verdict, timed: set[str] | None = None
    ) -> None:
        decoder = LineDecoder(max_line_bytes=RECV_BYTES)
        seqs: dict[str, list[int]] = {n: [] for n, (i, _) in names.items() if i != client.index}
        latencies = verdict.latencies_ns
        senders: dict[bytes, str | None] = {}
        for stamp, chunk in client.chunks:
            for raw in decoder.feed(chunk):
                if raw is LINE_TOO_LONG:
                    verdict.unexpected += 1
                    continue
                head, sep, body = raw.partition(b": ")
                name = senders.get(head, False) if sep else None
                if name is False:
                    name = senders[head] = _chat_sender(raw)
                elif name is None and not sep:
                    name = _chat_sender(raw)
                if name is None:
                    continue
                probe = parse_probe(body.decode("utf-8", "replace"))
                if probe is None or name not in seqs:
                    verdict.unexpected += 1
                    continue
                seqs[name].append(probe[0])
                if timed is None or name in timed:
                    latencies.append(stamp - probe[1])
        for name, got in seqs.items():
            _check_sequence(got, names[name][1], verdict)

    def close(self) -> None:
        """Close every client socket."""
        for client in self.clients:
            self._close(client)
        self.poller.close()


def _chat_sender(raw: bytes) -> str | None:
    """The sender of a chat line (chat.protocol decides), None for notices, errors, privates.

    What parse_server_line says depends only on the part before the first ": ", so the caller
    caches the answer per distinct prefix instead of parsing every one of millions of lines.
    """
    line = parse_server_line(raw.decode("utf-8", "replace"))
    return line.name if line.kind == "chat" else None


def _check_sequence(got: list[int], count: int, verdict: Verdict) -> None:
    """One reader's view of one sender, who sent seqs 0..count-1 in this order."""
    verdict.expected += count
    if got == list(range(count)):
        verdict.delivered += count
        return
    unique = set(got)
    valid = len(unique & set(range(count)))
    verdict.delivered += valid
    verdict.lost += count - valid
    verdict.duplicates += len(got) - len(unique)
    verdict.unexpected += len(unique) - valid
    verdict.out_of_order += sum(1 for a, b in itertools.pairwise(got) if b < a)


def percentile_ms(values_ns: list[int], q: float) -> float:
    """The q-th percentile (0..100) of nanosecond samples, in milliseconds; nan when empty."""
    if not values_ns:
        return float("nan")
    ordered = sorted(values_ns)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank] / 1e6
