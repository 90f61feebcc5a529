"""A plain asyncio chat server speaking docs/PROTOCOL.md: the peer the benchmarks compare against.

It is what a Python user would write first with asyncio: one coroutine per connection,
`StreamReader.readuntil` framing bounded at 4096 bytes, and a broadcast that calls
`writer.write` once per recipient. No batching, no coalescing, no tricks. The delivery bound of
the protocol (`--max-pending`) is kept with the transport's own write-buffer size.

    python -m bench.asyncio_server --port 0 --quiet
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

from chat.protocol import (
    HELP_COMMAND,
    LEAVE_LINE,
    LEAVE_WORDS,
    MAX_LINE_BYTES,
    MSG_COMMAND,
    NICK_COMMAND,
    QUIT_COMMAND,
    STATS_COMMAND,
    WHO_COMMAND,
    Command,
    Leave,
    Message,
    chat_line,
    command_line,
    encode_line,
    error_line,
    format_stats,
    name_key,
    name_problem,
    notice_line,
    parse_client_line,
    private_line,
)

log = logging.getLogger("bench.asyncio_server")

HANDSHAKE_TIMEOUT_S = 30.0
MAX_PENDING_BYTES = 16 * 1024 * 1024
NAMES_PER_LINE = 20
TOO_LONG = object()
NAME_REASONS = {
    "empty": "a name needs 1 to 32 characters",
    "too-long": "a name has at most 32 characters",
    "bad-char": "use letters, digits, _ - . only",
    "taken": "that name is taken",
}
COMMAND_USAGE = (
    command_line(WHO_COMMAND),
    command_line(MSG_COMMAND, "NAME TEXT"),
    command_line(NICK_COMMAND, "NEW"),
    command_line(STATS_COMMAND),
    command_line(HELP_COMMAND),
    command_line(QUIT_COMMAND),
)
HELP_LINES = (
    f"commands: {', '.join(COMMAND_USAGE)} (or {LEAVE_LINE})",
    "//text sends a line starting with /",
    "join and leave notices are not sent while more than the notice limit are online",
)


@dataclass(eq=False)
class Client:
    """One named connection."""

    name: str
    writer: asyncio.StreamWriter


@dataclass
class Settings:
    """Command-line knobs, named as chat.server names them."""

    max_clients: int = 10000
    notice_limit: int = 1000
    max_pending: int = MAX_PENDING_BYTES
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S


@dataclass
class ChatRoom:
    """Who is online and the counters `/stats` reports."""

    settings: Settings
    clients: dict[str, Client] = field(default_factory=dict)
    connections: int = 0
    started: float = field(default_factory=time.monotonic)
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("messages_in", "deliveries_out", "bytes_in", "bytes_out", "slow_consumers"), 0
        )
    )

    def send(self, client: Client, text: str) -> None:
        """Queue one line for `client`; disconnect it when its queue passes `max_pending`."""
        data = encode_line(text)
        self._write(client, data)

    def _write(self, client: Client, data: bytes) -> None:
        transport = client.writer.transport
        if transport.is_closing():
            return
        transport.write(data)
        self.counters["deliveries_out"] += 1
        self.counters["bytes_out"] += len(data)
        if transport.get_write_buffer_size() > self.settings.max_pending:
            self.counters["slow_consumers"] += 1
            transport.abort()
            self.drop(client)
            self.notify_others(client, f"{client.name} was disconnected: too slow to read")

    def broadcast(self, sender: Client, text: str) -> None:
        data = encode_line(text)
        for client in list(self.clients.values()):
            if client is not sender:
                self._write(client, data)

    def notify_others(self, client: Client, text: str) -> None:
        if len(self.clients) <= self.settings.notice_limit:
            self.broadcast(client, notice_line(text))

    def drop(self, client: Client) -> bool:
        key = name_key(client.name)
        if self.clients.get(key) is client:
            del self.clients[key]
            return True
        return False

    def stats(self) -> str:
        values: dict[str, int | float] = {"clients": len(self.clients), **self.counters}
        values["uptime_s"] = round(time.monotonic() - self.started, 1)
        return notice_line(format_stats(values))

    def who_lines(self, limit: int | None = None) -> list[str]:
        shown = [c.name for c in itertools.islice(self.clients.values(), limit)]
        chunks = [shown[i : i + NAMES_PER_LINE] for i in range(0, len(shown), NAMES_PER_LINE)]
        lines = [", ".join(chunk) for chunk in chunks] or [""]
        if limit is not None and len(self.clients) > limit:
            lines[-1] += f" and {len(self.clients) - limit} more"
        return lines


async def read_line(reader: asyncio.StreamReader) -> bytes | object | None:
    """The next line without its terminator, TOO_LONG for a discarded line, None at EOF."""
    try:
        return (await reader.readuntil(b"\n")).rstrip(b"\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as overrun:
        consumed = overrun.consumed
    # Over the limit: drop what is buffered and keep dropping up to the next newline.
    while True:
        await reader.readexactly(consumed)
        try:
            await reader.readuntil(b"\n")
            return TOO_LONG
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as overrun:
            consumed = overrun.consumed


async def decoded_lines(room: ChatRoom, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    """Yield decoded, non-empty text lines; answer overlong or undecodable ones with an error."""
    while True:
        raw = await read_line(reader)
        if raw is None:
            return
        if raw is TOO_LONG:
            writer.write(
                encode_line(error_line(f"line too long (over {MAX_LINE_BYTES} bytes), discarded"))
            )
            continue
        room.counters["bytes_in"] += len(raw) + 1
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            writer.write(encode_line(error_line("line is not valid UTF-8, discarded")))


async def handshake(room: ChatRoom, lines, writer: asyncio.StreamWriter) -> Client | None:
    """Ask for a name until one is accepted; None when the client leaves or goes away."""
    writer.write(encode_line(notice_line("hello! send your name: letters, digits, _ - . (max 32)")))
    async for text in lines:
        name = text.strip()
        if not name:
            continue
        if name in LEAVE_WORDS:
            return None
        problem = name_problem(name) or ("taken" if name_key(name) in room.clients else None)
        if problem:
            writer.write(encode_line(error_line(f"name refused: {NAME_REASONS[problem]}")))
            continue
        client = Client(name, writer)
        room.clients[name_key(name)] = client
        online = room.who_lines(limit=NAMES_PER_LINE)[0]
        room.send(client, notice_line(f"welcome, {name}! {len(room.clients)} online: {online}"))
        room.notify_others(client, f"{name} joined the chat")
        return client
    return None


def run_command(room: ChatRoom, client: Client, command: Command) -> Client:
    """Carry out one `/command`; returns the client (renamed by /nick)."""
    if command.name == WHO_COMMAND:
        lines = room.who_lines()
        room.send(client, notice_line(f"online ({len(room.clients)}): {lines[0]}"))
        for line in lines[1:]:
            room.send(client, notice_line(line))
    elif command.name == MSG_COMMAND:
        target_name, _, text = command.arg.partition(" ")
        target = room.clients.get(name_key(target_name))
        if target is None:
            room.send(client, error_line(f"no such user: {target_name}"))
        else:
            room.counters["messages_in"] += 1
            room.send(target, private_line(client.name, text))
    elif command.name == NICK_COMMAND:
        return rename(room, client, command.arg)
    elif command.name == STATS_COMMAND:
        room.send(client, room.stats())
    elif command.name == HELP_COMMAND:
        for line in HELP_LINES:
            room.send(client, notice_line(line))
    else:
        usage = f"unknown command {command_line(command.name)}, try {command_line(HELP_COMMAND)}"
        room.send(client, error_line(usage))
    return client


def rename(room: ChatRoom, client: Client, new: str) -> Client:
    problem = name_problem(new)
    taken = name_key(new) in room.clients and name_key(new) != name_key(client.name)
    if problem or taken:
        room.send(client, error_line(f"name refused: {NAME_REASONS[problem or 'taken']}"))
        return client
    old = client.name
    room.drop(client)
    client.name = new
    room.clients[name_key(new)] = client
    room.send(client, notice_line(f"you are now {new}"))
    room.notify_others(client, f"{old} is now known as {new}")
    return client


async def session(
    room: ChatRoom, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One connection's whole life: full check, handshake, messages, goodbye."""
    if room.connections >= room.settings.max_clients:
        writer.write(encode_line(error_line(f"server full ({room.settings.max_clients} clients)")))
        writer.close()
        return
    room.connections += 1
    lines = decoded_lines(room, reader, writer)
    client = None
    try:
        with contextlib.suppress(ConnectionError, OSError):
            try:
                async with asyncio.timeout(room.settings.handshake_timeout_s):
                    client = await handshake(room, lines, writer)
            except TimeoutError:
                writer.write(encode_line(error_line("no name received in time, goodbye")))
            if client is not None:
                await chat(room, client, lines)
    finally:
        room.connections -= 1
        if client is not None and room.drop(client):
            room.notify_others(client, f"{client.name} left the chat.")
        writer.close()


