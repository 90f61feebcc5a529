"""One simulated client of the swarm, and the epoll registry that maps sockets back to clients.

A `Client` is a non-blocking socket with what it has read and what it must still send; it frames
its own join (the server's greeting, through chat.protocol) and tells its chat lines from
notices. The `Poller` keeps epoll in step with what each client wants to do (read, write).
"""

from __future__ import annotations

import errno
import select
import socket
import ssl

from bench.wire import CHAT_WIRE, MAX_LINE_BYTES, ChatWire, Greeting, Refused

RECV_BYTES = MAX_LINE_BYTES
JOIN_RECV_BYTES = 1 << 16  # below malloc's mmap threshold: joining does many small reads
SEND_BYTES = 1 << 18
READ = select.EPOLLIN
WRITE = select.EPOLLOUT
# Errors and hang-ups are reported as readable: the recv that follows sees them.
READABLE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
# A non-blocking TLS socket says "not now" with these instead of BlockingIOError.
NOT_NOW = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class SwarmError(RuntimeError):
    """The server refused or dropped the swarm's clients while they were joining."""


class Client:
    """One simulated chat client: a non-blocking socket plus what it has read and must send."""

    __slots__ = (
        "index",
        "name",
        "sock",
        "state",
        "joining",
        "chunks",
        "pending",
        "wbuf",
        "woff",
        "events",
        "wire",
    )

    def __init__(
        self, index: int, name: str, sock: socket.socket, wire: ChatWire = CHAT_WIRE
    ) -> None:
        self.index = index
        self.name = name
        self.sock = sock
        self.wire = wire
        self.state = "connecting"
        # While joining: what reads the server's first lines (chat: the client handshake).
        self.joining: Greeting | None = None
        self.chunks: list[tuple[int, memoryview]] = []  # (received ns, bytes in the arena)
        self.pending = 0
        self.wbuf = bytearray()
        self.woff = 0
        self.events = WRITE

    def connected(self, tls: ssl.SSLContext | None, hello: bytes) -> None:
        """Connected: check the connect worked; then the TLS handshake (if any) and the name,
        after `hello` (the password line, if any)."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise SwarmError(f"{self.name}: connect failed: {errno.errorcode.get(err, err)}")
        if tls is None:
            self.send_name(hello)
            return
        host = self.sock.getpeername()[0]
        self.sock = tls.wrap_socket(self.sock, server_hostname=host, do_handshake_on_connect=False)
        self.state = "handshaking"
        self.shake(hello)

    def shake(self, hello: bytes) -> None:
        """One step of the TLS handshake; the name once it is done."""
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.events = READ
            return
        except ssl.SSLWantWriteError:
            self.events = WRITE
            return
        except ssl.SSLError as exc:
            raise SwarmError(f"{self.name}: TLS handshake failed: {exc}") from None
        self.send_name(hello)

    def send_name(self, hello: bytes) -> None:
        """Send the name (after `hello`; the wire's join for a peer), start reading the greeting."""
        self.sock.send(hello + self.wire.join_bytes(self.name))
        self.state = "joining"
        self.joining = self.wire.greeting()
        self.events = READ

    def greeting_received(self, data: bytes) -> bool:
        """Feed the server's first lines to the handshake; True once the client is welcomed."""
        if not data:
            raise SwarmError(f"{self.name}: closed while joining: {bytes(self.wbuf)!r}")
        self.wbuf += data  # nothing to send yet, so the write buffer holds the greeting
        assert self.joining is not None
        try:
            welcomed = self.joining.welcomed(data)
        except Refused:
            raise SwarmError(f"{self.name}: refused: {bytes(self.wbuf)!r}") from None
        if welcomed:
            # What followed the welcome in this read (join notices) is not kept, as settle()
            # would discard it anyway.
            self.state = "joined"
            self.joining = None
            self.wbuf.clear()
        return welcomed

    def chat_lines_read(self) -> int:
        """Newlines read this window that count towards deliveries (chat: not notices')."""
        return self.wire.counted_newlines(b"".join(chunk for _, chunk in self.chunks))


class Poller:
    """`select.epoll` keyed by client: what `selectors` does, minus its per-event bookkeeping.

    The swarm's loop pays this cost once per read, and a read can carry a single line. Each
    client's `events` says what it wants; `apply` makes epoll agree.
    """

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.clients: dict[int, Client] = {}

    def register(self, client: Client, events: int) -> None:
        fd = client.sock.fileno()
        self.epoll.register(fd, events)
        self.clients[fd] = client

    def modify(self, client: Client, events: int) -> None:
        self.epoll.modify(client.sock.fileno(), events)

    def unregister(self, client: Client) -> None:
        fd = client.sock.fileno()
        self.epoll.unregister(fd)
        del self.clients[fd]

    def select(self, timeout_s: float) -> list[tuple[Client, int]]:
        clients = self.clients
        return [(clients[fd], mask) for fd, mask in self.epoll.poll(timeout_s)]

    def apply(self, client: Client) -> None:
        """Register, modify or unregister the client so epoll watches what `client.events` says."""
        registered = client.sock.fileno() in self.clients
        if client.events and registered:
            self.modify(client, client.events)
        elif client.events:
            self.register(client, client.events)
        elif registered:
            self.unregister(client)

    def flush(self, client: Client) -> None:
        """Send what the client's write buffer holds; watch for writability while some is left."""
        buf = client.wbuf
        with memoryview(buf) as view:
            while client.woff < len(buf):
                try:
                    sent = client.sock.send(view[client.woff : client.woff + SEND_BYTES])
                except NOT_NOW:
                    break
                except OSError:
                    client.woff = len(buf)
                    break
                client.woff += sent
        if client.woff >= len(buf):
            buf.clear()
            client.woff = 0
            wanted = client.events & ~WRITE
        else:
            wanted = client.events | WRITE
        if wanted != client.events and client.state != "closed":
            client.events = wanted
            self.apply(client)

    def recv_or_close(self, client: Client) -> bytes | None:
        """What one recv gives: None when nothing is there yet, b"" (and closed) at EOF."""
        try:
            data = client.sock.recv(JOIN_RECV_BYTES)
        except NOT_NOW:
            return None
        except OSError:
            data = b""
        if not data:
            self.close_client(client)
        return data

    def close_client(self, client: Client) -> None:
        """Stop watching the client and close its socket (once)."""
        if client.state != "closed":
            if client.events:
                self.unregister(client)
                client.events = 0
            client.sock.close()
            client.state = "closed"

    def close(self) -> None:
        self.epoll.close()


def more_records(sock: socket.socket, view: memoryview, size: int) -> int:
    """A TLS socket's read gives one record (16 KiB at most): add the records that have arrived
    behind it, so a TLS client's read is one chunk as a plain one's is."""
    try:
        while size < len(view):
            got = sock.recv_into(view[size:])
            if not got:
                break  # the end: the next read sees it
            size += got
    except OSError:  # nothing more now (or gone: the next read sees that too)
        pass
    return size
