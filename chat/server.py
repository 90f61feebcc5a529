"""The chat server: listener, admission, registry, life cycle and stats (socketserver's "server").

What happens to one client is chat/session.py; how bytes reach clients, chat/delivery.py; the wire
format, chat/protocol.py (docs/PROTOCOL.md); the command line, chat/cli.py. Run it with
`python -m chat.server --help`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import ssl
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from chat import names, protocol
from chat.admission import Admission
from chat.bus_names import node_name_problem
from chat.config import Config
from chat.delivery import Delivery, make_delivery
from chat.parking import Parking, read_with_timeout
from chat.password import PasswordCheck, PasswordFileError, load_password_file
from chat.registry import Registry
from chat.session import COUNTERS, Session
from chat.texts import Texts
from chat.tls import server_context

if TYPE_CHECKING:
    from chat.bus import Bus

log = logging.getLogger("chat.server")

LISTEN_BACKLOG: Final = 4096
SHUTDOWN_FLUSH_S: Final = 0.5  # of the 2 s a stop may take: flushing the goodbye notice
SHUTDOWN_JOIN_S: Final = 0.3  # then for reader threads (daemons: their sockets are shut down)
ACCEPT_RETRY_S: Final = 0.05  # after an accept error nothing can fix at once


class SetupError(Exception):
    """The server cannot start as configured (TLS files, password file); str() is the one line
    the operator reads."""


class ChatServer:
    """A thread-per-client chat server. `bind()`, then `serve_forever()`; `stop()` from anywhere,
    then `shutdown()`. `server_address` is where it listens once bound (`--port`), `tls_address`
    where it speaks TLS (the same address without `--tls-port`; None without TLS).

    SetupError when the TLS or password files cannot be used."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tls = _tls_context(config)
        self.password = _password_check(config)
        self.texts = Texts(config.lang)
        names.load_tables()
        self.registry: Registry[Session] = Registry()
        self.delivery: Delivery[Any] = make_delivery(
            config.delivery,
            config.max_pending,
            config.writers,
            write_deadline_s=config.write_deadline,
            max_queued_total=config.max_queued_total,
        )
        self.admission = Admission(config.max_per_address, config.new_per_address, config.exempt)
        self.server_address: tuple[str, int] | None = None
        self.tls_address: tuple[str, int] | None = None
        self.stopping = threading.Event()
        self._lock = threading.Lock()  # guards the sets and dicts below and the retired totals
        self._sessions: dict[Session, threading.Thread] = {}
        # Sessions without a name yet and their handshake deadlines, oldest first; the accept
        # loop closes those past their deadline, so no reader thread needs a timer of its own.
        self._unnamed: dict[Session, float] = {}
        self._retired = dict.fromkeys(COUNTERS, 0)
        self._slow_consumers = 0
        self._started = time.monotonic()
        self._wake_r, self._wake_w = socket.socketpair()
        self._listeners: dict[socket.socket, ssl.SSLContext | None] = {}
        self._spare_fd = _open_spare_fd()
        self.parking = Parking()  # where quiet readers wait (chat/parking.py)
        self.bus: Bus | None = None  # the link to the other nodes, with --bus (join_bus)

    # --- life cycle ----------------------------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        """Open the listening sockets; returns the address actually bound for `--port` (port 0
        picks one). With `--tls-port` a second one speaks TLS."""
        config = self.config
        plain_context = None if config.tls_port is not None else self.tls
        self.server_address = self._listen(config.port, plain_context)
        if config.tls_port is not None:
            self.tls_address = self._listen(config.tls_port, self.tls)
        elif self.tls is not None:
            self.tls_address = self.server_address
        return self.server_address

    def _listen(self, port: int, tls: ssl.SSLContext | None) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = socket.create_server(
            (self.config.host, port), family=family, backlog=LISTEN_BACKLOG
        )
        listener.setblocking(False)
        self._listeners[listener] = tls
        host, bound = listener.getsockname()[:2]
        return host, bound

    def join_bus(self) -> None:
        """With `--bus`: join the other nodes (after bind: the default node name has the port).
        SetupError when the bus cannot be used. Without it nothing of the bus is even imported."""
        config = self.config
        if config.bus is None:
            return
        try:
            from chat.bus import Bus, BusError  # noqa: PLC0415 (redis-py: only with --bus)
        except ImportError as exc:
            raise SetupError(
                f"--bus needs redis-py ({exc}): pip install 'threaded-chat[cluster]'"
            ) from None
        port = self.server_address[1] if self.server_address else config.port
        node = config.node_name or f"{socket.gethostname()}:{port}"
        problem = node_name_problem(node)
        if problem is not None:
            raise SetupError(f"--node-name {node!r}: {problem}")
        try:
            bus = Bus(self, config.bus, node, buffer_entries=config.bus_buffer,
                      lease_s=config.bus_lease)  # fmt: skip
            bus.join()
        except BusError as exc:
            raise SetupError(str(exc)) from None
        self.bus = bus

    def serve_forever(self) -> None:
        """Accept connections until stop(); each gets its own session thread."""
        assert self._listeners, "bind() first"
        with selectors.DefaultSelector() as selector:
            for listener, tls in self._listeners.items():
                selector.register(listener, selectors.EVENT_READ, tls)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select(self._expire_unnamed()):
                    if key.fileobj in self._listeners:
                        self._accept_ready(key.fileobj, key.data)
        for listener in self._listeners:
            listener.close()

    def stop(self) -> None:
        """Ask serve_forever() to return. Safe from signal handlers and other threads."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def shutdown(self) -> None:
        """After serve_forever(): tell everyone, close every connection, wait briefly."""
        self.stop()
        if self.bus is not None:  # the others hear this node's users leave, then it is gone
            self.bus.close()
        with self._lock:
            boxes = [session.box for session in self._sessions]
            threads = list(self._sessions.values())
        line = protocol.encode_line(protocol.notice_line(self.texts("shutdown")))
        self.delivery.farewell(boxes, line, SHUTDOWN_FLUSH_S)
        deadline = time.monotonic() + SHUTDOWN_JOIN_S
        for thread in threads:
            left = deadline - time.monotonic()
            if left <= 0:  # join(0) on each of 10,000 threads alone takes half a second
                break
            thread.join(left)
        self.parking.close()
        self.delivery.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)

    def stats(self) -> dict[str, int | float]:
        """The counters `/stats` reports, in the documented order: this node's, then with
        `--bus` the cluster's totals."""
        own = self.node_stats()
        if self.bus is None:
            return own
        return {**own, **self.bus.stats(own)}

    def room_size(self) -> int:
        """How many are named in the room: this server's, or with `--bus` the whole cluster's
        as last seen (what `--notice-limit` counts)."""
        local = len(self.registry)
        return local if self.bus is None else max(local, self.bus.named)

    def node_stats(self) -> dict[str, int | float]:
        """This server's own counters."""
        with self._lock:
            totals = dict(self._retired)
            live = list(self._sessions)
        for session in live:
            for key in COUNTERS:
                totals[key] += getattr(session, key)
        return {
            "clients": len(self.registry),
            "connections": len(live),
            "messages_in": totals["messages_in"],
            "bytes_in": totals["bytes_in"],
            "deliveries_out": totals["deliveries_out"],
            "bytes_out": self.delivery.bytes_out(),
            "slow_consumers": self._slow_consumers,
            "throttled": totals["throttled"],
            "rested": totals["rested"],
            **self.delivery.counters(),
            "uptime_s": round(time.monotonic() - self._started, 1),
        }

    # --- what sessions tell the server ---------------------------------------------------------

    def named(self, session: Session) -> bool:
        """`session` has a name now; False when its handshake had already been cut short."""
        with self._lock:
            return self._unnamed.pop(session, None) is not None

    def finished(self, session: Session) -> None:
        """`session`'s thread is ending: forget it, keep its counters."""
        self.admission.release(session.host)
        with self._lock:
            self._unnamed.pop(session, None)
            self._sessions.pop(session, None)
            for key in COUNTERS:
                self._retired[key] += getattr(session, key)

    def cut_for_bus(self, session: Session, text: str) -> None:
        """The bus took `session`'s name away (another node holds it now): cut it."""
        self._cut(session, "name lost", text)

    def slow_consumer(self, session: Session) -> None:
        """The delivery gave up on `session`: cut it, count it (once)."""
        text = self.texts("slow_consumer", limit=self.config.max_pending)
        if self._cut(session, "slow consumer", text):
            with self._lock:
                self._slow_consumers += 1

    # --- accepting -----------------------------------------------------------------------------

    def _accept_ready(self, listener: socket.socket, tls: ssl.SSLContext | None) -> None:
        while True:
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._accept_failed(listener, exc)
                return
            self._admit(sock, addr[0], addr[1], tls)

    def _accept_failed(self, listener: socket.socket, exc: OSError) -> None:
        """Out of descriptors: free the spare one, take the waiting client, tell it, close it;
        otherwise it would hang unanswered while accept fails again at once, in a loop."""
        log.warning("accept failed: %s", exc)
        if self._spare_fd is None:
            time.sleep(ACCEPT_RETRY_S)
            return
        os.close(self._spare_fd)
        try:
            sock, addr = listener.accept()
        except OSError:
            time.sleep(ACCEPT_RETRY_S)
        else:
            log.warning("refused %s:%s: out of file descriptors", addr[0], addr[1])
            _refuse(sock, self.texts("full", limit=len(self._sessions)))
        self._spare_fd = _open_spare_fd()

    def _admit(self, sock: socket.socket, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        read_with_timeout(sock)  # quiet readers park (chat/parking.py)
        refusal = self._refusal(host)
        if refusal is not None:
            log.warning("refused %s:%s: %s", host, port, refusal)
            _refuse(sock, refusal if tls is None else None)  # no plain text into TLS
            return
        session = Session(self, sock, host, port, tls)
        thread = threading.Thread(target=session.run, name=f"client-{session.peer}", daemon=True)
        with self._lock:
            self._sessions[session] = thread
            self._unnamed[session] = time.monotonic() + self.config.handshake_timeout
            crowded = len(self._unnamed) > self.config.max_unnamed
        if crowded:
            self._push_out_oldest_unnamed()
        try:
            thread.start()
        except RuntimeError:  # no more threads: the OS, not max-clients, is the limit
            log.warning("refused %s: cannot start a thread", session.peer)
            self.finished(session)
            _refuse(sock, self.texts("full", limit=len(self._sessions)))

    def _refusal(self, host: str) -> str | None:
        """Why a new connection from `host` is refused, as the line it gets; None: welcome."""
        config = self.config
        with self._lock:
            full = len(self._sessions) >= config.max_clients
        if full:
            return self.texts("full", limit=config.max_clients)
        why = self.admission.admit(host, time.monotonic())
        if why == "address_busy":
            return self.texts(why, limit=config.max_per_address)
        if why == "address_rate":
            return self.texts(why, limit=config.new_per_address)
        return None

    def _expire_unnamed(self) -> float | None:
        """Close connections past their handshake deadline; seconds until the next one is due."""
        now = time.monotonic()
        expired = []
        with self._lock:
            for session, deadline in self._unnamed.items():  # oldest first: deadlines ascend
                if deadline > now:
                    break
                expired.append(session)
            for session in expired:
                del self._unnamed[session]
            following = next(iter(self._unnamed.values()), None)
        text = self.texts("handshake_timeout", seconds=self.config.handshake_timeout)
        for session in expired:
            self._cut(session, "handshake timeout", text)
        return None if following is None else max(0.0, following - now)

    def _push_out_oldest_unnamed(self) -> None:
        with self._lock:
            oldest = next(iter(self._unnamed), None)
            if oldest is not None:
                del self._unnamed[oldest]
        if oldest is not None:
            log.warning("closed %s: %s", oldest.peer, self.texts("unnamed_full"))
            self._cut(oldest, "pushed out", self.texts("unnamed_full"))

    def _cut(self, session: Session, reason: str, text: str) -> bool:
        """Disconnect `session` from any thread: a best-effort error line, then its socket is
        shut, which ends its thread's recv. False: it was already being cut."""
        with self._lock:
            if session.reason is not None:
                return False
            session.reason = reason
        self.delivery.kill(session.box, protocol.encode_line(protocol.error_line(text)))
        return True


def _tls_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        if config.tls_port is not None or config.tls_key is not None:
            raise SetupError("--tls-port and --tls-key need --tls-cert")
        return None
    try:
        return server_context(config.tls_cert, config.tls_key)
    except ssl.SSLError as exc:
        what = str(exc.reason or exc).lower().replace("_", " ")
        raise SetupError(f"cannot use {config.tls_cert} for TLS: {what}") from None
    except OSError as exc:
        raise SetupError(f"cannot read the TLS certificate or key: {exc.strerror or exc}") from None


def _password_check(config: Config) -> PasswordCheck | None:
    if config.password_file is None:
        return None
    try:
        return load_password_file(config.password_file)
    except PasswordFileError as exc:
        raise SetupError(str(exc)) from None


def _refuse(sock: socket.socket, text: str | None) -> None:
    """One error line, never blocking (the connection is brand new), then close."""
    if text is not None:
        with contextlib.suppress(OSError):
            sock.send(protocol.encode_line(protocol.error_line(text)), socket.MSG_DONTWAIT)
    sock.close()


def _open_spare_fd() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def main() -> int:
    """`python -m chat.server` and the `chat-server` script: see chat/cli.py."""
    from chat.cli import main as cli_main  # the CLI imports this module: import it at call time

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
