"""Hostile clients (issue 9): a flooder, a 50 MB burst, clients that never read, a connection
lock-out and a mass disconnect, each beside the same run without the attacker.

Only the default server (`threaded`, chat.server) runs them: the limits are its own. Attackers
connect from 127.0.0.2 and up (127.0.0.1 is exempt from the per-address limits). Full sizes with
--benchmark-only; with --benchmark-disable (make test) every case runs at a tiny size, with small
limits so that each limit is still reached, and checks the same properties but no speed target.
The targets are judged by `python -m bench.report --check` (bench/report_hostile.py).
"""

from __future__ import annotations

import contextlib
import errno
import math
import select
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from bench.conftest import started_servers
from bench.measure import Window, drive_once, extra_info, server_stats
from bench.swarm import CONNECT_WAVE, SenderPlan, Swarm, percentile_ms, raise_open_files_limit
from bench.targets import (
    BURST_BYTES,
    BURST_LINE_BYTES,
    BURST_READERS,
    FLOOD_CHAT_RATE_PER_S,
    FLOOD_CHATTERS,
    FLOOD_HELD_MARGIN,
    FLOOD_P99_VS_CALM_MAX,
    LOCKOUT_DRIBBLING,
    LOCKOUT_JOIN_TARGET_S,
    LOCKOUT_LEGIT_TRIES,
    LOCKOUT_SILENT,
    MASS_CLIENTS,
    MASS_MESSAGE_TARGET_MS,
    MASS_SIGTERM_TARGET_S,
    MEMORY_SPAMMERS,
)
from chat.delivery import MAX_QUEUED_TOTAL_BYTES
from chat.flood import FLOOD_BURST_BYTES, FLOOD_RATE_BYTES_PER_S, delivery_cost
from chat.probe import probe_text
from chat.protocol import (
    ENCODING,
    HELP_COMMAND,
    LINE_TOO_LONG,
    NOTICE_PREFIX,
    QUIT_COMMAND,
    Accepted,
    ClientHandshake,
    LineDecoder,
    command_line,
    encode_line,
)
from harness import ServerProcess

KIND = "threaded"
ATTACKER = "127.0.0.2"
ATTACKER_HOSTS = tuple(f"127.0.0.{i}" for i in range(2, 251))
MIB = 2**20
TIMEOUT_S = 120.0
# Quick mode: limits small enough that tiny sizes still reach them.
QUICK_FLOOD_RATE = 200_000
QUICK_FLOOD_BURST = 100_000
QUICK_QUEUED_TOTAL = 8 * MIB
QUICK_MAX_PENDING = 1 * MIB


@dataclass
class Sizes:
    """One case's sizes: the full run's, or quick mode's."""

    full: dict
    quick: dict

    def pick(self, quick: bool) -> dict:
        return self.quick if quick else self.full


@pytest.fixture
def threaded() -> Iterator[Callable[..., ServerProcess]]:
    """Start default servers (extra CLI args allowed); all stopped by PID afterwards."""
    with started_servers(KIND) as start:
        yield start


@pytest.fixture
def swarms() -> Iterator[Callable[[ServerProcess], Swarm]]:
    made: list[Swarm] = []

    def make(server: ServerProcess, prefix: str = "c") -> Swarm:
        swarm = Swarm(server.address, prefix)
        made.append(swarm)
        return swarm

    try:
        yield make
    finally:
        for swarm in made:
            swarm.close()


def cut_count(swarm: Swarm, indices) -> int:
    return sum(1 for i in indices if swarm.clients[i].state == "closed")


def stat(stats: dict[str, float], key: str) -> int | None:
    return int(stats[key]) if key in stats else None


def pedantic(benchmark, fn: Callable[[], object]) -> None:
    benchmark.pedantic(fn, rounds=1, iterations=1)


# --- 1. flood: one client at wire speed while 50 chat ---------------------------------------------

FLOOD = Sizes(
    full={"chatters": FLOOD_CHATTERS, "seconds": 10.0},
    quick={"chatters": 5, "seconds": 1.0},
)
_flood_calm_p99: dict[bool, float] = {}


