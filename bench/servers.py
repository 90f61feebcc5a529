"""The servers under test and how each is started; harness.process runs and stops them.

Our three kinds run side by side: `threaded` (chat.server, its default delivery), `inline`
(chat.server --delivery inline, the original design) and `asyncio` (bench.asyncio_server); and
real peers with the same workload through their own protocol (bench/wire.py): `redis` (Redis
pub/sub) and `ngircd` (an IRC daemon), both started by bench/peers.py. A peer ignores the chat
server's options.
"""

from __future__ import annotations

import os
import shlex
import sys

from bench.peers import start_ngircd
from bench.wire import CHAT_WIRE, IRC_WIRE, REDIS_WIRE, ChatWire
from harness import ServerProcess, chat_server_command, start_process
from harness.redis import start_redis

SERVER_KINDS = ("threaded", "inline", "asyncio", "redis", "ngircd")
PEER_KINDS = ("redis", "ngircd")


def chat_args() -> list[str]:
    """Options every chat.server of the run gets (threaded and inline), from BENCH_CHAT_ARGS:
    `BENCH_CHAT_ARGS="--switch-interval 0.005" make bench OUT=...` measures one change, for
    `python -m bench.report --compare`. A case's own options come after, so they win."""
    return shlex.split(os.environ.get("BENCH_CHAT_ARGS", ""))


def server_command(kind: str, *extra: str) -> list[str]:
    """The command line that starts a server of `kind` on 127.0.0.1, port 0."""
    if kind == "asyncio":
        common = ["--host", "127.0.0.1", "--port", "0", "--quiet", *extra]
        return [sys.executable, "-m", "bench.asyncio_server", *common]
    if kind == "threaded":
        return chat_server_command("--quiet", *chat_args(), *extra)
    if kind == "inline":
        return chat_server_command("--quiet", *chat_args(), *extra, "--delivery", "inline")
    raise ValueError(f"unknown server kind {kind!r}")


def start_server(kind: str, *extra: str) -> ServerProcess:
    """Start a server of `kind` and wait until it accepts connections."""
    if kind == "redis":
        return start_redis()
    if kind == "ngircd":
        return start_ngircd()
    return start_process(server_command(kind, *extra), label=kind)


def wire_for(kind: str) -> ChatWire:
    """How the swarm speaks to a server of `kind`."""
    return {"redis": REDIS_WIRE, "ngircd": IRC_WIRE}.get(kind, CHAT_WIRE)
