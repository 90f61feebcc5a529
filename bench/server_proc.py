"""Servers under test as child processes: start, find the port, read CPU and memory, stop by PID.

Three kinds run side by side: `threaded` (chat.server, its default delivery), `inline`
(chat.server --delivery inline, the original design) and `asyncio` (bench.asyncio_server).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field

STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
SERVER_KINDS = ("threaded", "inline", "asyncio")
_LISTENING_RE = re.compile(r"listening on (\S+):(\d+)")
_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def server_command(kind: str, *extra: str) -> list[str]:
    """The command line that starts a server of `kind` on 127.0.0.1, port 0."""
    common = ["--host", "127.0.0.1", "--port", "0", "--quiet", *extra]
    if kind == "asyncio":
        return [sys.executable, "-m", "bench.asyncio_server", *common]
    if kind == "threaded":
        return [sys.executable, "-m", "chat.server", *common]
    if kind == "inline":
        return [sys.executable, "-m", "chat.server", *common, "--delivery", "inline"]
    raise ValueError(f"unknown server kind {kind!r}")


@dataclass
class ServerProcess:
    """A running server child process and where it listens."""

    kind: str
    proc: subprocess.Popen[str]
    host: str
    port: int
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr_text(self) -> str:
        """What the server wrote on stderr so far (a background thread keeps reading it)."""
        return "".join(self.stderr_lines)

    def cpu_s(self) -> float:
        """User plus system CPU seconds of all the server's threads so far (/proc/PID/stat)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # After the ")" closing the command name, utime and stime are fields 12 and 13.
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S

    def rss_bytes(self) -> int:
        """Resident memory (VmRSS) from /proc/PID/status."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def threads(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM by PID and wait; SIGKILL if it does not exit in time. Returns the status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        return self.proc.returncode


def start_server(kind: str, *extra: str) -> ServerProcess:
    """Start a server of `kind` and wait for its `listening on HOST:PORT` line on stderr."""
    return start_process(kind, server_command(kind, *extra))


def start_process(kind: str, cmd: list[str]) -> ServerProcess:
    """Run `cmd`, a server that logs `listening on HOST:PORT` on stderr, and wait for that line."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.stderr is not None
    lines: list[str] = []
    found: list[re.Match[str]] = []
    ready = threading.Event()
    threading.Thread(target=_drain, args=(proc.stderr, lines, found, ready), daemon=True).start()
    try:
        ready.wait(STARTUP_TIMEOUT_S)
    except BaseException:  # interrupted while waiting: never leave the child behind
        proc.kill()
        proc.wait()
        raise
    if found:
        return ServerProcess(kind, proc, found[0].group(1), int(found[0].group(2)), lines)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"server did not start: {' '.join(cmd)}\n{''.join(lines)}")


def _drain(stream, lines: list[str], found: list, ready: threading.Event) -> None:
    """Read the server's stderr to the end; signal `ready` at the `listening on` line or EOF."""
    for line in stream:
        if len(lines) < 1000:
            lines.append(line)
        match = None if found else _LISTENING_RE.search(line)
        if match:
            found.append(match)
            ready.set()
    ready.set()
