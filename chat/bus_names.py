"""The cluster's shared state in Redis: key names, who holds which name, node leases, Lua scripts.

Used only by chat/bus.py (imported with `--bus`). Every check-and-set runs as one Lua script, so
two nodes can never both win a name or both bury the same dead node.

- `chat:events`: the stream every cross-node event goes through (chat/bus.py);
- `chat:names`: hash, name key (`protocol.name_key`) -> `NODE<US>CLAIM<US>DISPLAY NAME`;
- `chat:nodes`: set of the nodes on the bus; `chat:node:NODE`: its lease, a key with a TTL that
  the node's heartbeat refreshes; `chat:stats`: hash, node -> its `/stats` counters as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PREFIX: Final = "chat:"
STREAM: Final = PREFIX + "events"
NAMES: Final = PREFIX + "names"
NODES: Final = PREFIX + "nodes"
STATS: Final = PREFIX + "stats"
SEPARATOR: Final = "\x1f"  # ASCII unit separator: never in a valid name or node name

# Options of the bus (chat/config.py reads them from here; chat/bus.py has the rest).
LEASE_S: Final = 5.0  # a node that stops renewing its lease is buried this long after its last
MAX_BUFFERED_ENTRIES: Final = 50_000  # events kept for the bus while it is down, newest kept


class BusDown(Exception):
    """The link to the other nodes is down: the question cannot be answered now."""


def lease_key(node: str) -> str:
    return PREFIX + "node:" + node


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a name: the node, that node's claim token, and the name as shown."""

    node: str
    claim: str
    display: str

    def encode(self) -> str:
        return SEPARATOR.join((self.node, self.claim, self.display))

    @classmethod
    def decode(cls, value: bytes | str) -> Holder:
        text = value.decode() if isinstance(value, bytes) else value
        node, claim, display = text.split(SEPARATOR, 2)
        return cls(node, claim, display)


def node_name_problem(name: str) -> str | None:
    """Why `name` cannot name a node (None: it can): 1-64 printable characters, no blanks."""
    if not 1 <= len(name) <= 64:
        return "a node name has 1 to 64 characters"
    if any(not char.isprintable() or char.isspace() for char in name):
        return "a node name has no blanks or control characters"
    return None


# Take a name for this node unless another node holds it. The local registry has already said
# no local session holds it, so a value of this node's own is a claim it is letting go of (its
# release still queued): taking it over is right. Returns {-1}: taken; else the number of names
# and the values of a few of them (one HSCAN step: the welcome's list, at O(1) for any room).
# KEYS: names. ARGV: key, value, this node's value prefix (NODE<US>), how many values.
CLAIM: Final = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.sub(current, 1, #ARGV[3]) ~= ARGV[3] then return {-1} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local reply = {redis.call('HLEN', KEYS[1])}
local scanned = redis.call('HSCAN', KEYS[1], 0, 'COUNT', ARGV[4])[2]
for i = 2, #scanned, 2 do table.insert(reply, scanned[i]) end
return reply
"""

# Let a name go only if it still holds exactly this claim (a newer claim of the same name stays).
# KEYS: names. ARGV: key, value.
RELEASE: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# After the link came back: take every local name again; returns the keys another node took
# meanwhile. KEYS: names. ARGV: this node's value prefix, then key, value pairs.
RECLAIM: Final = """
local lost = {}
for i = 2, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if current and string.sub(current, 1, #ARGV[1]) ~= ARGV[1] then
    table.insert(lost, ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return lost
"""

# A node whose lease expired is buried once, by whichever node sees it first: off the set, its
# names freed, its counters dropped. Returns the values of the names it held (nil: nothing to
# do, someone else buried it or its lease is back). KEYS: nodes, names, stats, its lease.
# ARGV: the node, its value prefix.
BURY: Final = """
if redis.call('EXISTS', KEYS[4]) == 1 then return nil end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return nil end
redis.call('HDEL', KEYS[3], ARGV[1])
local gone = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if string.sub(all[i + 1], 1, #ARGV[2]) == ARGV[2] then
    redis.call('HDEL', KEYS[2], all[i])
    table.insert(gone, all[i + 1])
  end
end
return gone
"""

# A node leaving on purpose: lease, membership, counters and every name it holds, at once.
# KEYS: nodes, names, stats, its lease. ARGV: the node, its value prefix.
LEAVE: Final = """
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if string.sub(all[i + 1], 1, #ARGV[2]) == ARGV[2] then redis.call('HDEL', KEYS[2], all[i]) end
end
return 1
"""
