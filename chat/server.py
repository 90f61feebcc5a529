"""The chat server: a listener, one reader thread per client, a thread-safe registry, shutdown, CLI.

Wire format: chat/protocol.py (docs/PROTOCOL.md). How bytes reach clients: chat/delivery.py.
Run it with `python -m chat.server --help`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

from chat import protocol
from chat.admission import (
    EXEMPT_NETWORKS,
    MAX_PER_ADDRESS,
    NEW_PER_ADDRESS_PER_MIN,
    Admission,
    Network,
    parse_networks,
)
from chat.delivery import (
    MAX_QUEUED_TOTAL_BYTES,
    WRITE_DEADLINE_S,
    Delivery,
    Outbox,
    make_delivery,
)
from chat.flood import (
    FLOOD_BURST_BYTES,
    FLOOD_RATE_BYTES_PER_S,
    FloodBudget,
    delivery_cost,
)
from chat.protocol import LINE_TOO_LONG, Command, Leave, Message, Refused, encode_line
from chat.texts import Texts, default_lang

log = logging.getLogger("chat.server")
ready_log = logging.getLogger(
    "chat.server.ready"
)  # the `listening on` line, shown even with --quiet

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555
MAX_PENDING_BYTES = 16 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 30.0
MAX_CLIENTS = 10_000
# Connections still without a name: never more than this, so they cannot fill the server. A new
# one over it pushes out the one that has waited longest (real clients name themselves at once).
MAX_UNNAMED = 1_000
# Descriptors the process needs besides its clients' sockets (listener, wake pipes, selectors,
# log files, a spare for refusing clients when out of descriptors).
RESERVED_FDS = 64
NOTICE_LIMIT = 1_000
RECV_BYTES = 65_536
LISTEN_BACKLOG = 4096
THREAD_STACK_BYTES = 256 * 1024
# CPython's default 5 ms GIL switch interval makes every thread that waits for the GIL wake every
# 5 ms. When thousands of reader threads become runnable at once (a mass disconnect), those timed
# wake-ups swamp the machine: 10,000 leaves took 5-9 s and SIGTERM then missed its 2 s. Our threads
# release the GIL at every recv and send, so a longer interval rarely forces a switch otherwise.
SWITCH_INTERVAL_S = 0.05
SHUTDOWN_FLUSH_S = 0.5  # of the 2 s a stop may take: flushing the goodbye notice
SHUTDOWN_JOIN_S = 0.3  # and then for reader threads (daemons: their sockets are already shut down)
THROTTLE_CHECK_S = 0.25  # a throttled reader looks up this often to see whether it was cut
WELCOME_NAMES = 20
WHO_LINE_BYTES = 1000  # a /who line, "* " included, newline not


@dataclass
class Config:
    """Everything a server can be told; the CLI options map one to one."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_line: int = protocol.MAX_LINE_BYTES
    max_pending: int = MAX_PENDING_BYTES
    write_deadline: float = WRITE_DEADLINE_S
    max_queued_total: int = MAX_QUEUED_TOTAL_BYTES
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S
    max_clients: int = MAX_CLIENTS
    notice_limit: int = NOTICE_LIMIT
    delivery: str = "queued"
    writers: int = 1
    flood_rate: int = FLOOD_RATE_BYTES_PER_S
    flood_burst: int = FLOOD_BURST_BYTES
    max_per_address: int = MAX_PER_ADDRESS
    new_per_address: int = NEW_PER_ADDRESS_PER_MIN
    exempt: tuple[Network, ...] = parse_networks(",".join(EXEMPT_NETWORKS))
    max_unnamed: int = MAX_UNNAMED
    lang: str = "en"


class Client:
    """One connection: its socket, name, outbox and counters (each written by one thread)."""

    __slots__ = (
        "sock",
        "peer",
        "name",
        "box",
        "decoder",
        "reason",
        "messages_in",
        "bytes_in",
        "deliveries_out",
        "budget",
        "cost",
        "throttled",
        "host",
    )

    def __init__(
        self, sock: socket.socket, host: str, port: int, max_line: int, budget: FloodBudget
    ) -> None:
        self.sock = sock
        self.host = host
        self.peer = f"{host}:{port}"
        self.name: str | None = None
        self.box: Outbox = None  # type: ignore[assignment]  # set right after by the server
        self.decoder = protocol.LineDecoder(max_line)
        self.reason: str | None = None  # why the server disconnected it, if it did
        self.messages_in = 0
        self.bytes_in = 0
        self.deliveries_out = 0
        self.budget = budget
        self.cost = 0  # what this client's lines made the server send, not yet charged
        self.throttled = 0  # times its reader stopped reading because it was over budget

    def over_budget(self, upcoming: int) -> bool:
        """Would what it already caused, plus `upcoming`, put it over its flood budget?"""
        return self.budget.available(time.monotonic()) < self.cost + upcoming


