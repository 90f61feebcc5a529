"""The servers under test and how each is started; harness.process runs and stops them.

Our three kinds run side by side: `threaded` (chat.server, its default delivery), `inline`
(chat.server --delivery inline, the original design) and `asyncio` (bench.asyncio_server); and
real peers with the same workload through their own protocol (bench/wire.py): `redis` (Redis
pub/sub, bench/peers.py). A peer ignores the chat server's options.
"""

from __future__ import annotations

import sys

from bench.peers import start_redis
from bench.wire import CHAT_WIRE, REDIS_WIRE, ChatWire
from harness import ServerProcess, chat_server_command, start_process

SERVER_KINDS = ("threaded", "inline", "asyncio", "redis")
PEER_KINDS = ("redis",)


def server_command(kind: str, *extra: str) -> list[str]:
    """The command line that starts a server of `kind` on 127.0.0.1, port 0."""
    if kind == "asyncio":
        common = ["--host", "127.0.0.1", "--port", "0", "--quiet", *extra]
        return [sys.executable, "-m", "bench.asyncio_server", *common]
    if kind == "threaded":
        return chat_server_command("--quiet", *extra)
    if kind == "inline":
        return chat_server_command("--quiet", *extra, "--delivery", "inline")
    raise ValueError(f"unknown server kind {kind!r}")


def start_server(kind: str, *extra: str) -> ServerProcess:
    """Start a server of `kind` and wait until it accepts connections."""
    if kind == "redis":
        return start_redis()
    return start_process(server_command(kind, *extra), label=kind)


def wire_for(kind: str) -> ChatWire:
    """How the swarm speaks to a server of `kind`."""
    return REDIS_WIRE if kind == "redis" else CHAT_WIRE