async def chat(room: ChatRoom, client: Client, lines) -> None:
    async for text in lines:
        parsed = parse_client_line(text)
        if isinstance(parsed, Message):
            room.counters["messages_in"] += 1
            room.broadcast(client, chat_line(client.name, parsed.text))
        elif isinstance(parsed, Command):
            client = run_command(room, client, parsed)
        elif isinstance(parsed, Leave):
            room.send(client, notice_line(f"goodbye, {client.name}"))
            return
        if client.writer.transport.is_closing():
            return


async def serve(host: str, port: int, settings: Settings) -> None:
    room = ChatRoom(settings)
    server = await asyncio.start_server(
        lambda r, w: session(room, r, w), host, port, limit=MAX_LINE_BYTES + 2, backlog=4096
    )
    sockname = server.sockets[0].getsockname()
    print(f"listening on {sockname[0]}:{sockname[1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
        server.close()
        for client in list(room.clients.values()):
            with contextlib.suppress(Exception):
                client.writer.write(encode_line(notice_line("server is shutting down, goodbye")))
                client.writer.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.asyncio_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    parser.add_argument("--max-clients", type=int, default=10000)
    parser.add_argument("--notice-limit", type=int, default=1000)
    parser.add_argument("--max-pending", type=int, default=MAX_PENDING_BYTES)
    parser.add_argument("--handshake-timeout", type=float, default=HANDSHAKE_TIMEOUT_S)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the peer server until SIGINT or SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO)
    settings = Settings(
        args.max_clients, args.notice_limit, args.max_pending, args.handshake_timeout
    )
    asyncio.run(serve(args.host, args.port, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