def flood_lines(name: str, recipients: int, rate: float, burst: float, seconds: float) -> int:
    """Lines of short probes that keep the flooder over its budget for about `seconds`."""
    cost = delivery_cost(len(name) + 2 + len(probe_text(10**6, time.monotonic_ns())), recipients)
    return math.ceil((burst + rate * seconds) / cost)


def flood_cost(name: str, count: int, recipients: int, stamp_ns: int) -> int:
    """What the flooder's `count` lines cost it, as the server charges it (chat.flood)."""
    payload = sum(len(name) + 2 + len(probe_text(seq, stamp_ns)) for seq in range(count))
    return delivery_cost(payload, recipients, lines=count)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attacked", [False, True], ids=["calm", "flooded"])
def test_flood(benchmark, threaded, swarms, attacked, quick):
    """50 clients chat at 10 msg/s each; in the flooded run one more client (from 127.0.0.2)
    sends short lines at wire speed the whole time. Calm: the same room, that client silent."""
    size = FLOOD.pick(quick)
    chatters, seconds = size["chatters"], size["seconds"]
    rate, burst = (
        (QUICK_FLOOD_RATE, QUICK_FLOOD_BURST)
        if quick
        else (FLOOD_RATE_BYTES_PER_S, FLOOD_BURST_BYTES)
    )
    server = threaded("--notice-limit", "0", "--flood-rate", str(rate), "--flood-burst", str(burst))
    swarm = swarms(server)
    swarm.connect(chatters, timeout_s=TIMEOUT_S)
    swarm.connect(1, timeout_s=TIMEOUT_S, source=ATTACKER)
    swarm.settle()
    flooder = chatters
    name = swarm.clients[flooder].name
    count = int(FLOOD_CHAT_RATE_PER_S * seconds)
    plans = [
        SenderPlan(
            i, count, FLOOD_CHAT_RATE_PER_S, start_offset_s=i / (FLOOD_CHAT_RATE_PER_S * chatters)
        )
        for i in range(chatters)
    ]
    lines = flood_lines(name, chatters, rate, burst, seconds) if attacked else 0
    if attacked:
        plans.append(SenderPlan(flooder, lines))
    window = Window()
    swarm.begin_window()
    t0 = time.monotonic_ns()
    pedantic(benchmark, lambda: drive_once(window, server, swarm, plans, seconds + TIMEOUT_S))
    window.verdict = swarm.verify(timed_senders=range(chatters))
    stats = server_stats(server.address)
    cut = cut_count(swarm, range(chatters))
    p99 = percentile_ms(window.verdict.latencies_ns, 99)
    benchmark.group = f"hostile flood chatters={chatters}"
    info = extra_info("hostile_flood", server, chatters, window, attacked=attacked, seconds=seconds)
    info.update(
        chat_rate_per_s=FLOOD_CHAT_RATE_PER_S,
        chatters_cut=cut,
        flooder_cut=swarm.clients[flooder].state == "closed",
        throttled=stat(stats, "throttled"),
        slow_consumers=stat(stats, "slow_consumers"),
        flood_rate_bytes_per_s=rate,
        flood_burst_bytes=burst,
        none_cut=cut == 0,
        nothing_lost=window.verdict.ok and not window.timed_out,
    )
    if not attacked:
        _flood_calm_p99[quick] = p99
    else:
        # The flooder's lines are all stamped when queued (t0): the last one's latency at a
        # reader is how long the server took to take the whole flood from it.
        timing = swarm.verify([0], timed_senders=[flooder])
        flood_s = percentile_ms(timing.latencies_ns, 100) / 1e3
        cost = flood_cost(name, lines, chatters, t0)
        sustained = (cost - burst) / flood_s if flood_s > 0 else math.inf
        calm = _flood_calm_p99.get(quick)
        info.update(
            flood_lines=lines,
            flood_cost_bytes=cost,
            flood_s=round(flood_s, 3),
            flood_fanout_bytes_per_s=round(sustained),
            flood_vs_rate=round(sustained / rate, 3),
            calm_p99_ms=None if calm is None else round(calm, 4),
            p99_vs_calm=None if not calm else round(p99 / calm, 3),
            p99_within_2x=None if not calm else p99 <= FLOOD_P99_VS_CALM_MAX * calm,
            flooder_held=sustained <= FLOOD_HELD_MARGIN * rate and (stats.get("throttled", 0) > 0),
        )
    benchmark.extra_info.update(info)
    assert cut == 0, f"{cut} chatters were cut"
    assert window.verdict.ok and not window.timed_out, window.verdict.problems()
    if attacked:
        assert stats["throttled"] > 0, stats
        assert not info["flooder_cut"], "the flooder is held back, not cut"


