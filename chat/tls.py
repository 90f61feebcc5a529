"""TLS: a server connection's TLS as a socket-shaped object the session and writer share, and
the contexts both sides use.

`ssl.SSLSocket` is one OpenSSL object that must not be read by one thread while another writes
to it, and it takes no send flags. The server reads each socket in its session thread and writes
it from a writer loop with MSG_DONTWAIT, so here OpenSSL only ever sees memory (`wrap_bio` with
two `MemoryBIO`s) and the raw socket does the I/O exactly as for plain clients. One short lock
guards the in-memory TLS state and the ciphertext not yet sent; it is never held across a call
that can block (sends are non-blocking, the blocking `recv` happens outside it). Whoever produces
ciphertext appends it under the lock and whoever sends takes it from the front under the lock,
so records reach the wire in the order OpenSSL made them.

`send` counts as sent only the plaintext of records the kernel took whole: ciphertext still
waiting here counts as refused, so the slow-consumer rules judge a TLS client exactly as a plain
one. Plain connections never see this module: their outbox holds the socket itself.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections import deque
from typing import Final

from chat.outbox import SEND_FLAGS

RECORD_BYTES: Final = 16_384  # TLS's largest record: the unit in which sent plaintext is counted
SEND_CHUNK_BYTES: Final = 256 * 1024  # plaintext encrypted per send at most
HANDSHAKE_RECV_BYTES: Final = 16_384
TLS_HANDSHAKE_RECORD: Final = 0x16  # the first byte a TLS client sends


class HandshakeFailed(Exception):
    """The TLS handshake did not complete; str() is the reason, for one log line."""


class NotTls(HandshakeFailed):
    """The client's first bytes are not a TLS handshake: it speaks plain text to the TLS port."""


