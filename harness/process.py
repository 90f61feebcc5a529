"""A server as a child process: start it, wait for its `listening on HOST:PORT` line, read its CPU
and memory, stop it by PID.

Any server that logs that line on stderr fits: chat.server, bench's asyncio peer, a shell that
execs one. A background thread keeps reading stderr, so a chatty server never blocks on a full pipe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
KEPT_STDERR_LINES = 1000
# `listening on HOST:PORT`, then ` (TLS)` or ` and TLS on HOST:PORT` when it speaks TLS.
_LISTENING_RE = re.compile(r"listening on (\S+):(\d+)( \(TLS\))?(?: and TLS on \S+:(\d+))?")
_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def chat_server_command(*args: str) -> list[str]:
    """`python -m chat.server --host 127.0.0.1 --port 0 ARGS`: a port the OS picks."""
    return [sys.executable, "-m", "chat.server", "--host", "127.0.0.1", "--port", "0", *args]


@dataclass
class ServerProcess:
    """A running server child process and where it listens."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    stderr_lines: list[str] = field(default_factory=list)
    label: str = ""  # what was started, for reports (bench: its server kind)
    tls_port: int | None = None  # where it speaks TLS (the same port unless --tls-port)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def tls_address(self) -> tuple[str, int]:
        assert self.tls_port is not None, "this server does not speak TLS"
        return (self.host, self.tls_port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr_text(self) -> str:
        """What the server wrote on stderr so far (its first KEPT_STDERR_LINES lines)."""
        return "".join(self.stderr_lines)

    def cpu_s(self) -> float:
        """User plus system CPU seconds of all the server's threads so far (/proc/PID/stat)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # After the ")" closing the command name, utime and stime are fields 12 and 13.
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S

    def rss_bytes(self) -> int:
        """Resident memory (VmRSS) from /proc/PID/status."""
        return self._status_field("VmRSS:") * 1024

    def threads(self) -> int:
        """The server's thread count from /proc/PID/status."""
        return self._status_field("Threads:")

    def _status_field(self, name: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
        return 0

    def alive(self) -> bool:
        """True while the process has not exited."""
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


def start_chat_server(
    *args: str,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> ServerProcess:
    """Start `python -m chat.server --host 127.0.0.1 --port 0 ARGS`; wait until it listens."""
    return start_process(
        chat_server_command(*args), env=env, log_path=log_path, timeout_s=timeout_s
    )


def start_process(
    cmd: list[str],
    *,
    label: str = "",
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = STARTUP_TIMEOUT_S,
    ready: tuple[str, tuple[str, int]] | None = None,
) -> ServerProcess:
    """Run `cmd`, a server that logs `listening on HOST:PORT` on stderr, and wait for that line.

    `env`: variables set on top of this process's environment. `log_path`: a file that gets all
    of the server's stderr, as it comes. The child runs in the checkout's root directory.
    `ready`: for a server told its address beforehand (a peer such as redis-server), the text
    of the stderr line that says it is ready, and that address.
    """
    pattern = re.compile(re.escape(ready[0])) if ready else _LISTENING_RE
    # Line-buffered, so the file is readable while the server runs; the drain thread closes it.
    log = open(log_path, "w", buffering=1) if log_path else None
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env} if env else None,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    found: list[re.Match[str]] = []
    started = threading.Event()
    drain_args = (proc.stderr, lines, found, started, log, pattern)
    threading.Thread(target=_drain, args=drain_args, daemon=True).start()
    try:
        started.wait(timeout_s)
    except BaseException:  # interrupted while waiting: never leave the child behind
        proc.kill()
        proc.wait()
        raise
    if found:
        if ready:
            return ServerProcess(proc, *ready[1], lines, label)
        host, port, tls_only, tls_port = found[0].groups()
        tls = int(port) if tls_only else int(tls_port) if tls_port else None
        return ServerProcess(proc, host, int(port), lines, label, tls)
    proc.kill()
    proc.wait()
    where = f" (log: {log_path})" if log_path else ""
    raise RuntimeError(f"server did not start{where}: {' '.join(cmd)}\n{''.join(lines)}")


def _drain(
    stream: IO[str],
    lines: list[str],
    found: list[re.Match[str]],
    ready: threading.Event,
    log: IO[str] | None,
    pattern: re.Pattern[str] = _LISTENING_RE,
) -> None:
    """Read the server's stderr to the end; signal `ready` at the `pattern` line or EOF."""
    try:
        for line in stream:
            if log is not None:
                log.write(line)
            if len(lines) < KEPT_STDERR_LINES:
                lines.append(line)
            match = None if found else pattern.search(line)
            if match:
                found.append(match)
                ready.set()
    finally:
        if log is not None:
            log.close()
        ready.set()
