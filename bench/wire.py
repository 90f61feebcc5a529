"""How the swarm speaks to a server: the chat protocol, or a real peer's mapping of the workload.

A `Wire` says what a client sends to join, when it is in, how a chat message goes out, how many
newlines one delivery brings (the swarm counts newlines while it reads), and, after the window,
which lines are chat lines and from whom. The delivery check is the same for every wire: each
reader must get every other sender's probes exactly once and in order.

- `ChatWire`: this project's protocol (chat.protocol), for the threaded, inline and asyncio servers.
- `RedisWire`: Redis pub/sub. The room is one channel, a client's name is its id; a client says
  `HELLO 3` (RESP3, so one connection may both subscribe and publish) and `SUBSCRIBE room`, and
  sends a message as `PUBLISH room "NAME: TEXT"`. Redis delivers to every subscriber, the sender
  too, as a 7-line push; the sender also gets `:N` (receivers counted) for each publish. The
  sender's own copies are skipped by the check.
- `IrcWire`: an IRC daemon (ngIRCd). NICK and USER with the client's name, OPER and user mode +F
  (ngIRCd's relaxed flood protection, for the bench operator its config defines: without it a
  client may send about 5 lines a second), JOIN #room; in at the end of the channel's names
  (366). A message is `PRIVMSG #room :TEXT`; others get `:NICK!USER@HOST PRIVMSG #room :TEXT`.
"""

from __future__ import annotations

import re
from typing import Protocol

from chat.protocol import (
    DELIMITER,
    ENCODING,
    ERROR_PREFIX,
    LINE_TOO_LONG,
    NOTICE_PREFIX,
    Accepted,
    ClientHandshake,
    LineDecoder,
    encode_line,
    parse_server_line,
)

# The longest line a swarm client frames; also the join's framing bound.
MAX_LINE_BYTES = 1 << 20
# How notices and errors start, at the start of a read and after a newline: not chat lines.
SERVER_LINE_PREFIXES = (NOTICE_PREFIX.encode(ENCODING), ERROR_PREFIX.encode(ENCODING))
SERVER_LINE_STARTS = tuple(DELIMITER + prefix for prefix in SERVER_LINE_PREFIXES)


class Refused(Exception):
    """The server answered the join with a refusal."""


class Greeting(Protocol):
    def welcomed(self, data: bytes) -> bool:
        """True once the server has let the client in; raises Refused when it will not."""
        ...


class ChatGreeting:
    """The chat server's first lines, through the client side of the handshake."""

    def __init__(self) -> None:
        self.decoder = LineDecoder(max_line_bytes=MAX_LINE_BYTES)
        self.handshake = ClientHandshake()

    def welcomed(self, data: bytes) -> bool:
        """True once the name is accepted; raises Refused when it is refused."""
        for raw in self.decoder.feed(data):
            if raw is LINE_TOO_LONG:
                continue
            outcome = self.handshake.line_received(raw.decode(ENCODING, "replace"))
            if isinstance(outcome, Accepted):
                return True
            if outcome is not None:
                raise Refused(str(outcome))
        return False


class ChatWire:
    """The chat protocol itself: a name line to join, a text line per message."""

    separator = b": "  # between who sent a chat line and its text
    max_text_bytes = 64 * 1024  # the longest message text the workload may send
    max_clients = 1_000_000  # how many clients the bench joins to such a server at most
    echoes = False  # the server never sends a client its own lines
    newlines_per_delivery = 1
    newlines_per_send = 0

    def join_bytes(self, name: str) -> bytes:
        return encode_line(name)

    def greeting(self) -> Greeting:
        return ChatGreeting()

    def message(self, name: str, text: str) -> bytes:
        return encode_line(text)

    def counted_newlines(self, data: bytes) -> int:
        """Newlines in what a reader got that belong to chat lines (not notices or errors)."""
        other = sum(map(data.count, SERVER_LINE_STARTS)) + data.startswith(SERVER_LINE_PREFIXES)
        return data.count(b"\n") - other

    def chat_sender(self, raw: bytes) -> str | None:
        """The sender of a chat line (chat.protocol decides), None for anything else.

        Its answer depends only on the part before the first ": ", so callers may cache it.
        """
        line = parse_server_line(raw.decode(ENCODING, "replace"))
        return line.name if line.kind == "chat" else None

    def expected_newlines(self, total_messages: int, own_messages: int) -> int:
        """Newlines a client reads when the room sends `total_messages`, `own_messages` its own."""
        seen = total_messages if self.echoes else total_messages - own_messages
        return seen * self.newlines_per_delivery + own_messages * self.newlines_per_send


