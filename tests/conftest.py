"""Shared fixtures: a chat server in its own process on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

STARTUP_TIMEOUT_S = 10.0
_LISTENING_RE = re.compile(r"listening on (\S+):(\d+)")


@dataclass
class ServerProcess:
    """A `python -m chat.server` child process and where it listens."""

    proc: subprocess.Popen[str]
    host: str
    port: int
    stderr_lines: list[str]

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def stderr_text(self) -> str:
        """Everything the server wrote on stderr so far (a background thread keeps reading it)."""
        return "".join(self.stderr_lines)

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM by PID, wait; SIGKILL if it does not go. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        return self.proc.returncode


def start_server(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start `python -m chat.server --port 0 ARGS` and wait for its `listening on` line."""
    cmd = [sys.executable, "-m", "chat.server", "--host", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), True)
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        match = _LISTENING_RE.search(line)
        if match:
            lines = [line]
            # Keep draining stderr so a chatty server never blocks on a full pipe.
            threading.Thread(target=_drain, args=(proc.stderr, lines), daemon=True).start()
            return ServerProcess(proc, match.group(1), int(match.group(2)), lines)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"server did not start: {cmd}")


def _drain(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    """A fresh server subprocess with default settings, stopped (by PID) afterwards."""
    server = start_server("--quiet")
    try:
        yield server
    finally:
        server.stop()


def connect(address: tuple[str, int], timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout_s)
    return sock


class Peer:
    """A raw-socket chat client for tests: send lines, wait for lines, all with deadlines."""

    def __init__(self, address: tuple[str, int], name: str | None = None, timeout_s: float = 5.0):
        from chat.protocol import LineDecoder

        self.sock = socket.create_connection(address, timeout=timeout_s)
        self.decoder = LineDecoder(1 << 20)
        self.lines: deque[str] = deque()
        self.closed = False
        self.timeout_s = timeout_s
        self.expect(lambda line: line.startswith("* "))  # the greeting
        if name is not None:
            self.join(name)

    def join(self, name: str) -> str:
        self.send(name)
        return self.expect(lambda line: line.startswith(("* ", "! ")))  # welcome or refusal

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_more(self, deadline: float) -> bool:
        """Read once; False once the server closed the connection or the deadline passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.closed:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.lines.extend(line.decode() for line in self.decoder.feed(data))
        return True

    def expect(self, predicate, timeout_s: float | None = None) -> str:
        """Consume lines until one matches; returns it. AssertionError (with what came) if none."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        seen: list[str] = []
        while True:
            while self.lines:
                line = self.lines.popleft()
                seen.append(line)
                if predicate(line):
                    return line
            if not self._read_more(deadline):
                raise AssertionError(f"no matching line; got {seen!r}, closed={self.closed}")

    def expect_line(self, text: str, timeout_s: float | None = None) -> str:
        return self.expect(lambda line: line == text, timeout_s)

    def collect(self, quiet_s: float = 0.3) -> list[str]:
        """Everything that arrives until the connection is quiet for `quiet_s`."""
        out = []
        while True:
            out.extend(self.lines)
            self.lines.clear()
            if not self._read_more(time.monotonic() + quiet_s):
                out.extend(self.lines)
                self.lines.clear()
                return out

    def wait_closed(self, timeout_s: float = 5.0) -> list[str]:
        """Read until the server closes the connection; returns the lines that came first."""
        deadline = time.monotonic() + timeout_s
        while self._read_more(deadline):
            pass
        assert self.closed, "server did not close the connection"
        out = list(self.lines)
        self.lines.clear()
        return out

    def close(self) -> None:
        self.sock.close()
