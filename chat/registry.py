"""Who is online: named sessions by name key, and the snapshot a broadcast iterates.

Names are unique by `protocol.name_key` (case and look-alikes fold together). Changes take a lock;
`members` and `boxes` are immutable snapshots, rebuilt lazily after a change, so a broadcast never
holds a lock and never sees a list change under it.
"""

from __future__ import annotations

import threading
from itertools import islice
from typing import Generic, Protocol, TypeVar

from chat import protocol
from chat.delivery import Outbox


class Member(Protocol):
    """What the registry needs of a session."""

    name: str | None
    box: Outbox


M = TypeVar("M", bound=Member)


class Registry(Generic[M]):
    """Named members. Changes are locked; `members` is an immutable snapshot, rebuilt lazily."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, M] = {}
        self._snapshot: tuple[tuple[M, ...], tuple[Outbox, ...]] | None = ((), ())

    def __len__(self) -> int:
        return len(self._by_key)

    def _current(self) -> tuple[tuple[M, ...], tuple[Outbox, ...]]:
        snapshot = self._snapshot
        if snapshot is None:
            with self._lock:
                members = tuple(self._by_key.values())
                snapshot = self._snapshot = (members, tuple(m.box for m in members))
        return snapshot

    @property
    def members(self) -> tuple[M, ...]:
        """Everyone named, in joining order. Cheap while nobody joins or leaves."""
        return self._current()[0]

    @property
    def boxes(self) -> tuple[Outbox, ...]:
        """The members' outboxes, same order: what a broadcast iterates."""
        return self._current()[1]

    def names(self) -> list[str]:
        """Everyone's name, in joining order."""
        return [m.name for m in self.members if m.name is not None]

    def first(self, count: int) -> tuple[int, list[str]]:
        """How many are online and the first `count` names, without a full snapshot."""
        with self._lock:
            firsts = [m.name for m in islice(self._by_key.values(), count) if m.name is not None]
            return len(self._by_key), firsts

    def add(self, member: M, name: str) -> bool:
        """Give `member` the name `name`; False when someone holds a name that looks the same."""
        key = protocol.name_key(name)
        with self._lock:
            if key in self._by_key:
                return False
            member.name = name
            self._by_key[key] = member
            self._snapshot = None
        return True

    def remove(self, member: M) -> bool:
        """Take `member` off the list; False when it was not on it."""
        with self._lock:
            if member.name is None:
                return False
            key = protocol.name_key(member.name)
            if self._by_key.get(key) is not member:
                return False
            del self._by_key[key]
            self._snapshot = None
        return True

    def rename(self, member: M, new: str) -> bool:
        """Rename a member; False when someone else holds a name that looks like `new`."""
        old_key, new_key = protocol.name_key(member.name or ""), protocol.name_key(new)
        with self._lock:
            owner = self._by_key.get(new_key)
            if owner is not None and owner is not member:
                return False
            del self._by_key[old_key]
            self._by_key[new_key] = member
            member.name = new
            self._snapshot = None
        return True

    def get(self, name: str) -> M | None:
        """The member whose name looks like `name`, if any."""
        with self._lock:
            return self._by_key.get(protocol.name_key(name))