class Registry:
    """Named clients. Changes are locked; `members` is an immutable snapshot, rebuilt lazily."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, Client] = {}
        self._snapshot: tuple[tuple[Client, ...], tuple[Outbox, ...]] | None = ((), ())

    def __len__(self) -> int:
        return len(self._by_key)

    def _current(self) -> tuple[tuple[Client, ...], tuple[Outbox, ...]]:
        snapshot = self._snapshot
        if snapshot is None:
            with self._lock:
                members = tuple(self._by_key.values())
                snapshot = self._snapshot = (members, tuple(m.box for m in members))
        return snapshot

    @property
    def members(self) -> tuple[Client, ...]:
        """Everyone named, in joining order. Cheap while nobody joins or leaves."""
        return self._current()[0]

    @property
    def boxes(self) -> tuple[Outbox, ...]:
        """The members' outboxes, same order: what a broadcast iterates."""
        return self._current()[1]

    def first(self, count: int) -> tuple[int, list[str]]:
        """How many are online and the first `count` names, without a full snapshot."""
        with self._lock:
            return len(self._by_key), [c.name for c in islice(self._by_key.values(), count)]  # type: ignore[misc]

    def add(self, client: Client, name: str) -> bool:
        key = protocol.name_key(name)
        with self._lock:
            if key in self._by_key:
                return False
            client.name = name
            self._by_key[key] = client
            self._snapshot = None
        return True

    def remove(self, client: Client) -> bool:
        with self._lock:
            if (
                client.name is None
                or self._by_key.get(protocol.name_key(client.name)) is not client
            ):
                return False
            del self._by_key[protocol.name_key(client.name)]
            self._snapshot = None
        return True

    def rename(self, client: Client, new: str) -> bool:
        old_key, new_key = protocol.name_key(client.name or ""), protocol.name_key(new)
        with self._lock:
            owner = self._by_key.get(new_key)
            if owner is not None and owner is not client:
                return False
            del self._by_key[old_key]
            self._by_key[new_key] = client
            client.name = new
            self._snapshot = None
        return True

    def get(self, name: str) -> Client | None:
        with self._lock:
            return self._by_key.get(protocol.name_key(name))


