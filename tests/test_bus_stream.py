"""The bus's bookkeeping without Redis (chat/bus_stream.py): numbering, the bounded queue, and
what a receiver makes of entries that are duplicated, reordered by a retry, or missing."""

from __future__ import annotations

from chat.bus_stream import Broadcast, Entry, Incoming, Lost, Outgoing, Private


def wire(entries: list[Entry]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Entries as XREAD returns them: an ID and byte-string fields."""
    return [
        (f"{entry.seq}-0".encode(), {k.encode(): as_bytes(v) for k, v in entry.fields.items()})
        for entry in entries
    ]


def as_bytes(value: str | int | bytes) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def test_events_are_numbered_and_count_their_broadcast_lines() -> None:
    out = Outgoing("n1", "r1", 100, 1 << 20)
    out.add("chat", b"a: 1\na: 2\n", 2)
    out.add("private", b"a (private): x\n", 0, to="bob")
    out.add("notice", b"* b joined the chat\n", 1)
    fields = [entry.fields for entry in out.peek(10)]
    assert [(f["seq"], f["lines"], f["kind"]) for f in fields] == [
        (1, 2, "chat"),
        (2, 2, "private"),
        (3, 3, "notice"),
    ]
    assert fields[1]["to"] == "bob" and "to" not in fields[0]


def test_a_full_queue_drops_the_oldest_and_sent_entries_leave_it() -> None:
    out = Outgoing("n1", "r1", 3, 1 << 20)
    for i in range(5):
        out.add("chat", f"a: {i}\n".encode(), 1)
    assert [entry.seq for entry in out.peek(10)] == [3, 4, 5] and out.dropped == 2
    out.sent(4)
    assert [entry.seq for entry in out.peek(10)] == [5]
    small = Outgoing("n1", "r1", 100, 300)  # the byte budget bounds it too
    for _ in range(5):
        small.add("chat", b"x" * 100 + b"\n", 1)
    assert len(small) == 1


def test_a_receiver_skips_its_own_and_repeated_entries_and_counts_exactly_what_is_missing() -> None:
    out = Outgoing("n1", "r1", 100, 1 << 20)
    out.add("chat", b"a: 1\n", 1)
    out.add("chat", b"a: 2\na: 3\n", 2)
    out.add("chat", b"a: 4\n", 1)
    out.add("private", b"a (private): p\n", 0, to="bob")
    out.add("chat", b"a: 5\n", 1)
    e1, e2, e3, e4, e5 = wire(out.peek(10))
    own = Outgoing("me", "r9", 10, 1 << 20)
    own.add("chat", b"me: mine\n", 1)
    mine = wire(own.peek(1))
    incoming = Incoming("me")
    # e1 arrives twice (a retried publish), one of this node's own passes by, e2 and e3 were
    # lost, e4 and e5 arrive.
    got = list(incoming.sort([e1, e1, *mine, e4, e5]))
    assert got == [
        Broadcast(b"a: 1\n", 1),
        Lost(3, "n1"),  # a: 2, a: 3 and a: 4: three lines, in two entries
        Private("bob", b"a (private): p\n"),
        Broadcast(b"a: 5\n", 1),
    ]
    assert list(incoming.sort([e2, e3])) == []  # older than what was seen: never delivered late


def test_the_first_entry_of_a_run_counts_no_gap() -> None:
    out = Outgoing("n1", "r1", 100, 1 << 20)
    for i in range(3):
        out.add("chat", f"a: {i}\n".encode(), 1)
    assert list(Incoming("me").sort(wire(out.peek(10))[2:])) == [Broadcast(b"a: 2\n", 1)]