# --- 2. burst: 30 readers, one sender, 50 MB of 1000-byte lines -----------------------------------

BURST = Sizes(
    full={"readers": BURST_READERS, "bytes": BURST_BYTES},
    quick={"readers": 3, "bytes": 300_000},
)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("flood_control", ["on", "off"])
def test_burst(benchmark, threaded, swarms, flood_control, quick):
    """One sender bursts 1000-byte lines into a room of readers that keep reading. With flood
    control on (the default) the sender is held at its budget; off, it goes at wire speed and only
    the slow-consumer rule stands between it and the readers."""
    size = BURST.pick(quick)
    readers, lines = size["readers"], size["bytes"] // BURST_LINE_BYTES
    if flood_control == "off":
        flood = ("--flood-rate", "0")
    elif quick:
        flood = ("--flood-rate", str(QUICK_FLOOD_RATE * 5), "--flood-burst", str(QUICK_FLOOD_BURST))
    else:
        flood = ()
    server = threaded("--notice-limit", "0", *flood)
    swarm = swarms(server)
    swarm.connect(readers + 1, timeout_s=TIMEOUT_S)
    swarm.settle()
    sender = readers
    window = Window()
    swarm.begin_window()
    plans = [SenderPlan(sender, lines, size=BURST_LINE_BYTES)]
    benchmark.group = f"hostile burst readers={readers}"
    pedantic(benchmark, lambda: drive_once(window, server, swarm, plans, 600.0, 0.001))
    window.verdict = swarm.verify()
    stats = server_stats(server.address)
    cut = cut_count(swarm, range(readers))
    info = extra_info("hostile_burst", server, readers, window, flood_control=flood_control)
    info.update(
        burst_bytes=lines * BURST_LINE_BYTES,
        line_bytes=BURST_LINE_BYTES,
        readers_cut=cut,
        throttled=stat(stats, "throttled"),
        slow_consumers=stat(stats, "slow_consumers"),
        none_cut=cut == 0,
        nothing_lost=window.verdict.ok and not window.timed_out,
    )
    benchmark.extra_info.update(info)
    assert cut == 0, f"{cut} readers were cut"
    assert window.verdict.ok and not window.timed_out, window.verdict.problems()


# --- 3. memory: clients that spam /help and never read --------------------------------------------

MEMORY = Sizes(
    full={"spammers": MEMORY_SPAMMERS, "seconds": 30.0}, quick={"spammers": 5, "seconds": 1.0}
)
HELP_CHUNK = encode_line(command_line(HELP_COMMAND)) * 10_000
RSS_SAMPLE_S = 0.05


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attacked", [False, True], ids=["calm", "spam"])
def test_memory(benchmark, threaded, swarms, attacked, quick):
    """Clients join, then (spam run) send `/help` at wire speed and never read a byte; the
    server's RSS is sampled from /proc the whole time. Calm: the same clients, silent."""
    size = MEMORY.pick(quick)
    spammers, seconds = size["spammers"], size["seconds"]
    budget = QUICK_QUEUED_TOTAL if quick else MAX_QUEUED_TOTAL_BYTES
    extra = ("--max-queued-total", str(budget))
    if quick:
        extra += ("--max-pending", str(QUICK_MAX_PENDING), "--flood-rate", str(QUICK_FLOOD_RATE))
    server = threaded("--notice-limit", "0", *extra)
    swarm = swarms(server)
    swarm.connect(spammers, timeout_s=TIMEOUT_S)
    swarm.settle()
    swarm.begin_window(stalled=range(spammers))  # never read again
    baseline = server.rss_bytes()
    result: dict = {}
    benchmark.group = f"hostile memory spammers={spammers}"
    pedantic(benchmark, lambda: result.update(spam(server, swarm, seconds, attacked)))
    try:
        stats = server_stats(server.address)
    except OSError:  # no answer in time: recorded (stats_answered), judged by the report
        stats = {}
    cut = result["cut"]
    peak = result["peak_rss"]
    info = {
        "case": "hostile_memory",
        "server": server.label,
        "clients": spammers,
        "attacked": attacked,
        "seconds": seconds,
        "baseline_rss_mib": round(baseline / MIB, 1),
        "peak_rss_mib": round(peak / MIB, 1),
        "end_rss_mib": round(server.rss_bytes() / MIB, 1),
        "max_queued_total_mib": round(budget / MIB, 1),
        "limit_rss_mib": round((baseline + budget) / MIB, 1),
        "rss_under_budget": peak <= baseline + budget,
        "help_bytes_sent": result["sent"],
        "disconnected": cut,
        "last_cut_s": result["last_cut_s"],
        "server_alive": server.alive(),
        "stats_answered": bool(stats),
        **{
            k: stat(stats, k)
            for k in (
                "slow_consumers",
                "evicted",
                "cut_hard_limit",
                "cut_write_deadline",
                "throttled",
                "queued_bytes",
            )
        },
    }
    benchmark.extra_info.update(info)
    assert server.alive()
    if quick:
        assert stats, "the server did not answer a newcomer's /stats"


