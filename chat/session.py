"""One connection's life, in its own thread: greeting, handshake, chat loop, commands, the end.

The handler half of socketserver's split: `ChatServer` (chat/server.py) accepts a connection,
makes a `Session` and runs `Session.run` in a new thread. Everything that happens to one client
is here; what it may cost is paced by its flood budget (chat/flood.py), and how bytes reach it is
chat/delivery.py's business.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from chat import gate, protocol
from chat.bus_names import BusDown
from chat.delivery import Outbox
from chat.flood import (
    COMMAND_COST_BYTES,
    LINE_COST_BYTES,
    LINE_IN_COST_BYTES,
    SLICE_LINES,
    SLICE_S,
    FloodBudget,
    delivery_cost,
)
from chat.outbox import Stream
from chat.protocol import Command, Leave, LineTooLong, Message, Refused
from chat.tls import TlsStream

if TYPE_CHECKING:
    from chat.server import ChatServer

log = logging.getLogger("chat.server")

RECV_BYTES: Final = 65_536
THROTTLE_CHECK_S: Final = 0.25  # a throttled reader looks up this often to see whether it was cut
WELCOME_NAMES: Final = 20
WHO_LINE_BYTES: Final = 1000  # a /who line, "* " included, newline not
COUNTERS: Final = ("messages_in", "bytes_in", "deliveries_out", "throttled", "rested")


class Session:
    """One client: its socket, name, outbox, flood budget and counters, and its thread's work.

    Counters and `cost` are written by the session's own thread only; `name` by the registry
    under its lock; `reason` by whoever cuts the client, under the server's lock.
    """

    def __init__(
        self,
        server: ChatServer,
        sock: socket.socket,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        config = server.config
        self.server = server
        # Plain clients' outbox and reader use the socket itself; TLS is chosen here, once.
        self.sock: Stream = sock if tls is None else TlsStream(sock, tls)
        self.raw = sock  # what the reaper watches while this thread is parked
        self.authenticated = server.password is None
        self.host = host
        self.peer = f"{host}:{port}"
        self.name: str | None = None
        self.box: Outbox = server.delivery.outbox(self.sock, self._overflowed)
        self.decoder = protocol.LineDecoder(config.max_line)
        self.budget = FloodBudget(config.flood_rate, config.flood_burst, time.monotonic())
        self.reason: str | None = None  # why the server disconnected it, if it did
        self.cost = 0  # what this client's lines made the server send, not yet charged
        self.messages_in = 0
        self.bytes_in = 0
        self.deliveries_out = 0
        self.throttled = 0  # times its reader stopped reading because it was over budget
        self.rested = 0  # times its reader rested after working SLICE_S on its lines (flood.py)
        self.working_since = 0.0  # when its thread last rested or waited to read (perf_counter)
        self.cpu_since: float | None = None  # its CPU time once working SLICE_S (thread_time)
        self.ended = False  # _finish has run
        self.left_room: bool | None = None  # whether _leave_room took a name off the registry

    def _overflowed(self) -> None:
        self.server.slow_consumer(self)

    # --- the thread ----------------------------------------------------------------------------

    def run(self) -> None:
        """The session's thread: greet, handshake, chat, and always finish."""
        try:
            if isinstance(self.sock, TlsStream) and not gate.secured(self, self.sock):
                return
            self.notice("hello" if self.authenticated else "hello_password")
            if self._handshake():
                self._chat()
        except OSError:  # reset, broken pipe, shut down: the client is gone, nothing to report
            pass
        except Exception:  # a bug in the server: log it, keep serving everyone else
            log.exception("error serving %s", self.peer)
        finally:
            self._finish()

    def _handshake(self) -> bool:
        """Read lines until a name is accepted (True) or the client leaves or is cut (False).
        The server's accept loop cuts it when the handshake deadline passes."""
        while True:
            lines = self._read()
            if lines is None:
                return False
            for index, line in enumerate(lines):
                password = gate.password_verdict(self, line)
                if password is not None:
                    if password:
                        continue
                    return False
                verdict = self._try_name(line)
                if verdict is None:
                    continue
                if verdict:
                    return self._handle_lines(lines[index + 1 :]) and self._pay()
                return False
            if not self._pay():
                return False

    def _chat(self) -> None:
        stopping = self.server.stopping
        self.working_since = time.perf_counter()
        while (lines := self._read()) is not None:
            if stopping.is_set():  # shutting down: what it sends now would follow the goodbye
                return
            if not (self._handle_lines(lines) and self._pay()):
                return
            if self._busy():
                self._rest()

    def _read(self) -> list[bytes | LineTooLong] | None:
        """The lines of one read; None when the client closed (or was shut down)."""
        asked = time.perf_counter()
        while True:
            try:
                data = self.sock.recv(RECV_BYTES)
                break
            except BlockingIOError:  # quiet a while: wait in the reaper's selector (parking.py)
                if not self.server.parking.park(self.raw, self._finish, self._leave_room):
                    return None
        if not data:
            return None
        now = time.perf_counter()
        if now - asked > SLICE_S:  # it waited: a new stretch of work begins
            self.working_since, self.cpu_since = now, None
        self.bytes_in += len(data)
        lines = self.decoder.feed(data)
        self.cost += LINE_IN_COST_BYTES * len(lines)
        return lines

    def _finish(self) -> None:
        """The end, once: by this thread, or by the reaper while this thread is parked."""
        if self.ended:
            return
        self.ended = True
        server = self.server
        if self._leave_room():
            if server.bus is not None and self.name is not None:
                server.bus.release(self.name)
            if self.reason == "slow consumer":
                log.warning("%s", server.texts("slow_consumer_left", name=self.name))
                self.announce("slow_consumer_left", name=self.name)
            else:
                if log.isEnabledFor(logging.INFO):  # a mass disconnect: 10,000 of these
                    log.info("%s", server.texts("left", name=self.name))
                self.announce("left", name=self.name)
        server.delivery.retire(self.box)
        server.finished(self)

    def _leave_room(self) -> bool:
        """Off the registry, once (nobody sends to it any more); whether it had a name there."""
        if self.left_room is None:
            self.left_room = self.server.registry.remove(self)
        return self.left_room

    # --- the handshake -------------------------------------------------------------------------

    def _try_name(self, line: bytes | LineTooLong) -> bool | None:
        """True: name accepted; False: the client asked to leave; None: refused, keep waiting."""
        text = self._decode(line)
        if text is None:
            return None
        name = text.strip()
        if not name:
            return None
        if name in protocol.LEAVE_WORDS:
            return False
        self.cost += COMMAND_COST_BYTES
        if not self._name_allowed(name):
            return None
        name = protocol.normalize_name(name)
        server = self.server
        if not server.registry.add(self, name):
            self.error("name_taken", name=name)
            return None
        welcome: list[str] = []  # with --bus: names online on any node, for the welcome
        refusal = None if server.bus is None else server.bus.claim(name, welcome)
        if refusal is not None:  # another server's client has it, or the bus is down
            server.registry.remove(self)
            self.error(refusal, name=name)
            return None
        if not server.named(self):  # its deadline passed, or it was pushed out, meanwhile
            server.registry.remove(self)
            if server.bus is not None:
                server.bus.release(name)
            return False
        self._joined(welcome)
        return True

    def _name_allowed(self, name: str) -> bool:
        problem = protocol.name_problem(name)
        if problem is None:
            return True
        key = "name_" + problem.replace("-", "_")  # the texts catalogue has one per code
        self.error(key, name=name, limit=protocol.MAX_NAME_CHARS)
        return False

    def _joined(self, cluster_names: list[str]) -> None:
        texts = self.server.texts
        count, names = self.server.registry.first(WELCOME_NAMES)
        if cluster_names:  # with --bus: the whole cluster's count, and names from any node
            count, names = max(count, self.server.room_size()), cluster_names[:WELCOME_NAMES]
        if count > len(names):
            names.append(texts("more", n=count - len(names)))
        # The others first: once a newcomer has its welcome, everyone online was told it came.
        self.announce("joined", name=self.name)
        if log.isEnabledFor(logging.INFO):  # --quiet: not even formatted
            log.info("%s", texts("joined", name=self.name))
        self.notice("welcome", name=self.name, count=count, names=", ".join(names))
        limit = self.server.config.notice_limit
        if count > limit:  # so the newcomer does not take the silence for an empty room
            self.notice("notices_off", limit=limit)

    # --- the chat loop -------------------------------------------------------------------------

    def _handle_lines(self, lines: Sequence[bytes | LineTooLong]) -> bool:
        """Act on a read's worth of lines; runs of messages go out as one batch, cut short when
        the sender runs out of flood budget (it then waits). False: leave, or server stopping."""
        batch: list[str] = []
        fanout = max(1, len(self.server.registry) - 1)
        # Per line only arithmetic: what a chat line costs beyond its text, and what may still be
        # spent before the budget (or the writers' lag) says wait; both are looked up again only
        # after a wait.
        line_cost = fanout * (len(self.name or "") + len(": ") + LINE_COST_BYTES)
        allowance = self._allowance()
        for line in lines:
            text = self._decode(line)
            if text is None:
                continue
            parsed = protocol.parse_client_line(text)
            if isinstance(parsed, Message):
                batch.append(parsed.text)
                allowance -= line_cost + fanout * len(parsed.text)
                if allowance < 0:
                    self._broadcast(batch)
                    batch = []
                    if not self._pay():
                        return False
                    allowance = self._allowance()
                elif len(batch) % SLICE_LINES == 0 and self._busy():
                    self._broadcast(batch)
                    batch = []
                    self._rest()
                continue
            if parsed is None:
                continue
            self._broadcast(batch)
            batch = []
            if isinstance(parsed, Leave):
                self.notice("bye", name=self.name)
                return False
            if isinstance(parsed, Refused):
                self.error("bad_text")
            else:
                self._command(parsed)
            allowance = self._allowance()
            if allowance < 0 and not self._pay():
                return False
        self._broadcast(batch)
        return True

    def _busy(self) -> bool:
        """Has this thread worked on the client's lines, without waiting for more, for SLICE_S
        and then SLICE_S of its own CPU time? The clock a thread reads its CPU time from costs a
        system call, so it is read only once a stretch has lasted SLICE_S. Never with flood
        control off (--flood-rate 0)."""
        if self.budget.rate <= 0:
            return False
        if self.cpu_since is None:
            if time.perf_counter() - self.working_since > SLICE_S:
                self.cpu_since = time.thread_time()
            return False
        return time.thread_time() - self.cpu_since > SLICE_S

    def _rest(self) -> None:
        """Once `_busy`: sleep as long as the stretch lasted, so that the other threads get the
        GIL (flood.py). Nothing is held meanwhile; what the client sends waits in the kernel."""
        self.rested += 1
        time.sleep(time.perf_counter() - self.working_since)
        self.working_since, self.cpu_since = time.perf_counter(), None

    def _allowance(self) -> float:
        """What this client may still cause before it must wait: its budget left, less what it
        caused and has not paid for; nothing while the server's writers lag."""
        if self.server.delivery.congested():
            return -1.0
        return self.budget.available(time.monotonic()) - self.cost

    def _decode(self, line: bytes | LineTooLong) -> str | None:
        if isinstance(line, LineTooLong):
            self.error("line_too_long", limit=self.server.config.max_line)
            return None
        try:
            return line.decode(protocol.ENCODING)
        except UnicodeDecodeError:
            self.error("bad_utf8")
            return None

    def _broadcast(self, texts: list[str]) -> None:
        if not texts or self.name is None:
            return
        self.messages_in += len(texts)
        if log.isEnabledFor(logging.INFO):
            for text in texts:
                log.info("%s", protocol.chat_line(self.name, protocol.for_log(text)))
        lines = [protocol.encode_line(protocol.chat_line(self.name, text)) for text in texts]
        server = self.server
        recipients = server.delivery.broadcast(self.box, server.registry.boxes, lines)
        self.deliveries_out += recipients * len(texts)
        bus = server.bus
        if bus is not None:  # the default server pays this one test per read, no more
            bus.publish("chat", lines[0] if len(lines) == 1 else b"".join(lines), len(lines))
            recipients += max(0, bus.named - len(server.registry))  # the budget counts them all
        self.cost += delivery_cost(sum(map(len, lines)), recipients, len(lines))

    # --- flood budget --------------------------------------------------------------------------

    def _pay(self) -> bool:
        """Charge what the client's lines made the server send; over budget, or while the
        server's writers are far behind, stop reading until that has passed, so TCP pushes back
        on the sender and nothing piles up in the server. False: the server is stopping."""
        self.budget.charge(self.cost, time.monotonic())
        self.cost = 0
        wait_s = self.budget.wait_s(time.monotonic())
        if wait_s > 0:
            self.throttled += 1
        stopping, delivery = self.server.stopping, self.server.delivery
        while wait_s > 0 and self.reason is None:
            if stopping.wait(min(wait_s, THROTTLE_CHECK_S)):
                return False
            wait_s = self.budget.wait_s(time.monotonic())
        while delivery.congested() and self.reason is None:
            delivery.wait_for_writers(THROTTLE_CHECK_S)
            if stopping.is_set():
                return False
        return True

    # --- commands ------------------------------------------------------------------------------

    def _command(self, command: Command) -> None:
        self.cost += COMMAND_COST_BYTES
        handler = COMMANDS.get(command.name)
        if handler is None:
            self.error("unknown_command", command=command.name)
        else:
            handler(self, command.arg)

    def _who(self, arg: str) -> None:
        bus = self.server.bus
        everyone = None if bus is None else bus.names()
        names = sorted(
            self.server.registry.names() if everyone is None else everyone, key=str.casefold
        )
        first = self.server.texts("who", count=len(names), names="")
        width = WHO_LINE_BYTES - len(protocol.notice_line("").encode())
        for chunk in wrap_names(names, width, first):
            self.send(protocol.notice_line(chunk))
        if bus is not None and everyone is None:
            self.notice("who_local")

    def _msg(self, arg: str) -> None:
        target_name, _, text = arg.partition(" ")
        if not target_name or not text.strip():
            self.error("usage_msg")
            return
        target = self.server.registry.get(target_name)
        if target is None and self.server.bus is not None and self.name is not None:
            self._msg_remote(target_name, text)
            return
        if target is None or self.name is None:
            self.error("no_such_user", name=target_name)
            return
        self.messages_in += 1
        self.deliveries_out += 1
        log.info("%s -> %s: a private message", self.name, target.name)
        log.debug("%s -> %s: %s", self.name, target.name, protocol.for_log(text))
        target.send(protocol.private_line(self.name, text), payer=self)

    def _msg_remote(self, target_name: str, text: str) -> None:
        """/msg to someone on another node: one `private` event addressed to its name key."""
        bus = self.server.bus
        assert bus is not None and self.name is not None
        try:
            holder = bus.holder(target_name)
        except BusDown:
            self.error("msg_bus_down", name=target_name)
            return
        if holder is None or holder.node == bus.node:  # ours: just left, or not joined yet
            self.error("no_such_user", name=target_name)
            return
        self.messages_in += 1
        log.info("%s -> %s: a private message (via the bus)", self.name, holder.display)
        log.debug("%s -> %s: %s", self.name, holder.display, protocol.for_log(text))
        data = protocol.encode_line(protocol.private_line(self.name, text))
        bus.publish("private", data, 0, to=protocol.name_key(holder.display))

    def _nick(self, arg: str) -> None:
        new = arg.strip()
        if not new:
            self.error("usage_nick")
            return
        if not self._name_allowed(new):
            return
        new, old = protocol.normalize_name(new), self.name
        if new == old:  # nothing changes: nobody needs to hear about it
            self.notice("you_are", name=new)
            return
        if not self.server.registry.rename(self, new):
            self.error("name_taken", name=new)
            return
        bus = self.server.bus
        refusal = None if bus is None or old is None else bus.rename(old, new)
        if refusal is not None and old is not None:
            self.error(refusal, name=new)
            if not self.server.registry.rename(self, old):  # someone here took it meanwhile
                self.server.cut_for_bus(self, self.server.texts("name_lost"))
            return
        log.info("%s", self.server.texts("renamed", old=old, new=new))
        self.notice("you_are", name=new)
        self.announce("renamed", old=old, new=new)

    def _help(self, arg: str) -> None:
        for line in self.server.texts.lines("help", limit=self.server.config.notice_limit):
            self.send(protocol.notice_line(line))

    def _stats(self, arg: str) -> None:
        self.send(protocol.notice_line(protocol.format_stats(self.server.stats())))

    # --- sending -------------------------------------------------------------------------------

    def send(self, line: str, payer: Session | None = None) -> None:
        """One line to this client, charged to whoever caused it (this client by default)."""
        data = protocol.encode_line(line)
        (payer or self).cost += delivery_cost(len(data), 1)
        self.server.delivery.send(self.box, data)

    def notice(self, key: str, **fields: object) -> None:
        self.send(protocol.notice_line(self.server.texts(key, **fields)))

    def error(self, key: str, **fields: object) -> None:
        self.send(protocol.error_line(self.server.texts(key, **fields)))

    def announce(self, key: str, **fields: object) -> None:
        """A join/leave/rename notice to everyone else, unless the room is past the notice limit
        or the server is stopping (then everyone is leaving)."""
        server = self.server
        if server.stopping.is_set() or server.room_size() > server.config.notice_limit:
            return
        line = protocol.encode_line(protocol.notice_line(server.texts(key, **fields)))
        recipients = server.delivery.broadcast(self.box, server.registry.boxes, [line])
        if server.bus is not None:
            server.bus.publish("notice", line, 1)
        self.cost += delivery_cost(len(line), recipients)


# What each command does: one table a reader (and a type checker) can follow.
COMMANDS: Final[dict[str, Callable[[Session, str], None]]] = {
    "who": Session._who,
    "msg": Session._msg,
    "nick": Session._nick,
    "help": Session._help,
    "stats": Session._stats,
}


def wrap_names(names: list[str], width: int, first: str) -> list[str]:
    """Join names with ", " into lines of at most `width` UTF-8 bytes, the first starting `first`.

    Bytes, not characters (so not textwrap): a name of 32 four-byte characters is 128 bytes on
    the wire, and the promise to clients is about bytes."""
    lines, current, size = [], first, len(first.encode())
    for name in names:
        sep = "" if current in (first, "") else ", "
        cost = len(sep) + len(name.encode())
        if size + cost > width and current not in (first, ""):
            lines.append(current)
            current, sep, size, cost = "", "", 0, cost - len(sep)
        current += sep + name
        size += cost
    lines.append(current)
    return lines