class ChatServer:
    """A thread-per-client chat server. `bind()`, then `serve_forever()`; `stop()` from anywhere."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.texts = Texts(config.lang)
        self.registry = Registry()
        self.delivery: Delivery = make_delivery(
            config.delivery,
            config.max_pending,
            config.writers,
            write_deadline_s=config.write_deadline,
            max_queued_total=config.max_queued_total,
        )
        self._connections: set[Client] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()  # guards _connections, _threads and the retired totals
        self._retired = {"messages_in": 0, "bytes_in": 0, "deliveries_out": 0, "throttled": 0}
        self._slow_consumers = 0
        self._started = time.monotonic()
        self._stopping = threading.Event()
        self._closing = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener: socket.socket | None = None
        self.admission = Admission(config.max_per_address, config.new_per_address, config.exempt)
        # Connections without a name yet and their handshake deadlines, oldest first; the accept
        # loop closes those past their deadline, so no reader thread needs a timer of its own.
        self._unnamed: dict[Client, float] = {}
        self._spare_fd: int | None = _open_spare_fd()

    # --- life cycle --------------------------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        """Open the listening socket; returns the address actually bound (port 0 picks one)."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self._listener = socket.create_server(
            (self.config.host, self.config.port), family=family, backlog=LISTEN_BACKLOG
        )
        self._listener.setblocking(False)
        host, port = self._listener.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        """Accept connections until stop(); each gets its own reader thread."""
        assert self._listener is not None, "bind() first"
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select(self._expire_unnamed()):
                    if key.fileobj is self._listener:
                        self._accept_ready()
        self._listener.close()

    def stop(self) -> None:
        """Ask serve_forever() to return. Safe from signal handlers and other threads."""
        self._stopping.set()
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def shutdown(self) -> None:
        """After serve_forever(): tell everyone, close every connection, wait briefly."""
        self.stop()
        self._closing = True  # from now on nobody is told who left: everyone is leaving
        with self._lock:
            boxes = [client.box for client in self._connections]
            threads = list(self._threads)
        line = encode_line(protocol.notice_line(self.texts("shutdown")))
        self.delivery.farewell(boxes, line, SHUTDOWN_FLUSH_S)
        deadline = time.monotonic() + SHUTDOWN_JOIN_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.delivery.close()
        self._wake_r.close()
        self._wake_w.close()

    def stats(self) -> dict[str, int | float]:
        """The counters `/stats` reports."""
        with self._lock:
            totals = dict(self._retired)
            live = list(self._connections)
        for client in live:
            for key in totals:
                totals[key] += getattr(client, key)
        throttled = totals.pop("throttled")
        return {
            "clients": len(self.registry),
            "connections": len(live),
            **totals,
            "bytes_out": self.delivery.bytes_out(),
            "slow_consumers": self._slow_consumers,
            "throttled": throttled,
            **self.delivery.counters(),
            "uptime_s": round(time.monotonic() - self._started, 1),
        }

    # --- accepting -----------------------------------------------------------------------------

    def _accept_ready(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, addr = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            self._admit(sock, addr[0], addr[1])

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors: free the spare one, take the waiting client, tell it, close it;
        otherwise it would hang unanswered while accept fails again at once, in a loop."""
        log.warning("accept failed: %s", exc)
        if self._spare_fd is None or self._listener is None:
            time.sleep(0.05)
            return
        os.close(self._spare_fd)
        try:
            sock, addr = self._listener.accept()
        except OSError:
            time.sleep(0.05)
        else:
            log.warning("refused %s:%s: out of file descriptors", addr[0], addr[1])
            self._refuse(sock, self.texts("full", limit=len(self._connections)))
        self._spare_fd = _open_spare_fd()

    def _admit(self, sock: socket.socket, host: str, port: int) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            full = len(self._connections) >= self.config.max_clients
        if full:
            log.warning("refused %s:%s: server full", host, port)
            self._refuse(sock, self.texts("full", limit=self.config.max_clients))
            return
        refusal = self.admission.admit(host, time.monotonic())
        if refusal is not None:
            log.warning("refused %s:%s: %s", host, port, refusal.replace("_", " "))
            limit = self.config.max_per_address if refusal == "address_busy" else None
            self._refuse(sock, self.texts(refusal, limit=limit or self.config.new_per_address))
            return
        now = time.monotonic()
        budget = FloodBudget(self.config.flood_rate, self.config.flood_burst, now)
        client = Client(sock, host, port, self.config.max_line, budget)
        client.box = self.delivery.outbox(sock, lambda: self._slow_consumer(client))
        thread = threading.Thread(
            target=self._serve_client, args=(client,), name=f"client-{client.peer}", daemon=True
        )
        with self._lock:
            self._connections.add(client)
            self._threads.add(thread)
            self._unnamed[client] = now + self.config.handshake_timeout
            crowded = len(self._unnamed) > self.config.max_unnamed
        if crowded:
            self._push_out_oldest_unnamed()
        try:
            thread.start()
        except RuntimeError:  # no more threads: the OS, not max-clients, is the limit
            log.warning("refused %s: cannot start a thread", client.peer)
            with self._lock:
                self._connections.discard(client)
                self._threads.discard(thread)
                self._unnamed.pop(client, None)
            self.admission.release(host)
            self._refuse(sock, self.texts("full", limit=len(self._connections)))

    def _expire_unnamed(self) -> float | None:
        """Close connections past their handshake deadline; seconds until the next one is due."""
        now = time.monotonic()
        expired = []
        with self._lock:
            for client, deadline in self._unnamed.items():  # oldest first: deadlines ascend
                if deadline > now:
                    break
                expired.append(client)
            for client in expired:
                del self._unnamed[client]
            following = next(iter(self._unnamed.values()), None)
        seconds = self.config.handshake_timeout
        for client in expired:
            self._cut(client, "handshake timeout", self.texts("handshake_timeout", seconds=seconds))
        return None if following is None else max(0.0, following - now)

    def _push_out_oldest_unnamed(self) -> None:
        with self._lock:
            oldest = next(iter(self._unnamed), None)
            if oldest is not None:
                del self._unnamed[oldest]
        if oldest is not None:
            log.warning("closed %s: too many connections without a name", oldest.peer)
            self._cut(oldest, "pushed out", self.texts("unnamed_full"))

    def _cut(self, client: Client, reason: str, text: str) -> bool:
        """Disconnect `client` from any thread: a best-effort error line, then its socket is shut,
        which ends its reader thread's recv. False: it was already being cut."""
        with self._lock:
            if client.reason is not None:
                return False
            client.reason = reason
        self.delivery.kill(client.box, encode_line(protocol.error_line(text)))
        return True

    @staticmethod
    def _refuse(sock: socket.socket, reason: str) -> None:
        try:
            sock.send(encode_line(protocol.error_line(reason)), socket.MSG_DONTWAIT)
        except OSError:
            pass
        sock.close()

    # --- one client's thread -------------------------------------------------------------------

    def _serve_client(self, client: Client) -> None:
        try:
            self._notice(client, "hello")
            if self._handshake(client):
                self._chat(client)
        except OSError:  # reset, broken pipe, shut down: the client is gone, nothing to report
            pass
        except Exception:  # a bug in the server: log it, keep serving everyone else
            log.exception("error serving %s", client.peer)
        finally:
            self._finish(client)

    def _handshake(self, client: Client) -> bool:
        """Read lines until a name is accepted (True) or the client leaves or is cut (False).
        The accept loop cuts it when the handshake deadline passes."""
        while True:
            data = client.sock.recv(RECV_BYTES)
            if not data:
                return False
            client.bytes_in += len(data)
            lines = client.decoder.feed(data)
            for index, line in enumerate(lines):
                verdict = self._try_name(client, line)
                if verdict is None:
                    continue
                if verdict:
                    return self._handle_lines(client, lines[index + 1 :]) and self._pay(client)
                return False
            if not self._pay(client):
                return False

    def _try_name(self, client: Client, line: bytes | protocol.LineTooLong) -> bool | None:
        """True: name accepted; False: the client asked to leave; None: refused, keep waiting."""
        text = self._decode(client, line)
        if text is None:
            return None
        name = text.strip()
        if not name:
            return None
        if name in protocol.LEAVE_WORDS:
            return False
        if not self._name_allowed(client, name):
            return None
        name = protocol.normalize_name(name)
        if not self.registry.add(client, name):
            self._error(client, "name_taken", name=name)
            return None
        with self._lock:
            named_in_time = self._unnamed.pop(client, None) is not None
        if not named_in_time:  # its deadline passed, or it was pushed out, as the name came
            self.registry.remove(client)
            return False
        self._joined(client)
        return True

    def _name_allowed(self, client: Client, name: str) -> bool:
        problem = protocol.name_problem(name)
        if problem is not None:
            key = "name_" + problem.replace("-", "_")  # the texts catalogue has one per code
            self._error(client, key, name=name, limit=protocol.MAX_NAME_CHARS)
            return False
        return True

    def _joined(self, client: Client) -> None:
        count, names = self.registry.first(WELCOME_NAMES)
        if count > WELCOME_NAMES:
            names.append(self.texts("more", n=count - WELCOME_NAMES))
        self._notice(client, "welcome", name=client.name, count=count, names=", ".join(names))
        log.info("%s", self.texts("joined", name=client.name))
        self._announce(client, "joined", name=client.name)

    def _chat(self, client: Client) -> None:
        sock, decoder = client.sock, client.decoder
        while True:
            data = sock.recv(RECV_BYTES)
            if not data:
                return
            client.bytes_in += len(data)
            if not (self._handle_lines(client, decoder.feed(data)) and self._pay(client)):
                return

    def _pay(self, client: Client) -> bool:
        """Charge what the client's lines made the server send; over budget, stop reading until
        the bucket refills, so TCP pushes back on the sender. False: the server is stopping."""
        budget = client.budget
        budget.charge(client.cost, time.monotonic())
        client.cost = 0
        wait_s = budget.wait_s(time.monotonic())
        if wait_s > 0:
            client.throttled += 1
        while wait_s > 0 and client.reason is None:
            if self._stopping.wait(min(wait_s, THROTTLE_CHECK_S)):
                return False
            wait_s = budget.wait_s(time.monotonic())
        return True

    def _handle_lines(self, client: Client, lines: Sequence[bytes | protocol.LineTooLong]) -> bool:
        """Act on a read's worth of lines; runs of messages go out as one batch, cut short when
        the sender runs out of flood budget (it then waits). False: leave, or server stopping."""
        batch: list[str] = []
        batch_cost = 0
        fanout = len(self.registry) - 1
        name_bytes = len(client.name or "") + len(": ")  # each chat line's prefix
        for line in lines:
            text = self._decode(client, line)
            if text is None:
                continue
            parsed = protocol.parse_client_line(text)
            if isinstance(parsed, Message):
                batch.append(parsed.text)
                batch_cost += delivery_cost(name_bytes + len(line), fanout)  # type: ignore[arg-type]
                if client.over_budget(batch_cost):
                    self._broadcast_messages(client, batch)
                    batch, batch_cost = [], 0
                    if not self._pay(client):
                        return False
                continue
            if parsed is None:
                continue
            self._broadcast_messages(client, batch)
            batch, batch_cost = [], 0
            if isinstance(parsed, Leave):
                self._notice(client, "bye", name=client.name)
                return False
            if isinstance(parsed, Refused):
                self._error(client, "bad_text")
            else:
                self._command(client, parsed)
            if client.over_budget(0) and not self._pay(client):
                return False
        self._broadcast_messages(client, batch)
        return True

    def _decode(self, client: Client, line: bytes | protocol.LineTooLong) -> str | None:
        if line is LINE_TOO_LONG:
            self._error(client, "line_too_long", limit=self.config.max_line)
            return None
        try:
            return line.decode(protocol.ENCODING)  # type: ignore[union-attr]
        except UnicodeDecodeError:
            self._error(client, "bad_utf8")
            return None

    def _broadcast_messages(self, client: Client, texts: list[str]) -> None:
        if not texts:
            return
        client.messages_in += len(texts)
        if log.isEnabledFor(logging.INFO):
            for text in texts:
                log.info("%s", protocol.chat_line(client.name, protocol.for_log(text)))  # type: ignore[arg-type]
        lines = [encode_line(protocol.chat_line(client.name, text)) for text in texts]  # type: ignore[arg-type]
        recipients = self.delivery.broadcast(client.box, self.registry.boxes, lines)
        client.deliveries_out += recipients * len(texts)
        client.cost += delivery_cost(sum(map(len, lines)), recipients, len(lines))

    def _finish(self, client: Client) -> None:
        if self.registry.remove(client):
            if client.reason == "slow consumer":
                log.warning("%s disconnected: slow consumer", client.name)
                self._announce(client, "slow_consumer_left", name=client.name)
            else:
                log.info("%s", self.texts("left", name=client.name))
                self._announce(client, "left", name=client.name)
        self.delivery.retire(client.box)
        self.admission.release(client.host)
        with self._lock:
            self._unnamed.pop(client, None)
            self._connections.discard(client)
            self._threads.discard(threading.current_thread())
            self._retired["messages_in"] += client.messages_in
            self._retired["bytes_in"] += client.bytes_in
            self._retired["deliveries_out"] += client.deliveries_out

    def _slow_consumer(self, client: Client) -> None:
        text = self.texts("slow_consumer", limit=self.config.max_pending)
        if self._cut(client, "slow consumer", text):
            with self._lock:
                self._slow_consumers += 1

    # --- commands ------------------------------------------------------------------------------

    def _command(self, client: Client, command: Command) -> None:
        handler = getattr(self, f"_cmd_{command.name}", None) if command.name.isalpha() else None
        if handler is None:
            self._error(client, "unknown_command", command=command.name)
        else:
            handler(client, command.arg)

    def _cmd_who(self, client: Client, arg: str) -> None:
        names = sorted((m.name for m in self.registry.members), key=str.casefold)  # type: ignore[arg-type]
        first = self.texts("who", count=len(names), names="")
        width = WHO_LINE_BYTES - len(protocol.notice_line("").encode())
        for chunk in _wrap(names, width, first):
            self._send(client, protocol.notice_line(chunk))

    def _cmd_msg(self, client: Client, arg: str) -> None:
        target_name, _, text = arg.partition(" ")
        if not target_name or not text.strip():
            self._error(client, "usage_msg")
            return
        target = self.registry.get(target_name)
        if target is None:
            self._error(client, "no_such_user", name=target_name)
            return
        client.messages_in += 1
        client.deliveries_out += 1
        log.info("%s -> %s: a private message", client.name, target.name)
        log.debug("%s -> %s: %s", client.name, target.name, protocol.for_log(text))
        self._send(target, protocol.private_line(client.name, text), payer=client)  # type: ignore[arg-type]

    def _cmd_nick(self, client: Client, arg: str) -> None:
        new = arg.strip()
        if not new:
            self._error(client, "usage_nick")
            return
        if not self._name_allowed(client, new):
            return
        new, old = protocol.normalize_name(new), client.name
        if new == old:  # nothing changes: nobody needs to hear about it
            self._notice(client, "you_are", name=new)
            return
        if not self.registry.rename(client, new):
            self._error(client, "name_taken", name=new)
            return
        log.info("%s", self.texts("renamed", old=old, new=new))
        self._notice(client, "you_are", name=new)
        self._announce(client, "renamed", old=old, new=new)

    def _cmd_help(self, client: Client, arg: str) -> None:
        for line in self.texts.lines("help", limit=self.config.notice_limit):
            self._send(client, protocol.notice_line(line))

    def _cmd_stats(self, client: Client, arg: str) -> None:
        self._send(client, protocol.notice_line(protocol.format_stats(self.stats())))

    # --- sending helpers -----------------------------------------------------------------------

    def _send(self, client: Client, line: str, payer: Client | None = None) -> None:
        """One line to one client, charged to whoever caused it (the client itself by default)."""
        data = encode_line(line)
        (payer or client).cost += delivery_cost(len(data), 1)
        self.delivery.send(client.box, data)

    def _notice(self, client: Client, key: str, **fields: object) -> None:
        self._send(client, protocol.notice_line(self.texts(key, **fields)))

    def _error(self, client: Client, key: str, **fields: object) -> None:
        self._send(client, protocol.error_line(self.texts(key, **fields)))

    def _announce(self, client: Client, key: str, **fields: object) -> None:
        """A join/leave/rename notice to everyone else, unless the room is past the notice limit."""
        if self._closing or len(self.registry) > self.config.notice_limit:
            return
        line = encode_line(protocol.notice_line(self.texts(key, **fields)))
        recipients = self.delivery.broadcast(client.box, self.registry.boxes, [line])
        client.cost += delivery_cost(len(line), recipients)


def _wrap(names: list[str], width: int, first: str) -> list[str]:
    """Join names with ", " into lines of at most `width` UTF-8 bytes, the first starting `first`.

    Bytes, not characters: a name of 32 four-byte characters is 128 bytes on the wire."""
    lines, current, size = [], first, len(first.encode())
    for name in names:
        sep = "" if current in (first, "") else ", "
        cost = len(sep) + len(name.encode())
        if size + cost > width and current not in (first, ""):
            lines.append(current)
            current, sep, size, cost = "", "", 0, cost - len(sep)
        current += sep + name
        size += cost
    lines.append(current)
    return lines


# --- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-server",
        description="A multi-user TCP chat server, one thread per client (docs/PROTOCOL.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, help="address to listen on (use ::1 for IPv6 loopback)")
    add("--port", type=_port, default=DEFAULT_PORT, help="TCP port; 0 picks a free one")
    add(
        "--max-line",
        type=_positive_int,
        default=protocol.MAX_LINE_BYTES,
        help="longest line a client may send, in bytes; longer lines are discarded with an error",
    )
    add(
        "--max-pending",
        type=_positive_int,
        default=MAX_PENDING_BYTES,
        help="bytes queued for one client whose kernel buffers are full before it is "
        "disconnected as a slow consumer",
    )
    add(
        "--write-deadline",
        type=_positive_float,
        default=WRITE_DEADLINE_S,
        help="seconds a client whose kernel buffers are full may take no byte at all before it "
        "is disconnected as a slow consumer",
    )
    add(
        "--max-queued-total",
        type=_positive_int,
        default=MAX_QUEUED_TOTAL_BYTES,
        help="bytes queued for all clients together (real cost); over it the clients holding "
        "the most are disconnected, biggest first",
    )
    add(
        "--handshake-timeout",
        type=_positive_float,
        default=HANDSHAKE_TIMEOUT_S,
        help="seconds a new connection has to get a name accepted",
    )
    add(
        "--max-clients",
        type=_positive_int,
        default=MAX_CLIENTS,
        help="connections at once; one more gets 'server full' and is closed",
    )
    add(
        "--notice-limit",
        type=int,
        default=NOTICE_LIMIT,
        help="join/leave notices stop while more than this many clients are online",
    )
    add(
        "--delivery",
        choices=("queued", "inline"),
        default="queued",
        help="queued: byte-bounded per-client queues, coalesced writes from writer threads; "
        "inline: the original design, each sender writes to every socket itself (a baseline)",
    )
    add("--writers", type=_positive_int, default=1, help="writer threads for queued delivery")
    add(
        "--flood-rate",
        type=_non_negative_int,
        default=FLOOD_RATE_BYTES_PER_S,
        help="bytes per second a client may make the server send (each line counted once per "
        "recipient, plus 64 per line); over it the server stops reading from that client for a "
        "while. 0 turns flood control off",
    )
    add(
        "--max-per-address",
        type=_non_negative_int,
        default=MAX_PER_ADDRESS,
        help="connections at once from one address (0: no limit); exempt addresses aside",
    )
    add(
        "--new-per-address",
        type=_non_negative_int,
        default=NEW_PER_ADDRESS_PER_MIN,
        help="new connections per minute from one address (0: no limit); exempt addresses aside",
    )
    add(
        "--exempt",
        type=_networks,
        default=",".join(EXEMPT_NETWORKS),
        help="comma-separated addresses or networks the per-address limits do not apply to "
        "('' for none)",
    )
    add(
        "--max-unnamed",
        type=_positive_int,
        default=MAX_UNNAMED,
        help="connections still without a name; one more pushes out the one waiting longest",
    )
    add(
        "--flood-burst",
        type=_positive_int,
        default=FLOOD_BURST_BYTES,
        help="bytes a client may make the server send at once before --flood-rate applies",
    )
    add(
        "--switch-interval",
        type=_positive_float,
        default=SWITCH_INTERVAL_S,
        help="CPython's GIL switch interval in seconds (sys.setswitchinterval); longer keeps a "
        "mass disconnect of thousands of threads cheap",
    )
    add(
        "--lang",
        choices=("en", "ru"),
        default=None,
        help="language of notices (default: from the locale, else en)",
    )
    add(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level",
    )
    add(
        "--quiet",
        action="store_true",
        help="log warnings only (same as --log-level WARNING), for benchmarks",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (0 < value < math.inf):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _networks(text: str) -> tuple[Network, ...]:
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _open_spare_fd() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def _raise_open_files_limit() -> int | None:
    """10,000 clients need 10,000 descriptors: lift the soft limit to the hard one. Returns the
    limit in force (None: unlimited or unknown)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %s: %s", soft, exc)
    return None if soft == resource.RLIM_INFINITY else soft


def _fit_open_files_limit(max_clients: int, open_files: int | None) -> int:
    """Lower `max_clients` to what the open-files limit allows, with a warning: past it, accept
    fails and clients would wait unanswered instead of being told the server is full."""
    if open_files is None or max_clients + RESERVED_FDS <= open_files:
        return max_clients
    fitted = max(1, open_files - RESERVED_FDS)
    log.warning(
        "--max-clients %s does not fit the open-files limit (%s): using %s",
        max_clients,
        open_files,
        fitted,
    )
    return fitted


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else getattr(logging, args.log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", stream=sys.stderr)
    ready_log.setLevel(logging.INFO)
    config = Config(
        host=args.host,
        port=args.port,
        max_line=args.max_line,
        max_pending=args.max_pending,
        write_deadline=args.write_deadline,
        max_queued_total=args.max_queued_total,
        handshake_timeout=args.handshake_timeout,
        max_clients=args.max_clients,
        notice_limit=args.notice_limit,
        delivery=args.delivery,
        writers=args.writers,
        flood_rate=args.flood_rate,
        flood_burst=args.flood_burst,
        max_per_address=args.max_per_address,
        new_per_address=args.new_per_address,
        exempt=args.exempt,
        max_unnamed=args.max_unnamed,
        lang=args.lang or default_lang(),
    )
    config.max_clients = _fit_open_files_limit(config.max_clients, _raise_open_files_limit())
    threading.stack_size(THREAD_STACK_BYTES)
    sys.setswitchinterval(args.switch_interval)
    server = ChatServer(config)
    try:
        host, port = server.bind()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror or exc)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    ready_log.info("listening on %s:%s", host, port)
    server.serve_forever()
    log.info("shutting down")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
