"""The swarm's receive arena: reads land in blocks reserved before a window and reused after."""

from __future__ import annotations

from bench.swarm_arena import BLOCK_BYTES, MIN_ROOM_BYTES, ReceiveArena


def test_reserved_blocks_hold_the_window_and_are_reused_after_reset():
    arena = ReceiveArena()
    arena.reserve(BLOCK_BYTES + 1)
    blocks = list(arena.blocks)
    assert len(blocks) == 2
    received = 0
    while received < BLOCK_BYTES:
        room = arena.room()
        room[:4] = b"a\nb\n"
        chunk = arena.take(room, len(room) // 2 or 4)
        assert arena.newlines(len(chunk)) >= 1
        received += len(chunk)
    assert arena.blocks == blocks  # nothing allocated during the "window"
    arena.reset()
    assert arena.room().obj is blocks[0] and arena.used == 0
    arena.release()
    assert arena.blocks == []


def test_a_block_with_little_room_left_moves_on_to_the_next():
    arena = ReceiveArena()
    room = arena.room()
    arena.take(room, BLOCK_BYTES - MIN_ROOM_BYTES + 1)
    assert arena.room().obj is not room.obj
    assert arena.current == 1
