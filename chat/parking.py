"""Where idle readers wait: one selector for every quiet connection, instead of a thread in recv.

A thread blocked in `recv` is woken by the kernel the moment its peer goes away. When ten
thousand clients vanish at once (a NAT box dies, a load generator is killed), ten thousand
threads wake together and queue for the GIL; CPython hands it over one thread at a time, at about
a fifth of a millisecond each here, and every waiter also wakes once per switch interval to ask
for it. For seconds nobody else gets a turn: messages between the clients still there stall, and
the main thread cannot even run the SIGTERM handler.

So a session thread reads with a receive timeout (`SO_RCVTIMEO`, no extra system call per read).
When its client has been quiet for `PARK_AFTER_S`, the thread parks: its socket goes into this
module's selector and the thread waits on a lock of its own, which costs nothing while it waits.
One reaper thread watches the selector:

- a parked client sends something: its thread is released at once and reads it itself;
- a parked client is gone (EOF, reset, or the server shut its socket to cut it): the reaper takes
  it out of the room at once (`on_seen_gone`: nobody sends to it any more), runs the rest of its
  ending (leave notice, outbox, counters) in short slices with rests between them, so the
  writers keep the GIL often enough to deliver, and lets its thread out later, while fewer than
  `EXITING_AT_ONCE` let-out threads are alive: a mass disconnect never has more than a handful of
  threads waiting for the GIL.

The session thread still owns its connection whenever it runs; the reaper touches a session only
while its thread is parked, and hands it back before the thread runs again.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

log = logging.getLogger("chat.server")

PARK_AFTER_S: Final = 0.5  # a reader quiet this long waits in the reaper's selector
EXITING_AT_ONCE: Final = 8  # threads of ended sessions let out together, at most
ENDING_SLICE_S: Final = 0.002  # the reaper ends sessions this long, then rests as long
PACE_S: Final = 0.002  # how often the reaper looks again while threads wait to be let out


def read_with_timeout(sock: socket.socket, seconds: float = PARK_AFTER_S) -> None:
    """Make a blocking `sock.recv` raise BlockingIOError after `seconds` without data.

    SO_RCVTIMEO keeps the socket in blocking mode, so a read stays one system call; a Python
    socket timeout would poll before every recv."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)


class _Spot:
    """One parked thread: what it waits on, and what the reaper decided."""

    __slots__ = ("sock", "on_gone", "on_seen_gone", "wake", "resume", "thread")

    def __init__(
        self, sock: socket.socket, on_gone: Callable[[], None], on_seen_gone: Callable[[], object]
    ) -> None:
        self.sock = sock
        self.on_gone = on_gone
        self.on_seen_gone = on_seen_gone
        self.wake = threading.Lock()
        self.wake.acquire()  # the parked thread blocks acquiring it again; the reaper releases
        self.resume = True  # False: the peer is gone and on_gone has run
        self.thread = threading.current_thread()


class Parking:
    """The reaper and its selector. `park()` from session threads; `close()` once, at shutdown."""

    def __init__(self, exiting_at_once: int = EXITING_AT_ONCE) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()  # guards the selector's registrations and `_closed`
        self._closed = False
        self._gone: deque[_Spot] = deque()  # parked sessions whose peers are gone, to end
        self._out: deque[_Spot] = deque()  # threads to let out, a few at a time
        self._exiting_at_once = exiting_at_once
        self._leaving: list[threading.Thread] = []  # let out, not yet ended
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._thread.start()

    def park(
        self,
        sock: socket.socket,
        on_gone: Callable[[], None],
        on_seen_gone: Callable[[], object],
    ) -> bool:
        """Wait until `sock` has something to read (True) or its peer is gone (False: `on_gone`
        has run, in the reaper's thread, and the caller's thread should end now).

        `on_seen_gone` runs the moment the reaper sees the peer gone, before the endings queued
        ahead of this one: the cheap part that stops others sending to it (leaving the room)."""
        spot = _Spot(sock, on_gone, on_seen_gone)
        with self._lock:
            if self._closed:
                return True
            self._selector.register(sock, selectors.EVENT_READ, spot)
        spot.wake.acquire()
        return spot.resume

    def close(self) -> None:
        """No more parking. The reaper lets every parked thread back to its own recv, a few at
        a time, in the background (their sockets are shut down by then: they end as usual), and
        then ends; nobody waits for it, so a stopping process is not held up."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # --- the reaper's thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = 0 if self._gone else PACE_S if self._out else None
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    self._wake_r.recv(64)
                else:
                    self._woken(key.data)
            self._end_some()
            if self._closed:
                self._unpark_all()
            self._let_out()
            if self._closed and not self._out and not self._gone:
                break
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _woken(self, spot: _Spot) -> None:
        """Data: the thread goes back to reading at once. Gone: its ending waits its turn."""
        with self._lock:
            self._selector.unregister(spot.sock)
        if _has_data(spot.sock):
            spot.wake.release()
        else:
            spot.resume = False
            _keep_reaping(spot.on_seen_gone)
            self._gone.append(spot)

    def _end_some(self) -> None:
        """End sessions whose peers are gone for one short slice, then rest as long. Ending is
        pure Python: a thread that never blocks keeps the GIL from every thread doing I/O (the
        writers) but once a switch interval, so the reaper leaves the GIL alone half the time;
        and a message from a parked client never waits behind thousands of endings."""
        if not self._gone:
            return
        until = time.monotonic() + ENDING_SLICE_S
        while self._gone and time.monotonic() < until:
            spot = self._gone.popleft()
            _keep_reaping(spot.on_gone)
            self._out.append(spot)
        time.sleep(ENDING_SLICE_S)

    def _unpark_all(self) -> None:
        with self._lock:
            spots = [key.data for key in self._selector.get_map().values() if key.data]
            for spot in spots:
                self._selector.unregister(spot.sock)
        self._out.extend(spots)

    def _let_out(self) -> None:
        """Let threads out while fewer than `exiting_at_once` of those already let out are still
        alive: a thread is not gone until CPython has torn it down, which takes the GIL too."""
        leaving = self._leaving = [thread for thread in self._leaving if thread.is_alive()]
        while self._out and len(leaving) < self._exiting_at_once:
            spot = self._out.popleft()
            spot.wake.release()
            leaving.append(spot.thread)


def _keep_reaping(callback: Callable[[], object]) -> None:
    """Run one session's ending step; a bug in it is logged, and the reaper goes on."""
    try:
        callback()
    except Exception:
        log.exception("error ending a parked session")


def _has_data(sock: socket.socket) -> bool:
    """Is there something to read (True), or is the peer gone: EOF, reset, shut down (False)?"""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:  # woken with nothing after all: let the thread read (and park) again
        return True
    except OSError:
        return False