REDIS_CHANNEL = "room"
_SUBSCRIBED = re.compile(rb"subscribe\r\n\$\d+\r\n" + REDIS_CHANNEL.encode() + rb"\r\n:\d+\r\n")


def resp_command(*args: str) -> bytes:
    """One command in RESP, Redis's request format (binary-safe, so spaces need no quoting)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode(ENCODING)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisGreeting:
    """HELLO 3's map, then SUBSCRIBE's push: in once the subscription is confirmed."""

    def __init__(self) -> None:
        self.seen = b""

    def welcomed(self, data: bytes) -> bool:
        self.seen += data
        if self.seen.startswith(b"-") or b"\r\n-" in self.seen:
            raise Refused(self.seen.decode(ENCODING, "replace"))
        return _SUBSCRIBED.search(self.seen) is not None


class RedisWire(ChatWire):
    """Redis pub/sub: one channel is the room; a message is `NAME: TEXT` published to it."""

    echoes = True
    newlines_per_delivery = 7  # >3, $7, message, $4, room, $N, payload
    newlines_per_send = 1  # :N, the publish's reply

    def join_bytes(self, name: str) -> bytes:
        return resp_command("HELLO", "3") + resp_command("SUBSCRIBE", REDIS_CHANNEL)

    def greeting(self) -> Greeting:
        return RedisGreeting()

    def message(self, name: str, text: str) -> bytes:
        return resp_command("PUBLISH", REDIS_CHANNEL, f"{name}: {text}")

    def counted_newlines(self, data: bytes) -> int:
        return data.count(b"\n")

    def chat_sender(self, raw: bytes) -> str | None:
        """A payload line is `NAME: TEXT`; RESP's own lines ($7, message, :1) have no ": "."""
        name, sep, _ = raw.partition(b": ")
        return name.decode(ENCODING, "replace") if sep else None


IRC_CHANNEL = "#room"
IRC_OPERATOR = ("bench", "bench")  # bench/peers.py writes the same into ngIRCd's config
_IRC_PRIVMSG = f" PRIVMSG {IRC_CHANNEL} :".encode()


# A numeric reply is `:SERVER CODE ...` at the start of a line (the codes also occur in texts).
_IRC_REFUSED = re.compile(rb"^(?::\S+ (?:433|432|465) |ERROR )", re.MULTILINE)
_IRC_END_OF_NAMES = re.compile(rb"^:\S+ 366 ", re.MULTILINE)


class IrcGreeting:
    """Registration, OPER, MODE and JOIN: in at the end of the channel's names (366)."""

    def __init__(self) -> None:
        self.seen = b""

    def welcomed(self, data: bytes) -> bool:
        self.seen += data
        if _IRC_REFUSED.search(self.seen):
            raise Refused(self.seen.decode(ENCODING, "replace"))
        return _IRC_END_OF_NAMES.search(self.seen) is not None


class IrcWire(ChatWire):
    """IRC: the room is a channel, a message one PRIVMSG to it."""

    separator = _IRC_PRIVMSG
    # ngIRCd lets clients in at about 7 a second here (its registration penalties), so 1,000
    # take minutes: larger client counts are skipped for it, saying so.
    max_clients = 100
    # A line is at most 512 bytes with its CRLF, and the relayed one adds the sender's prefix.
    max_text_bytes = 400

    def join_bytes(self, name: str) -> bytes:
        user, password = IRC_OPERATOR
        lines = [
            f"NICK {name}",
            f"USER {name} 0 * :{name}",
            f"OPER {user} {password}",
            f"MODE {name} +F",
            f"JOIN {IRC_CHANNEL}",
        ]
        return "".join(line + "\r\n" for line in lines).encode(ENCODING)

    def greeting(self) -> Greeting:
        return IrcGreeting()

    def message(self, name: str, text: str) -> bytes:
        return f"PRIVMSG {IRC_CHANNEL} :{text}\r\n".encode(ENCODING)

    def counted_newlines(self, data: bytes) -> int:
        return data.count(_IRC_PRIVMSG)

    def chat_sender(self, raw: bytes) -> str | None:
        """The nick of `:NICK!USER@HOST PRIVMSG #room :TEXT`; None for any other line."""
        if not raw.startswith(b":") or _IRC_PRIVMSG not in raw:
            return None
        return raw[1:].partition(b"!")[0].decode(ENCODING, "replace")


Wire = ChatWire
CHAT_WIRE = ChatWire()
REDIS_WIRE = RedisWire()
IRC_WIRE = IrcWire()
