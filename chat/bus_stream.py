"""The bus's bookkeeping, sans-IO: this node's events on their way out, the others' coming in.

No Redis, no sockets, no clock: chat/bus.py's threads move entries, these two classes decide.

- `Outgoing` numbers this node's events (`seq`, and `lines`: broadcast lines sent so far) and
  keeps them until the publisher has them in Redis, bounded: past `max_entries` or `max_bytes`
  the oldest are dropped, and the jump in `lines` tells every receiver exactly what it lost.
- `Incoming` takes entries as they come off the stream and says what to do with each: skip it
  (this node's own, or a `seq` already seen: a publish retried after a failed round trip),
  deliver it, or first announce a counted gap.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

# Entry kinds: a read's worth of chat lines, a notice, a private message to `to`.
CHAT: Final = "chat"
NOTICE: Final = "notice"
PRIVATE: Final = "private"
BROADCAST_KINDS: Final = (CHAT.encode(), NOTICE.encode())
_CHAT: Final = CHAT.encode()
ENTRY_OVERHEAD_BYTES: Final = 128  # what an entry costs beyond its data, roughly

Fields = dict[str, str | int | bytes]


@dataclass(slots=True)
class Entry:
    """One event of this node's, as it goes into the stream."""

    seq: int
    fields: Fields
    size: int


class Outgoing:
    """This node's events, numbered, until the publisher has put them in the stream."""

    def __init__(self, node: str, run: str, max_entries: int, max_bytes: int) -> None:
        self.node, self.run = node, run
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._lock = threading.Lock()  # session threads add, the publisher takes: memory only
        self._queue: deque[Entry] = deque()
        self._bytes = 0
        self._seq = 0
        self._lines = 0
        self.dropped = 0  # entries dropped because the queue was full

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, kind: str, data: bytes, lines: int, to: str = "") -> None:
        """Queue one event; `lines`: the broadcast lines in `data` (0 for a private one)."""
        with self._lock:
            self._seq += 1
            self._lines += lines
            fields: Fields = {
                "node": self.node,
                "run": self.run,
                "seq": self._seq,
                "lines": self._lines,
                "kind": kind,
                "data": data,
            }
            if to:
                fields["to"] = to
            entry = Entry(self._seq, fields, len(data) + ENTRY_OVERHEAD_BYTES)
            self._queue.append(entry)
            self._bytes += entry.size
            while len(self._queue) > self.max_entries or self._bytes > self.max_bytes:
                self._bytes -= self._queue.popleft().size
                self.dropped += 1

    def peek(self, limit: int) -> list[Entry]:
        """The oldest `limit` entries, left queued until `sent`."""
        with self._lock:
            return list(itertools.islice(self._queue, limit))

    def sent(self, last_seq: int) -> None:
        """Everything up to `last_seq` is in the stream (some may have been dropped meanwhile)."""
        with self._lock:
            while self._queue and self._queue[0].seq <= last_seq:
                self._bytes -= self._queue.popleft().size


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Lines for every local client; `chat` of them are chat lines (what /stats
    `deliveries_out` counts), the rest notices."""

    data: bytes
    chat: int = 0


@dataclass(frozen=True, slots=True)
class Private:
    """A line for the local client whose name key is `to`."""

    to: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Lost:
    """`count` broadcast lines from `origin` never arrived: say so where they would have been."""

    count: int
    origin: str


Arrival = Broadcast | Private | Lost


class Incoming:
    """Other nodes' entries, in stream order: each once, with every gap counted."""

    def __init__(self, node: str) -> None:
        self._me = node.encode()
        # Per origin run: the last seq and the `lines` count seen from it.
        self._seen: dict[tuple[bytes, bytes], tuple[int, int]] = {}
        self.accepted = 0

    def sort(self, entries: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> Iterator[Arrival]:
        """What to do with each of `entries` (stream ID, fields), in order."""
        for _id, fields in entries:
            origin = fields[b"node"]
            if origin == self._me:
                continue
            run = (origin, fields[b"run"])
            seq, lines, kind = int(fields[b"seq"]), int(fields[b"lines"]), fields[b"kind"]
            data = fields[b"data"]
            count = data.count(b"\n") if kind in BROADCAST_KINDS else 0
            last = self._seen.get(run)
            if last is not None:
                if seq <= last[0]:
                    continue  # seen: a publish that was retried after a failed round trip
                lost = lines - count - last[1]
                if lost > 0:
                    yield Lost(lost, origin.decode())
            self._seen[run] = (seq, lines)
            self.accepted += 1
            if kind in BROADCAST_KINDS:
                if count:
                    yield Broadcast(data, count if kind == _CHAT else 0)
            elif kind == PRIVATE.encode():
                yield Private(fields.get(b"to", b"").decode(), data)
