"""The Redis bus: one room over several server processes ("nodes"); docs/CLUSTER.md.

Imported only with `--bus URL`, so the server without it stays standard library only. Every
cross-node event is one entry of one Redis stream (chat/bus_names.py names the keys): its origin
node and run, a per-run sequence number `seq`, the count of broadcast `lines` that run has sent so
far, a `kind` and `data`, the exact wire bytes, formatted once by the sender's node.

Three daemon threads per node; a session thread never waits on Redis to chat:
- the **publisher** drains a bounded in-memory queue into Redis with pipelined XADDs. While the
  link is down the queue keeps the newest `--bus-buffer` entries and drops the oldest; the
  receivers see the jump in `lines` and tell their clients exactly how many they lost;
- the **reader** blocks in XREAD, skips its own node's entries and those it has seen (a retried
  publish), and hands the rest to the delivery as a broadcast from nobody (`private`: to one
  local client). Each entry is read once per node: exactly once, in each sender's order;
- the **heartbeat** renews this node's lease, publishes its counters, buries nodes whose lease
  expired, and alone decides that the link is down (the others only ask it to look at once) or
  back (after re-registering this node and its names), and says so to the local clients.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Final, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from chat import protocol
from chat.bus_claims import Claims
from chat.bus_names import (
    BURY,
    LEAVE,
    NAMES,
    NODES,
    SEPARATOR,
    STATS,
    STREAM,
    BusDown,
    Holder,
    lease_key,
)
from chat.bus_stream import NOTICE, Broadcast, Incoming, Lost, Outgoing, Private

if TYPE_CHECKING:
    from chat.server import ChatServer

log = logging.getLogger("chat.server")
ready_log = logging.getLogger("chat.server.ready")  # shown even with --quiet, like `listening`

HEARTBEAT_S: Final = 0.5  # lease renewal and the link check; a dead link is seen within this
COMMAND_TIMEOUT_S: Final = 1.0  # any one Redis command; a Redis that hangs is down after this
RECONNECT_FIRST_S: Final = 0.05  # reconnect backoff: doubles from here...
RECONNECT_CAP_S: Final = 0.5  # ...up to this, so the bus is back within it of Redis being back
READ_BLOCK_MS: Final = 500
READ_COUNT: Final = 1000
PUBLISH_BATCH: Final = 500  # entries per pipelined round trip
STREAM_MAXLEN: Final = 100_000  # XADD MAXLEN ~: a reader this far behind is a slow node
MAX_BUFFERED_BYTES: Final = 64 * 1024 * 1024
CLOSE_TIMEOUT_S: Final = 0.4  # of the 2 s a stop may take: telling the others we leave
STATS_EVERY_BEATS: Final = 2  # publish this node's counters; read the others' every beat
SHARED_CONNECTIONS: Final = 16  # to Redis for session threads' names, /who and /msg
RETRY_PAUSE_S: Final = 0.1  # a reader or publisher whose command failed tries again after this


class BusError(Exception):
    """The bus cannot be joined; str() is the one line the operator reads."""


class Bus:
    """This node's link to the others: `join()` once, then publish; `close()` at shutdown."""

    def __init__(
        self, server: ChatServer, url: str, node: str, *, buffer_entries: int, lease_s: float
    ) -> None:
        self.server = server
        self.node = node
        self.run = os.urandom(6).hex()  # this process's run: its seq numbers start at 1
        self.lease_ms = int(lease_s * 1000)
        self.heartbeat_s = min(HEARTBEAT_S, lease_s / 4)
        self.buffer_entries = buffer_entries
        try:
            self._query = _client(url, COMMAND_TIMEOUT_S, shared=True)  # sessions: names, /who
        except ValueError as exc:
            raise BusError(f"--bus {_redacted(url)}: {exc}") from None
        kwargs = self._query.connection_pool.connection_kwargs
        self.where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        self._beat_client = _client(url, COMMAND_TIMEOUT_S)
        self._read_client = _client(url, COMMAND_TIMEOUT_S + READ_BLOCK_MS / 1000)
        self._pub_client = _client(url, COMMAND_TIMEOUT_S)
        self._url = url
        self.claims = Claims(self._query, node, self.run)
        self._bury = self._query.register_script(BURY)
        self._leave = self._query.register_script(LEAVE)
        self.outgoing = Outgoing(node, self.run, buffer_entries, MAX_BUFFERED_BYTES)
        self._lock = threading.Lock()  # guards the counters below; never held for I/O
        self._epoch = ""  # Redis's run_id: a new one means a new, empty stream
        self._last_id: bytes = b"0-0"
        self._up = threading.Event()
        self._work = threading.Event()  # the publisher has something to do
        self._suspect = threading.Event()  # a command failed: the heartbeat looks at once
        self._stopping = threading.Event()
        self.named = 0  # names on the whole cluster, as last seen
        self._peer_stats: dict[str, dict[str, float]] = {}
        self.lost_lines = 0  # lines from other nodes this node's clients were told they missed
        self.entries_out = 0
        self.deliveries = 0  # lines from other nodes handed to this node's clients
        self.rejoins = 0  # times the link came back: a gap without one is this node's slowness

    # --- life cycle ----------------------------------------------------------------------------

    def join(self) -> None:
        """Take this node's lease and start the threads; BusError when Redis refuses."""
        client = self._query
        try:
            client.ping()
            if not client.set(lease_key(self.node), self.run, px=self.lease_ms, nx=True):
                raise BusError(
                    f"a node named {self.node} is already on the bus at {self.where} (or stopped "
                    f"without leaving less than {self.lease_ms / 1000:g} s ago): choose another "
                    "--node-name, or wait"
                )
            client.sadd(NODES, self.node)
            self._epoch = _redis_run_id(client)
            newest = cast(list[Any], client.xrevrange(STREAM, count=1))
            self._last_id = newest[0][0] if newest else b"0-0"
            self.named = int(client.hlen(NAMES))
        except RedisError as exc:
            raise BusError(f"cannot use the bus at {self.where}: {exc}") from None
        self._up.set()
        for target, name in (
            (self._publish_loop, "bus-publisher"),
            (self._read_loop, "bus-reader"),
            (self._heartbeat_loop, "bus-heartbeat"),
        ):
            threading.Thread(target=target, name=name, daemon=True).start()
        ready_log.info("node %s joined the bus at %s", self.node, self.where)

    def close(self) -> None:
        """Leave the bus: what is still queued, a leave notice for each local client, then this
        node's lease and names, in one round trip bounded by CLOSE_TIMEOUT_S."""
        up = self._up.is_set()
        self._stopping.set()
        self._suspect.set()
        self._work.set()
        if not up:
            return
        server = self.server
        if server.room_size() <= server.config.notice_limit:
            names = [member.name for member in server.registry.members if member.name is not None]
            self._publish_notices([_notice(server.texts("left", name=name)) for name in names])
        entries = self.outgoing.peek(len(self.outgoing))
        try:
            client = _client(self._url, CLOSE_TIMEOUT_S)
            pipe = client.pipeline(transaction=False)
            for entry in entries:
                pipe.xadd(STREAM, _fields(entry.fields), maxlen=STREAM_MAXLEN, approximate=True)
            args = [self.node, self.claims.mine]  # every name this node holds goes with it
            self._leave(keys=[NODES, NAMES, STATS, lease_key(self.node)], args=args, client=pipe)
            pipe.execute()
            client.close()
        except RedisError as exc:
            log.warning("could not leave the bus cleanly: %s", exc)
            return
        log.info("node %s left the bus", self.node)

    @property
    def up(self) -> bool:
        return self._up.is_set()

    # --- what sessions ask -----------------------------------------------------------------------

    def publish(self, kind: str, data: bytes, lines: int, to: str = "") -> None:
        """Queue one event for the other nodes; never waits. `lines`: broadcast lines in it."""
        self.outgoing.add(kind, data, lines, to)
        self._work.set()

    def claim(self, name: str, welcome: list[str] | None = None) -> str | None:
        """Take `name` on the whole cluster: None when done, else the texts key of the refusal.
        `welcome` gets a few of the names online (those one HSCAN step finds, not the first
        to come): what a newcomer's welcome lists."""
        if not self._up.is_set():
            return "name_bus_down"
        try:
            count = self.claims.claim(name, welcome)
        except RedisError as exc:
            self._look(exc)
            return "name_bus_down"
        if count is None:
            return "name_taken"
        self.named = count
        return None

    def release(self, name: str) -> None:
        """Let `name` go (queued: the reaper and session threads never wait on Redis)."""
        if self.claims.release(name):
            self._work.set()

    def rename(self, old: str, new: str) -> str | None:
        """Claim `new`, then let `old` go unless both have one key; as claim()."""
        refusal = self.claim(new)
        if refusal is None and protocol.name_key(old) != protocol.name_key(new):
            self.release(old)
        return refusal

    def holder(self, name: str) -> Holder | None:
        """Who holds `name` on the cluster; None: nobody. BusDown when the link is down."""
        if not self._up.is_set():
            raise BusDown
        try:
            value = self._query.hget(NAMES, protocol.name_key(name))
        except RedisError as exc:
            self._look(exc)
            raise BusDown from None
        return None if value is None else Holder.decode(cast(bytes, value))

    def names(self) -> list[str] | None:
        """Everyone named on the cluster; None while the link is down."""
        if not self._up.is_set():
            return None
        try:
            values = cast(list[bytes], self._query.hvals(NAMES))
        except RedisError as exc:
            self._look(exc)
            return None
        return [Holder.decode(value).display for value in values]

    def stats(self, own: dict[str, int | float]) -> dict[str, int | float]:
        """Cluster totals (every node's last published counters, this one's live) for /stats."""
        mine = {**own, "bus_deliveries": self.deliveries}
        nodes: dict[str, dict[str, float]] = {**self._peer_stats, self.node: mine}
        if not self._up.is_set():
            nodes = {self.node: mine}

        def total(key: str) -> int:
            return int(sum(counters.get(key, 0) for counters in nodes.values()))

        return {
            "cluster_nodes": len(nodes),
            "cluster_clients": max(self.named, total("clients")),
            "cluster_connections": total("connections"),
            "cluster_messages_in": total("messages_in"),
            "cluster_deliveries_out": total("deliveries_out") + total("bus_deliveries"),
            "bus_deliveries": self.deliveries,
            "bus_up": int(self._up.is_set()),
            "bus_lost": self.lost_lines,
        }

    def tell_local(self, key: str, **fields: object) -> None:
        """A notice to every client of this node (none of them caused it)."""
        server = self.server
        line = _notice(server.texts(key, **fields))
        server.delivery.broadcast(None, server.registry.boxes, [line])

    def _publish_notices(self, lines: list[bytes]) -> None:
        """Notices for the other nodes as one event (one stream entry), not one per line."""
        if lines:
            self.publish(NOTICE, b"".join(lines), len(lines))

    # --- the publisher -------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        client, dropped = self._pub_client, 0
        while not self._stopping.is_set():
            if not self._up.wait(HEARTBEAT_S):
                continue
            if self.outgoing.dropped != dropped:
                log.warning(
                    "bus: %d events of this node's were dropped, the bus being down or too slow "
                    "for them; the other nodes tell their clients how many lines they missed",
                    self.outgoing.dropped - dropped,
                )
                dropped = self.outgoing.dropped
            self._work.clear()
            batch = self.outgoing.peek(PUBLISH_BATCH)
            releases = self.claims.take_releases()
            if not batch and not releases:
                self._work.wait(HEARTBEAT_S)
                continue
            try:
                pipe = client.pipeline(transaction=False)
                self.claims.release_in(pipe, releases)
                for entry in batch:
                    fields = _fields(entry.fields)
                    pipe.xadd(STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True)
                pipe.execute()
            except RedisError as exc:
                self.claims.put_back(releases)
                self._look(exc)
                self._stopping.wait(RETRY_PAUSE_S)
                continue
            if batch:
                self.outgoing.sent(batch[-1].seq)
                self.entries_out += len(batch)

    # --- the reader ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        client = self._read_client
        last_id, epoch, rejoins = self._last_id, self._epoch, self.rejoins
        incoming = Incoming(self.node)
        while not self._stopping.is_set():
            if not self._up.wait(HEARTBEAT_S):
                continue
            try:
                if self._epoch != epoch:  # Redis restarted: resume where we were if the stream
                    # survived it (persistence on), else read the new one from its start
                    kept = client.xrange(STREAM, last_id, last_id, count=1)
                    last_id, epoch = (last_id if kept else b"0-0"), self._epoch
                reply = cast(
                    list[Any],
                    client.xread({STREAM: last_id}, count=READ_COUNT, block=READ_BLOCK_MS),
                )
            except RedisError as exc:
                self._look(exc)
                self._stopping.wait(RETRY_PAUSE_S)
                continue
            for _stream, entries in reply or ():
                if entries:
                    last_id = entries[-1][0]
                    self._deliver(incoming, entries, rejoins == self.rejoins)
            rejoins = self.rejoins

    def _deliver(self, incoming: Incoming, entries: list[Any], link_stayed_up: bool) -> None:
        """Hand other nodes' entries to the local clients: runs of broadcasts as one blob."""
        server = self.server
        blobs: list[bytes] = []
        chat = 0  # chat lines in `blobs`
        for arrival in incoming.sort(entries):
            if isinstance(arrival, Broadcast):
                blobs.append(arrival.data)
                chat += arrival.chat
            elif isinstance(arrival, Lost):
                blobs.append(self._lost(arrival.count, arrival.origin, link_stayed_up))
            elif isinstance(arrival, Private):
                target = server.registry.get(arrival.to)
                if target is not None:
                    server.delivery.send(target.box, arrival.data)
            if len(blobs) >= READ_COUNT:
                self._broadcast(blobs, chat)
                blobs, chat = [], 0
        self._broadcast(blobs, chat)

    def _broadcast(self, blobs: list[bytes], chat: int) -> None:
        """Like a local sender: wait while this node's writers lag (the stream holds the rest;
        a node that stays behind is a slow node, told as a counted gap). `bus_deliveries`
        counts the chat lines, as `deliveries_out` does for local senders."""
        if blobs:
            server, data = self.server, b"".join(blobs)
            while server.delivery.congested() and not self._stopping.is_set():
                server.delivery.wait_for_writers(RETRY_PAUSE_S)
            count = server.delivery.broadcast(None, server.registry.boxes, [data])
            self.deliveries += count * chat

    def _lost(self, count: int, origin: str, link_stayed_up: bool) -> bytes:
        with self._lock:
            self.lost_lines += count
        why = (
            "a slow node: this one read too slowly and the stream was trimmed past it, or "
            f"{origin}'s queue to the bus overflowed"
            if link_stayed_up
            else "the bus was down longer than the buffers hold"
        )
        log.warning("bus: %d lines from node %s were lost (%s)", count, origin, why)
        return _notice(self.server.texts("bus_lost", count=count))

    # --- the heartbeat -------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        backoff, beats = RECONNECT_FIRST_S, 0
        while not self._stopping.is_set():
            if self._up.is_set():
                self._suspect.clear()
                try:
                    self._beat(beats)
                except RedisError as exc:
                    self._down(exc)
                    continue
                beats += 1
                self._suspect.wait(self.heartbeat_s)
                continue
            try:
                self._rejoin()
            except RedisError:
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_CAP_S)
                continue
            backoff = RECONNECT_FIRST_S

    def _look(self, exc: Exception) -> None:
        """A reader's, publisher's or session's command failed: the heartbeat checks at once."""
        log.debug("bus command failed: %s", exc)
        self._suspect.set()

    def _beat(self, beats: int) -> None:
        client = self._beat_client
        pipe = client.pipeline(transaction=False)
        pipe.set(lease_key(self.node), self.run, px=self.lease_ms, xx=True)
        pipe.smembers(NODES)
        pipe.hlen(NAMES)
        pipe.hgetall(STATS)
        if beats % STATS_EVERY_BEATS == 0:
            counters = {**self.server.node_stats(), "bus_deliveries": self.deliveries}
            pipe.hset(STATS, self.node, json.dumps(counters))
        replies = pipe.execute()
        if not replies[0]:
            raise redis.ConnectionError("this node's lease expired while it was cut off")
        members = {member.decode() for member in replies[1]}
        self.named = int(replies[2])
        self._peer_stats = {
            node.decode(): json.loads(value)
            for node, value in replies[3].items()
            if node.decode() in members and node.decode() != self.node
        }
        others = sorted(members - {self.node})
        if others:
            pipe = client.pipeline(transaction=False)
            for other in others:
                pipe.exists(lease_key(other))
            for other, alive in zip(others, pipe.execute(), strict=True):
                if not alive:
                    self._bury_node(other)

    def _bury_node(self, node: str) -> None:
        """`node`'s lease expired: free its names (once, whoever gets there first) and tell
        everyone its users are gone."""
        keys = [NODES, NAMES, STATS, lease_key(node)]
        gone = self._bury(keys=keys, args=[node, node + SEPARATOR], client=self._beat_client)
        if gone is None:
            return
        log.warning("node %s stopped answering: %d of its users are gone", node, len(gone))
        server = self.server
        if self.named + len(gone) > server.config.notice_limit:
            return
        lines = [
            _notice(server.texts("left_node_gone", name=Holder.decode(value).display, node=node))
            for value in cast(list[bytes], gone)
        ]
        if lines:
            server.delivery.broadcast(None, server.registry.boxes, lines)
            self._publish_notices(lines)

    def _down(self, exc: Exception) -> None:
        if self._stopping.is_set():
            return
        self._up.clear()
        log.warning(
            "bus down (%s): chatting locally, keeping up to %d events for the others", exc,
            self.buffer_entries,
        )  # fmt: skip
        self.tell_local("bus_down")

    def _rejoin(self) -> None:
        """The link works again: lease, membership and names back (silently: nobody saw this
        node's users leave, unless its lease expired meanwhile), then the link is up."""
        client = self._beat_client
        epoch = _redis_run_id(client)
        restarted = epoch != self._epoch
        buried = not restarted and not client.sismember(NODES, self.node)
        client.set(lease_key(self.node), self.run, px=self.lease_ms)
        client.sadd(NODES, self.node)
        lost = self.claims.reclaim(client)
        self.named = int(client.hlen(NAMES))
        self._epoch = epoch
        self.rejoins += 1
        self._up.set()
        log.warning("bus is back at %s%s", self.where, " (Redis restarted)" if restarted else "")
        self.tell_local("bus_back")
        self._settle(lost, buried)

    def _settle(self, lost: set[str], buried: bool) -> None:
        """After a rejoin: cut local users whose name another node took while the link was
        down; if this node had been buried, tell the others its users are here after all."""
        server = self.server
        back: list[bytes] = []
        for member in server.registry.members:
            if member.name is None:
                continue
            if protocol.name_key(member.name) in lost:
                server.cut_for_bus(member, server.texts("name_lost"))
            elif buried:
                back.append(_notice(server.texts("joined", name=member.name)))
        self._publish_notices(back)


def _client(url: str, timeout_s: float, shared: bool = False) -> redis.Redis:
    """A client that fails fast: our threads retry on their own terms, never redis-py's.
    `shared` by session threads: at most SHARED_CONNECTIONS to Redis, however many join at
    once (a thread waits its turn, up to the command timeout)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(timeout_s, COMMAND_TIMEOUT_S),
        "retry": Retry(NoBackoff(), 0),
    }
    if not shared:
        return redis.Redis.from_url(url, **options)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=SHARED_CONNECTIONS, timeout=COMMAND_TIMEOUT_S, **options
    )
    return redis.Redis(connection_pool=pool)


def _fields(fields: dict[str, str | int | bytes]) -> dict[FieldT, EncodableT]:
    return cast(dict[FieldT, EncodableT], fields)


def _redis_run_id(client: redis.Redis) -> str:
    info = client.info("server")
    return str(info.get("run_id", ""))


def _notice(text: str) -> bytes:
    return protocol.encode_line(protocol.notice_line(text))


def _redacted(url: str) -> str:
    """`url` without a password, for the log and error lines."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at and credentials else url
