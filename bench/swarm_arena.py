"""Where a window's reads land: large blocks reserved before the clock starts and reused after.

Keeping every read as a fresh `bytes` made the driver touch fresh pages for everything a window
moves (500 MB in the stalled-reader case): about 100,000 page faults, a second of the driver's
time, in whichever window the C allocator happened to hand new memory (docs/BENCHMARKS.md). Here
each read goes by `recv_into` straight into a block, and a chunk is a memoryview of the bytes it
filled. Blocks are reserved (and their pages touched) before a window starts, for the bytes the
window is expected to move, and go back to a process-wide pool when the window's chunks are
dropped, so later windows and later swarms reuse pages that are already mapped.
"""

from __future__ import annotations

BLOCK_BYTES = 64 << 20
# A read into less room than this moves on to the next block (a recv may return up to 1 MiB).
MIN_ROOM_BYTES = 1 << 20
# Blocks kept for reuse when no arena holds them; above this they are freed.
POOL_MAX_BLOCKS = 16

_pool: list[bytearray] = []


def _take_block() -> bytearray:
    return _pool.pop() if _pool else bytearray(BLOCK_BYTES)


class ReceiveArena:
    """Blocks that reads are received into, in order; `room()` is where the next read goes."""

    __slots__ = ("blocks", "views", "current", "used")

    def __init__(self) -> None:
        self.blocks: list[bytearray] = []
        self.views: list[memoryview] = []
        self.current = -1
        self.used = BLOCK_BYTES  # no block yet: the first `room()` takes one

    def reserve(self, total_bytes: int) -> None:
        """Hold enough blocks for `total_bytes` more from here, before the clock starts."""
        room = BLOCK_BYTES - self.used if self.current >= 0 else 0
        spare = (len(self.blocks) - self.current - 1) * (BLOCK_BYTES - MIN_ROOM_BYTES)
        while room + spare < total_bytes:
            self._add_block()
            spare += BLOCK_BYTES - MIN_ROOM_BYTES

    def room(self) -> memoryview:
        """The free part of the current block (the next one when little is left)."""
        if BLOCK_BYTES - self.used < MIN_ROOM_BYTES:
            self.current += 1
            if self.current == len(self.blocks):
                self._add_block()
            self.used = 0
        return self.views[self.current][self.used :]

    def take(self, room: memoryview, size: int) -> memoryview:
        """The first `size` bytes of `room` (just received) become a chunk; the rest stays free."""
        self.used += size
        return room[:size]

    def newlines(self, size: int) -> int:
        """Newlines in the chunk just taken (its last `size` bytes), counted without a copy."""
        return self.blocks[self.current].count(b"\n", self.used - size, self.used)

    def reset(self) -> None:
        """Every chunk is dropped: receive from the first block again (pages stay mapped)."""
        self.current = -1 if not self.blocks else 0
        self.used = 0 if self.blocks else BLOCK_BYTES

    def release(self) -> None:
        """Give the blocks back to the pool, once no chunk of them is used any more."""
        for block in self.blocks:
            if len(_pool) < POOL_MAX_BLOCKS:
                _pool.append(block)
        self.blocks, self.views = [], []
        self.current, self.used = -1, BLOCK_BYTES

    def _add_block(self) -> None:
        block = _take_block()
        self.blocks.append(block)
        self.views.append(memoryview(block))
