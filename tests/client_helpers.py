"""What the client tests share: a raw-socket peer, and the client run through pipes, on a
pseudo-terminal (pexpect), and on a pseudo-terminal rendered by pyte (a VT100 emulator, so no
system terminal program is needed).

The fixtures here are registered by tests/conftest.py. Every process started here is stopped by
PID, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pyte
import pytest

from chat.protocol import LineDecoder, encode_line
from harness import ServerProcess
from harness import start_chat_server as start_server

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 10.0
PIPE_RUN_TIMEOUT_S = 20.0
EVIL = "\x1b[2J\x1b[31mevil"
EVIL_VISIBLE = "^[[2J^[[31mevil"
# Our server refuses control characters in chat text (docs/PROTOCOL.md, "Text"), so end-to-end
# tests send what it still relays and a terminal must not obey: bidi controls that reorder the
# line. terminal_safe's handling of ESC and C1 controls, which other servers may relay, is tested
# on the function itself.
REORDERING = "\u202eesrever \u2066isolate\u2069"
REORDERING_VISIBLE = "<U+202E>esrever <U+2066>isolate<U+2069>"


@pytest.fixture
def english_server() -> Iterator[ServerProcess]:
    """A server speaking English whatever the machine's locale, stopped by PID afterwards."""
    proc = start_server("--quiet", "--lang", "en")
    try:
        yield proc
    finally:
        proc.stop()


class Peer:
    """Another chat user on a raw socket, speaking the protocol by hand."""

    def __init__(self, address: tuple[str, int], name: str) -> None:
        self.sock = socket.create_connection(address, timeout=WAIT_S)
        self._decoder = LineDecoder(1 << 20)
        self._pending: list[str] = []
        self.send(name)
        self.expect(f"* welcome, {name}!")

    def send(self, text: str) -> None:
        self.sock.sendall(encode_line(text))

    def expect(self, fragment: str, timeout_s: float = WAIT_S) -> str:
        """Read lines until one contains `fragment`; return it."""
        deadline = time.monotonic() + timeout_s
        while True:
            while self._pending:
                line = self._pending.pop(0)
                if fragment in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"peer never received {fragment!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before {fragment!r}")
            self._pending += [bytes(x).decode() for x in self._decoder.feed(chunk)]

    def sync(self) -> None:
        """Return once the server has handled everything this peer sent before."""
        self.send("/who")
        self.expect("* online (")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peers() -> Iterator[Callable[[tuple[str, int], str], Peer]]:
    made: list[Peer] = []

    def make(address: tuple[str, int], name: str) -> Peer:
        made.append(Peer(address, name))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def client_args(port: int, *extra: str) -> list[str]:
    return ["-m", "chat.client", "--host", "127.0.0.1", "--port", str(port), *extra]


def client_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update({"LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}, **overrides)
    return env


def run_piped(
    port: int, stdin: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The client with `stdin` piped in, run to completion (killed if it outlives the bound);
    `env`: variables on top of client_env()'s."""
    return subprocess.run(
        [sys.executable, *client_args(port, *extra)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=client_env(**(env or {})),
        timeout=PIPE_RUN_TIMEOUT_S,
    )


@pytest.fixture
def popen_client() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start piped clients that stay open; each one is killed by PID at the end if still alive."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, *client_args(port, *extra)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=client_env(),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT_S)


@pytest.fixture
def pty_client() -> Iterator[Callable[..., pexpect.spawn]]:
    """Spawn clients on a pseudo-terminal, 24x100; closed (killed by PID if need be) afterwards."""
    started: list[pexpect.spawn] = []

    def spawn(port: int, *extra: str, **env: str) -> pexpect.spawn:
        # Nothing here answers prompt_toolkit's cursor position requests; `terminal` does.
        child = pexpect.spawn(
            sys.executable,
            client_args(port, *extra),
            cwd=str(REPO),
            env=client_env(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", **env),
            dimensions=(24, 100),
            timeout=WAIT_S,
        )
        child.logfile_read = io.BytesIO()
        started.append(child)
        return child

    yield spawn
    for child in started:
        child.close(force=True)


def pty_output(child: pexpect.spawn) -> bytes:
    return child.logfile_read.getvalue()


def exit_status(child: pexpect.spawn) -> int:
    """Wait for the child to end on its own (bounded) and return its exit status."""
    child.expect(pexpect.EOF, timeout=WAIT_S)
    child.close()
    assert child.signalstatus is None, f"killed by signal {child.signalstatus}"
    return child.exitstatus


class Terminal:
    """The client on a pseudo-terminal, its output rendered by pyte, a VT100 emulator: the screen
    a user would see, read as text and colours. pyte answers the cursor position requests that
    prompt_toolkit sends, as a real terminal does."""

    ROWS, COLUMNS = 24, 100

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(REPO),
            env=env,
            dimensions=(self.ROWS, self.COLUMNS),
            timeout=WAIT_S,
        )
        self.screen = pyte.Screen(self.COLUMNS, self.ROWS)
        self.screen.write_process_input = self._answer  # type: ignore[method-assign]
        self.stream = pyte.ByteStream(self.screen)

    def _answer(self, data: str) -> None:
        self.child.send(data.encode())

    def _pump(self, timeout_s: float) -> None:
        """Feed whatever the client wrote within `timeout_s` to the emulator."""
        with contextlib.suppress(pexpect.TIMEOUT):
            self.stream.feed(self.child.read_nonblocking(65536, timeout=timeout_s))

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> list[str]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            self._pump(0.05)
            if predicate(self.lines()):
                return self.lines()
        raise AssertionError(f"screen never showed {what}:\n" + "\n".join(self.lines()))

    def colours_of(self, row: int) -> set[str]:
        """The foreground colours used on screen row `row`."""
        return {char.fg for char in self.screen.buffer[row].values()}

    def type(self, text: str) -> None:
        self.child.send(text)

    def press_enter(self) -> None:
        self.child.send("\r")

    def close(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    """Start clients on an emulated terminal; each is closed (killed by PID) at the end."""
    started: list[Terminal] = []

    def start(port: int, *extra: str) -> Terminal:
        started.append(
            Terminal([sys.executable, *client_args(port, *extra)], client_env(TERM="xterm"))
        )
        return started[-1]

    yield start
    for term in started:
        term.close()