def spam(server: ServerProcess, swarm: Swarm, seconds: float, attacked: bool) -> dict:
    """Write /help on every client's socket whenever it takes more; sample the server's RSS."""
    socks = {c.sock.fileno(): c.sock for c in swarm.clients}
    poll = select.epoll()
    for fd in socks:
        poll.register(fd, select.EPOLLOUT if attacked else 0)
    start = time.monotonic()
    end, next_sample = start + seconds, 0.0
    peak, sent, last_cut = server.rss_bytes(), 0, None
    cut: set[int] = set()
    try:
        while (now := time.monotonic()) < end:
            if now >= next_sample:
                peak = max(peak, server.rss_bytes())
                next_sample = now + RSS_SAMPLE_S
            for fd, _ in poll.poll(RSS_SAMPLE_S):
                try:
                    sent += socks[fd].send(HELP_CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    poll.unregister(fd)
                    cut.add(fd)
                    last_cut = time.monotonic() - start
    finally:
        poll.close()
    # The server may have shut a socket we were no longer writing to: look without reading.
    for fd, sock in socks.items():
        if fd not in cut and peer_closed(sock):
            cut.add(fd)
    last_cut_s = None if last_cut is None else round(last_cut, 3)
    return {"peak_rss": peak, "sent": sent, "cut": len(cut), "last_cut_s": last_cut_s}


def peer_closed(sock: socket.socket) -> bool:
    """Has the server closed or reset this connection? (poll's HUP/ERR; nothing is read)"""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


# --- 4. lock-out: thousands of connections that never name themselves ---------------------------

LOCKOUT = Sizes(
    full={
        "silent": LOCKOUT_SILENT,
        "dribbling": LOCKOUT_DRIBBLING,
        "hosts": ATTACKER_HOSTS,
        "tries": LOCKOUT_LEGIT_TRIES,
        "window_s": 35.0,  # past the 30 s handshake timeout: the silent ones expire in it
        "dribble_s": 2.0,  # the attacker waits 20 s; 2 s is ten times as busy
        "retry_s": 10.0,
        "server": (),
    },
    quick={
        "silent": 60,
        "dribbling": 40,
        "hosts": ATTACKER_HOSTS[:5],
        "tries": 3,
        "window_s": 3.0,
        "dribble_s": 0.5,
        "retry_s": 1.0,
        "server": ("--max-unnamed", "30", "--handshake-timeout", "2"),
    },
)
LEGIT_TIMEOUT_S = 10.0
# What a closed attacker connection last read, by the server's refusal texts (chat/texts.py).
CLOSE_REASONS = (
    ("too many connections from your address", "refused_address_busy"),
    ("too many new connections from your address", "refused_address_rate"),
    ("server full", "refused_full"),
    ("waiting for a name", "pushed_out"),
    ("no name received", "handshake_timeout"),
)


@dataclass
class Slot:
    """One connection the attacker wants open: silent or dribbling, from one source address."""

    kind: str
    host: str
    sock: socket.socket | None = None
    state: str = "idle"  # idle, connecting, open
    greeted: bool = False
    tail: bytes = b""
    retry_at: float = 0.0


@dataclass
class Crowd:
    """The lock-out attacker: many connections, one epoll loop, never a name.

    A dribbling connection sends one byte of a name (never its end) every `dribble_s`; a
    connection the server closes is opened again after `retry_s`, as a real attacker would.
    """

    address: tuple[str, int]
    slots: list[Slot]
    dribble_s: float
    retry_s: float
    closed: Counter = field(default_factory=Counter)
    opened: int = 0
    admitted: int = 0
    connect_failed: int = 0

    def __post_init__(self) -> None:
        self.poll = select.epoll()
        self.by_fd: dict[int, Slot] = {}
        self.connecting = 0
        self.next_dribble = 0.0

    def open_now(self) -> int:
        return sum(1 for s in self.slots if s.state == "open")

    def run(self, until: float) -> None:
        """Open, dribble, read refusals and reopen until `until` (monotonic seconds)."""
        while (now := time.monotonic()) < until:
            for slot in self.slots:
                if self.connecting >= CONNECT_WAVE:
                    break
                if slot.state == "idle" and slot.retry_at <= now:
                    self._open(slot)
            if now >= self.next_dribble:
                for slot in self.slots:
                    if slot.kind == "dribbling" and slot.state == "open":
                        self._send(slot, b"a")
                self.next_dribble = now + self.dribble_s
            for fd, mask in self.poll.poll(0.05):
                slot = self.by_fd.get(fd)
                if slot is not None:
                    self._event(slot, mask)

    def _open(self, slot: Slot) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((slot.host, 0))
        err = sock.connect_ex(self.address)
        self.opened += 1
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.connect_failed += 1
            slot.retry_at = time.monotonic() + self.retry_s
            return
        slot.sock, slot.state, slot.greeted, slot.tail = sock, "connecting", False, b""
        self.connecting += 1
        self.by_fd[sock.fileno()] = slot
        self.poll.register(sock.fileno(), select.EPOLLOUT | select.EPOLLIN)

    def _event(self, slot: Slot, mask: int) -> None:
        assert slot.sock is not None
        if slot.state == "connecting":
            self.connecting -= 1
            if slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.connect_failed += 1
                self._drop(slot, None)
                return
            slot.state = "open"
            self.poll.modify(slot.sock.fileno(), select.EPOLLIN)
        if not mask & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
            return
        try:
            data = slot.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            if not slot.greeted and data.startswith(NOTICE_START):
                slot.greeted = True
                self.admitted += 1
            slot.tail = (slot.tail + data)[-512:]
            return
        self._drop(slot, close_reason(slot.tail))

    def _send(self, slot: Slot, data: bytes) -> None:
        with contextlib.suppress(OSError):  # a closed one is noticed by the read that follows
            slot.sock.send(data)  # type: ignore[union-attr]

    def _drop(self, slot: Slot, reason: str | None) -> None:
        if reason is not None:
            self.closed[reason] += 1
        assert slot.sock is not None
        fd = slot.sock.fileno()
        self.poll.unregister(fd)
        del self.by_fd[fd]
        slot.sock.close()
        slot.sock, slot.state = None, "idle"
        slot.retry_at = time.monotonic() + self.retry_s

    def close(self) -> None:
        for slot in self.slots:
            if slot.sock is not None:
                slot.sock.close()
        self.poll.close()


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
NOTICE_START = NOTICE_PREFIX.encode(ENCODING)  # the greeting, at the start of the first read


def close_reason(tail: bytes) -> str:
    text = tail.decode("utf-8", "replace")
    for words, reason in CLOSE_REASONS:
        if words in text:
            return reason
    return "closed_without_reason"


def legit_join(address: tuple[str, int], name: str) -> float | None:
    """Seconds from connect to the welcome for a client from 127.0.0.1; None if refused."""
    start = time.monotonic()
    deadline = start + LEGIT_TIMEOUT_S
    try:
        with socket.create_connection(address, timeout=LEGIT_TIMEOUT_S) as sock:
            sock.sendall(encode_line(name))
            decoder, handshake = LineDecoder(), ClientHandshake()
            outcome = None
            while outcome is None and time.monotonic() < deadline:
                data = sock.recv(4096)
                if not data:
                    return None
                for raw in decoder.feed(data):
                    if outcome is None and raw is not LINE_TOO_LONG:
                        outcome = handshake.line_received(raw.decode(ENCODING, "replace"))
            if not isinstance(outcome, Accepted):
                return None
            elapsed = time.monotonic() - start
            sock.sendall(encode_line(command_line(QUIT_COMMAND)))
            return elapsed
    except OSError:
        return None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attacked", [False, True], ids=["calm", "crowded"])
def test_lockout(benchmark, threaded, attacked, quick):
    """Silent and dribbling connections from many attacker addresses keep as many slots as the
    server lets them; meanwhile legitimate clients from 127.0.0.1 join one after another."""
    size = LOCKOUT.pick(quick)
    raise_open_files_limit()
    server = threaded(*size["server"])
    hosts = size["hosts"]
    kinds = ["silent"] * size["silent"] + ["dribbling"] * size["dribbling"]
    slots = [Slot(kind, hosts[i % len(hosts)]) for i, kind in enumerate(kinds)] if attacked else []
    crowd = Crowd(server.address, slots, size["dribble_s"], size["retry_s"])
    tries, window_s = size["tries"], size["window_s"]
    joins: list[float | None] = []
    ramp_s = 0.0

    def attack() -> None:
        nonlocal ramp_s
        start = time.monotonic()
        # The ramp: every slot tried once (or a third of the window gone).
        while crowd.opened < len(slots) and time.monotonic() - start < window_s / 3:
            crowd.run(time.monotonic() + 0.1)
        ramp_s = time.monotonic() - start
        spacing = (window_s - ramp_s) / (tries + 1)
        tries_done = threading.Event()

        def legit() -> None:
            for k in range(tries):
                time.sleep(spacing)
                joins.append(legit_join(server.address, f"legit{k}"))
            tries_done.set()

        thread = threading.Thread(target=legit, daemon=True)
        thread.start()
        crowd.run(start + window_s)
        while not tries_done.is_set():
            crowd.run(time.monotonic() + 0.1)
        thread.join()

    benchmark.group = "hostile lockout"
    try:
        pedantic(benchmark, attack)
        held = crowd.open_now()
        stats = server_stats(server.address)
    finally:
        crowd.close()
    joined = [j for j in joins if j is not None]
    info = {
        "case": "hostile_lockout",
        "server": server.label,
        "clients": len(slots),
        "attacked": attacked,
        "silent": size["silent"] if attacked else 0,
        "dribbling": size["dribbling"] if attacked else 0,
        "attacker_hosts": len(hosts) if attacked else 0,
        "window_s": window_s,
        "ramp_s": round(ramp_s, 3),
        "dribble_s": size["dribble_s"],
        "retry_s": size["retry_s"],
        "legit_tries": tries,
        "legit_joined": len(joined),
        "legit_join_max_s": round(max(joined), 4) if joined else None,
        "legit_join_median_s": round(sorted(joined)[len(joined) // 2], 4) if joined else None,
        "legit_all_in_time": len(joined) == tries and max(joined) <= LOCKOUT_JOIN_TARGET_S,
        "attacker_connects": crowd.opened,
        "attacker_admitted": crowd.admitted,
        "attacker_held_at_end": held,
        "attacker_connect_failed": crowd.connect_failed,
        **{reason: crowd.closed[reason] for _, reason in CLOSE_REASONS},
        "closed_without_reason": crowd.closed["closed_without_reason"],
        "server_connections_at_end": stat(stats, "connections"),
    }
    benchmark.extra_info.update(info)
    assert len(joined) == tries, f"only {len(joined)} of {tries} legitimate clients got in"
    if attacked:
        refused = sum(crowd.closed[r] for _, r in CLOSE_REASONS)
        assert refused > 0, "the attacker was never refused nor pushed out"


# --- 5. mass disconnect: 10,000 leave at once -----------------------------------------------------

MASS = Sizes(
    full={"clients": MASS_CLIENTS, "sigterm_after_s": 1.0, "probe_s": 3.0},
    quick={"clients": 50, "sigterm_after_s": 0.2, "probe_s": 0.5},
)
MASS_PROBE_RATE_PER_S = 10.0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attacked", [False, True], ids=["calm", "mass-disconnect"])
def test_mass_disconnect(benchmark, threaded, swarms, attacked, quick):
    """10,000 clients and two more, alice and bob. Alice sends bob (and everyone still there) a
    probe every 100 ms; in the attacked run the 10,000 close their sockets at once just before.
    Then on a second server the same crowd leaves at once and SIGTERM follows a second later.
    Calm: nobody leaves, SIGTERM with everyone connected."""
    size = MASS.pick(quick)
    crowd = size["clients"]
    room = ("--max-clients", str(crowd + 100))
    server = threaded(*room)
    swarm = swarms(server)
    swarm.connect(crowd + 2, timeout_s=TIMEOUT_S)
    swarm.settle(quiet_s=0.5, timeout_s=TIMEOUT_S)
    alice, bob = crowd, crowd + 1
    count = int(MASS_PROBE_RATE_PER_S * size["probe_s"])
    plans = [SenderPlan(alice, count, MASS_PROBE_RATE_PER_S)]
    window = Window()
    swarm.begin_window()
    close_s = 0.0

    def leave_and_talk() -> None:
        nonlocal close_s
        if attacked:
            start = time.monotonic()
            swarm.disconnect(range(crowd))
            close_s = time.monotonic() - start
        drive_once(window, server, swarm, plans, size["probe_s"] + TIMEOUT_S)

    benchmark.group = f"hostile mass clients={crowd}"
    pedantic(benchmark, leave_and_talk)
    window.verdict = swarm.verify([c.index for c in swarm.clients if c.state != "closed"])
    to_bob = swarm.verify([bob])
    swarm.close()
    exit_s, status = sigterm_during_mass_disconnect(threaded(*room), swarms, crowd, attacked, size)
    info = extra_info("hostile_mass", server, crowd, window, attacked=attacked)
    bob_max = percentile_ms(to_bob.latencies_ns, 100)
    info.update(
        disconnect_s=round(close_s, 3),
        probes=count,
        bob_first_ms=round(to_bob.latencies_ns[0] / 1e6, 3) if to_bob.latencies_ns else None,
        bob_p99_ms=_ms(percentile_ms(to_bob.latencies_ns, 99)),
        bob_max_ms=_ms(bob_max),
        message_within_target=to_bob.ok and bob_max <= MASS_MESSAGE_TARGET_MS,
        sigterm_after_s=size["sigterm_after_s"] if attacked else 0.0,
        sigterm_exit_s=round(exit_s, 3),
        sigterm_status=status,
        sigterm_within_target=status == 0 and exit_s <= MASS_SIGTERM_TARGET_S,
    )
    benchmark.extra_info.update(info)
    assert to_bob.ok and not window.timed_out, to_bob.problems()
    assert window.verdict.ok, window.verdict.problems()
    assert status == 0, f"SIGTERM: exit status {status}"


def sigterm_during_mass_disconnect(
    server: ServerProcess, swarms, crowd: int, attacked: bool, size: dict
) -> tuple[float, int | None]:
    """`crowd` clients join; (attacked) all leave at once and SIGTERM follows `sigterm_after_s`
    later; (calm) SIGTERM with all connected. Seconds to exit and the exit status."""
    swarm = swarms(server)
    swarm.connect(crowd, timeout_s=TIMEOUT_S)
    swarm.settle(quiet_s=0.5, timeout_s=TIMEOUT_S)
    if attacked:
        swarm.disconnect(range(crowd))
        time.sleep(size["sigterm_after_s"])
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        status = server.proc.wait(STOP_WAIT_S)
    except Exception:  # subprocess.TimeoutExpired: the fixture kills it
        return time.monotonic() - start, None
    return time.monotonic() - start, status


STOP_WAIT_S = 20.0


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)
