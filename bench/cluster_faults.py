"""Faults under load for the cluster cases: Redis killed and restarted, a node killed; and what
the clients were told about it.

`Faults` runs the fault's steps on a timer thread while the swarm's window runs (the window's
loop stays in the test's thread) and records when each happened on the monotonic clock, the
swarm's own. `notices` reads a client's window back as the server's notices with their arrival
stamps, so the bus's "back" notice is timed from the clients' side, and `counted_loss` adds up
what the bus's "N messages from other servers were lost" notices say. `NameProbe` tries to join
with a dead node's name until it works.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.swarm_client import RECV_BYTES, Client
from chat.protocol import LINE_TOO_LONG, LineDecoder, parse_server_line
from chat.texts import Texts
from harness import Peer
from harness.process import ServerProcess
from harness.redis import start_redis

SERVER_LANG = "en"  # the cluster cases start their servers in English, to read their notices
_TEXTS = Texts(SERVER_LANG)
_SAMPLE_COUNT = 7


def bus_text(key: str) -> str:
    """A notice of the bus without fields, as the servers send it."""
    return _TEXTS(key)


def counted_pattern(key: str) -> re.Pattern[str]:
    """A catalogue entry with a `{count:...}` field as a pattern that captures the count, in
    both its singular and plural forms."""
    forms = {_TEXTS(key, count=n).replace(str(n), "\0", 1) for n in (1, _SAMPLE_COUNT)}
    return re.compile("|".join(re.escape(f).replace("\0", r"(\d+)") for f in sorted(forms)))


def notices(client: Client) -> list[tuple[int, str]]:
    """The server's notices in this window's reads of `client`: (arrival ns, text)."""
    decoder = LineDecoder(max_line_bytes=RECV_BYTES)
    found = []
    for stamp, chunk in client.chunks:
        for raw in decoder.feed(chunk.tobytes()):
            if raw is LINE_TOO_LONG:
                continue
            line = parse_server_line(raw.decode("utf-8", "replace"))
            if line.kind == "notice":
                found.append((stamp, line.text))
    return found


def first_notice(client: Client, text: str) -> int | None:
    """When `text` first reached `client` this window (ns), or None."""
    return next((stamp for stamp, said in notices(client) if said == text), None)


def counted_loss(client: Client, pattern: re.Pattern[str]) -> int:
    """What the counted-gap notices this window told `client` it missed, added up."""
    total = 0
    for _, text in notices(client):
        match = pattern.fullmatch(text)
        if match:
            total += int(next(g for g in match.groups() if g is not None))
    return total


@dataclass
class Faults:
    """Steps run at set times (seconds from `start`) on a thread; when each one happened."""

    steps: list[tuple[float, str, Callable[[], object]]]
    done_ns: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(t0,), daemon=True)
        self.thread.start()

    def _run(self, t0: float) -> None:
        for at_s, name, step in self.steps:
            time.sleep(max(0.0, t0 + at_s - time.monotonic()))
            try:
                step()
            except Exception as exc:  # said by the case, which fails on it
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                return
            self.done_ns[name] = time.monotonic_ns()

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout_s)


def kill(process: ServerProcess) -> None:
    """SIGKILL by PID, and reap it."""
    process.proc.kill()
    process.proc.wait()


class RedisRestart:
    """Kill the room's Redis, and later start a fresh one on the same port (empty: no
    persistence), as an operator's restart does. `restarted` is the new one (stopped by the
    room's teardown, which the caller hands it to)."""

    def __init__(self, redis: ServerProcess) -> None:
        self.redis = redis
        self.restarted: ServerProcess | None = None

    def kill(self) -> None:
        kill(self.redis)

    def restart(self) -> None:
        self.restarted = start_redis(port=self.redis.port)


@dataclass
class NameProbe:
    """From `start` on, join `address` as `name` every `every_s` until it is welcomed (or
    `bound_s` passes); `freed_ns` is when it was."""

    address: tuple[str, int]
    name: str
    bound_s: float
    every_s: float = 0.25
    freed_ns: int | None = None
    tries: int = 0
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.bound_s
        while time.monotonic() < deadline:
            self.tries += 1
            if self._try():
                self.freed_ns = time.monotonic_ns()
                return
            time.sleep(self.every_s)

    def _try(self) -> bool:
        try:
            peer = Peer(self.address, timeout_s=2.0)
        except OSError:
            return False
        try:
            answer = parse_server_line(peer.join(self.name))
            return answer.kind == "notice"  # the welcome; a refusal is an error line
        except (AssertionError, OSError):
            return False
        finally:
            peer.close()

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout_s)