def server_context(cert_file: str, key_file: str | None) -> ssl.SSLContext:
    """The standard library's server defaults, TLS 1.2 or newer, no renegotiation. Raises
    OSError or ssl.SSLError when the files cannot be read or do not match."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """What the clients here verify a server with: the system's trusted CAs, or `ca_file`'s.
    Raises OSError or ssl.SSLError when the file cannot be used."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class TlsStream:
    """One server-side TLS connection over a raw socket: `recv` for the session thread, `send`
    (non-blocking, MSG_DONTWAIT implied) and `sendall` for whoever delivers, `shutdown`, `close`
    and `fileno` as the socket's."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._lock = threading.Lock()
        self._ready = False  # the handshake completed: application data may flow
        self._closed = False  # the client said close_notify
        self._pending = memoryview(b"")  # ciphertext the kernel has not taken yet
        self._made = 0  # ciphertext bytes produced so far, and sent so far
        self._sent = 0
        self._records: deque[tuple[int, int]] = deque()  # (end in ciphertext, plaintext bytes)
        self._ahead = 0  # plaintext encrypted but not yet reported sent to the caller
        self._delivered = 0  # of that, plaintext whose records the kernel took whole

    def fileno(self) -> int:
        return self.sock.fileno()

    # --- the handshake, in the session thread --------------------------------------------------

    def handshake(self) -> None:
        """Complete the server side of the handshake, blocking; HandshakeFailed if it cannot.
        Nothing else uses the socket meanwhile but a cut, which shuts it down and ends this."""
        first = True
        while True:
            try:
                self._tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as exc:
                with contextlib.suppress(OSError):  # the alert that tells the client why
                    self.sock.send(self._outgoing.read(), SEND_FLAGS)
                raise HandshakeFailed(str(exc.reason or exc).lower().replace("_", " ")) from None
            self.sock.sendall(self._outgoing.read())
            if done:
                self._ready = True
                return
            data = self._handshake_bytes()
            if not data:
                raise HandshakeFailed("closed by the client")
            if first and data[0] != TLS_HANDSHAKE_RECORD:
                raise NotTls("plain text, not TLS")
            first = False
            self._incoming.write(data)

    def _handshake_bytes(self) -> bytes:
        """The client's next handshake bytes, however long they take: the server's handshake
        deadline shuts the socket down, which ends this."""
        while True:
            try:
                return self.sock.recv(HANDSHAKE_RECV_BYTES)
            except BlockingIOError:  # the receive timeout quiet readers park by (parking.py)
                continue

    # --- reading, in the session thread --------------------------------------------------------

    def recv(self, size: int) -> bytes:
        """Plaintext, blocking; b"" once the client closed (close_notify or TCP). The raw
        socket's BlockingIOError (its receive timeout) passes through, nothing consumed."""
        while True:
            with self._lock:
                data = self._decrypted(size)
            if data is not None:
                return data
            raw = self.sock.recv(size)
            if not raw:
                return b""
            with self._lock:
                self._incoming.write(raw)

    def _decrypted(self, size: int) -> bytes | None:
        """Up to `size` bytes of plaintext from what has arrived (under the lock); b"" after
        close_notify; None when a whole record is yet to come."""
        if self._closed:
            return b""
        if not self._incoming.pending and not self._tls.pending():
            return None  # nothing to decrypt: no exception to pay for
        pieces: list[bytes] = []
        total = 0
        try:
            while total < size:
                piece = self._tls.read(size - total)
                if not piece:
                    break
                pieces.append(piece)
                total += len(piece)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._closed = True
        finally:
            if self._outgoing.pending:  # a key update's answer, an alert: behind what is queued
                self._produced()
                self._drain()
        if pieces:
            return b"".join(pieces)
        return b"" if self._closed else None

    # --- writing, in a writer loop (or an inline sender) ---------------------------------------

    def send(self, data: bytes | memoryview, flags: int = 0) -> int:
        """Encrypt and send without blocking; how many bytes of `data` went out in records the
        kernel took whole. What it returns short of len(data) comes back as the next call's
        `data` (the unsent tail), and any ciphertext already made for it goes first."""
        with self._lock:
            if not self._ready:  # a cut before the handshake ended: nothing can be said
                return len(data)
            if self._pending:
                self._drain()
            if not self._pending:
                if not self._ahead and len(data) <= RECORD_BYTES:
                    return self._send_record(data)  # the common case: one record, no copies
                fresh = memoryview(data)[self._ahead : self._ahead + SEND_CHUNK_BYTES]
                if fresh:
                    self._encrypt(fresh)
                    self._drain()
            reported, self._delivered = self._delivered, 0
            self._ahead -= reported
            return reported

    def _send_record(self, data: bytes | memoryview) -> int:
        """`data` as one record, sent at once (under the lock, nothing pending): len(data) if
        the kernel took it whole, else 0 and the rest of the record pending."""
        self._tls.write(data)
        record = self._outgoing.read()
        try:
            sent = self.sock.send(record, SEND_FLAGS)
        except BlockingIOError:
            sent = 0
        self._made += len(record)
        self._sent += sent
        if sent == len(record):
            return len(data)
        self._pending = memoryview(record)[sent:]
        self._records.append((self._made, len(data)))
        self._ahead = len(data)
        return 0

    def sendall(self, data: bytes) -> None:
        """Blocking send for the inline delivery: waits for room outside the lock."""
        view = memoryview(data)
        while view:
            sent = self.send(view)
            view = view[sent:]
            if view or self._pending:
                _wait_writable(self.sock)
        while self._pending:  # the last record's tail
            with self._lock:
                self._drain()
            if self._pending:
                _wait_writable(self.sock)

    def forget_unsent(self) -> int:
        """The caller drops the tail it was told is unsent (a cut client's queue). Whatever of
        it is already encrypted still goes first (a record cannot be taken back): returns how
        many of its bytes those are, and stops counting them against the caller's next send."""
        with self._lock:
            ahead, self._ahead, self._delivered = self._ahead, 0, 0
            self._records.clear()
            return ahead

    def shutdown(self, how: int) -> None:
        """Say close_notify when the write side closes (best effort), then shut the socket."""
        if how != socket.SHUT_RD and self._ready:
            with self._lock, contextlib.suppress(ssl.SSLError, OSError):
                with contextlib.suppress(ssl.SSLWantReadError):
                    self._tls.unwrap()
                self._produced()
                self._drain()
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()

    # --- under the lock ------------------------------------------------------------------------

    def _encrypt(self, plaintext: memoryview) -> None:
        """Encrypt record by record, noting where each ends, so sent plaintext is exact."""
        for start in range(0, len(plaintext), RECORD_BYTES):
            piece = plaintext[start : start + RECORD_BYTES]
            self._tls.write(piece)
            self._records.append((self._made + self._outgoing.pending, len(piece)))
        self._ahead += len(plaintext)
        self._produced()

    def _produced(self) -> None:
        """Move what OpenSSL wrote to the outgoing BIO behind the ciphertext still pending."""
        made = self._outgoing.read()
        if made:
            self._made += len(made)
            self._pending = memoryview(bytes(self._pending) + made if self._pending else made)

    def _drain(self) -> None:
        """Send pending ciphertext without blocking; count the records the kernel took whole."""
        if not self._pending:
            return
        try:
            sent = self.sock.send(self._pending, SEND_FLAGS)
        except BlockingIOError:
            return
        self._pending = self._pending[sent:]
        self._sent += sent
        records = self._records
        while records and records[0][0] <= self._sent:
            self._delivered += records.popleft()[1]


def _wait_writable(sock: socket.socket) -> None:
    """Block until `sock` can take more (poll: select() cannot watch a descriptor above 1023,
    and a server with thousands of clients has many)."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    poller.poll()


def committed_tail(sock: object, leftover: bytes | memoryview | None) -> bytes | memoryview | None:
    """A cut client's unsent tail, less what its TLS stream already encrypted of it (that reaches
    the client whatever happens next): where the line in flight really stops. Plain sockets'
    tails are returned as they are."""
    if not isinstance(sock, TlsStream) or leftover is None:
        return leftover
    return memoryview(leftover)[sock.forget_unsent() :]
