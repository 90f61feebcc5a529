"""This node's names on the cluster: claimed at once, released later, taken again after an outage.

Part of the bus (chat/bus.py, imported only with `--bus`). The local registry stays the authority
for this node's members; `chat:names` in Redis (chat/bus_names.py) makes a name unique over every
node. Claims run in the naming session's thread (a name must be known free before the welcome);
releases are queued for the bus's publisher, so the reaper and session threads never wait on
Redis to leave. Every check-and-set is one Lua script.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Final, cast

import redis
from redis.client import Pipeline
from redis.typing import EncodableT

from chat import protocol
from chat.bus_names import CLAIM, NAMES, RECLAIM, RELEASE, SEPARATOR, Holder

WELCOME_SCAN: Final = 20  # names the claim brings back for the welcome (an HSCAN COUNT)


class Claims:
    """The names this node holds on the cluster, and those it is letting go of."""

    def __init__(self, client: redis.Redis, node: str, run: str) -> None:
        self.node, self.run = node, run
        self.mine = node + SEPARATOR  # how this node's values in the names hash begin
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)
        self._reclaim = client.register_script(RECLAIM)
        self._client = client
        self._lock = threading.Lock()  # guards the two collections below; never held for I/O
        self._held: dict[str, str] = {}  # name key -> the value this node holds it with
        self._releasing: list[tuple[str, str]] = []
        self._ids = itertools.count(1)

    def claim(self, name: str, welcome: list[str] | None = None) -> int | None:
        """Take `name` on the cluster: the number of names then, or None when another node
        holds it. `welcome` gets a few names online (one HSCAN step, not the first to come).
        RedisError when Redis cannot be asked."""
        key = protocol.name_key(name)
        value = Holder(self.node, f"{self.run}.{next(self._ids)}", name).encode()
        args: list[EncodableT] = [key, value, self.mine, WELCOME_SCAN]
        reply = cast(list[Any], self._claim(keys=[NAMES], args=args))
        if reply[0] < 0:
            return None
        with self._lock:
            self._held[key] = value
        if welcome is not None:
            welcome.extend(Holder.decode(held).display for held in reply[1:])
        return int(reply[0])

    def release(self, name: str) -> bool:
        """Queue `name`'s release; False when this node does not hold it (any more)."""
        key = protocol.name_key(name)
        with self._lock:
            value = self._held.pop(key, None)
            if value is not None:
                self._releasing.append((key, value))
        return value is not None

    def forget(self, key: str) -> None:
        """Another node holds `key` now: nothing to release for it."""
        with self._lock:
            self._held.pop(key, None)

    def take_releases(self) -> list[tuple[str, str]]:
        """The queued releases, for the publisher's next round trip (`put_back` if it fails)."""
        with self._lock:
            taken, self._releasing = self._releasing, []
        return taken

    def put_back(self, releases: list[tuple[str, str]]) -> None:
        with self._lock:
            self._releasing[:0] = releases  # sent again later: a release is idempotent

    def release_in(self, pipe: Pipeline, releases: list[tuple[str, str]]) -> None:
        """Add `releases` to a pipeline: each frees its name only if it still holds that claim."""
        for key, value in releases:
            self._release(keys=[NAMES], args=[key, value], client=pipe)

    def reclaim(self, client: redis.Redis) -> set[str]:
        """After the link came back: take every held name again; the keys another node took
        meanwhile (forgotten here: their users must go)."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return set()
        args = [self.mine, *itertools.chain.from_iterable(held)]
        lost = {key.decode() for key in cast(list[bytes], self._reclaim([NAMES], args, client))}
        for key in lost:
            self.forget(key)
        return lost
