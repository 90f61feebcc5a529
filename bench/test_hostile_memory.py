"""Hostile clients that never read (issue 9): they spam /help while the server's memory is
watched against its queued-bytes budget. Shared sizes and helpers: bench/hostile.py."""

from __future__ import annotations

import select
import socket
import time

import pytest

from bench.hostile import (
    MIB,
    QUICK_FLOOD_RATE,
    QUICK_MAX_PENDING,
    QUICK_QUEUED_TOTAL,
    TIMEOUT_S,
    Sizes,
    pedantic,
    stat,
)
from bench.measure import server_stats
from bench.swarm import Swarm
from bench.targets import MEMORY_SPAMMERS
from chat.delivery import MAX_QUEUED_TOTAL_BYTES
from chat.protocol import HELP_COMMAND, command_line, encode_line
from harness import ServerProcess

# --- 3. memory: clients that spam /help and never read --------------------------------------------

MEMORY = Sizes(
    full={"spammers": MEMORY_SPAMMERS, "seconds": 30.0}, quick={"spammers": 5, "seconds": 1.0}
)
HELP_CHUNK = encode_line(command_line(HELP_COMMAND)) * 10_000
RSS_SAMPLE_S = 0.05
# The /stats counters recorded as they are.
STAT_KEYS = (
    "slow_consumers",
    "evicted",
    "cut_hard_limit",
    "cut_write_deadline",
    "throttled",
    "queued_bytes",
)


def memory_args(budget: int, quick: bool) -> tuple[str, ...]:
    """The server's memory budget; in quick mode also small per-client and flood limits."""
    extra = ("--max-queued-total", str(budget))
    if quick:
        extra += ("--max-pending", str(QUICK_MAX_PENDING), "--flood-rate", str(QUICK_FLOOD_RATE))
    return extra


def stats_if_answered(server: ServerProcess) -> dict[str, float]:
    """The server's /stats, or {} if it does not answer in time."""
    try:
        return server_stats(server.address)
    except OSError:  # no answer in time: recorded (stats_answered), judged by the report
        return {}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attacked", [False, True], ids=["calm", "spam"])
def test_memory(benchmark, threaded, swarms, attacked, quick):
    """Clients join, then (spam run) send `/help` at wire speed and never read a byte; the
    server's RSS is sampled from /proc the whole time. Calm: the same clients, silent."""
    size = MEMORY.pick(quick)
    spammers, seconds = size["spammers"], size["seconds"]
    budget = QUICK_QUEUED_TOTAL if quick else MAX_QUEUED_TOTAL_BYTES
    server = threaded("--notice-limit", "0", *memory_args(budget, quick))
    swarm = swarms(server)
    swarm.connect(spammers, timeout_s=TIMEOUT_S)
    swarm.settle()
    swarm.begin_window(stalled=range(spammers))  # never read again
    baseline = server.rss_bytes()
    result: dict = {}
    benchmark.group = f"hostile memory spammers={spammers}"
    pedantic(benchmark, lambda: result.update(spam(server, swarm, seconds, attacked)))
    stats = stats_if_answered(server)
    info = memory_info(server, stats, result, size=size, attacked=attacked, rss=(baseline, budget))
    benchmark.extra_info.update(info)
    assert server.alive()
    if quick:
        assert stats, "the server did not answer a newcomer's /stats"


def memory_info(
    server: ServerProcess, stats: dict, result: dict, *, size: dict, attacked: bool, rss: tuple
) -> dict:
    """extra_info for one memory run; `rss` is (baseline, budget) in bytes."""
    baseline, budget = rss
    peak = result["peak_rss"]
    return {
        "case": "hostile_memory",
        "server": server.label,
        "clients": size["spammers"],
        "attacked": attacked,
        "seconds": size["seconds"],
        "baseline_rss_mib": round(baseline / MIB, 1),
        "peak_rss_mib": round(peak / MIB, 1),
        "end_rss_mib": round(server.rss_bytes() / MIB, 1),
        "max_queued_total_mib": round(budget / MIB, 1),
        "limit_rss_mib": round((baseline + budget) / MIB, 1),
        "rss_under_budget": peak <= baseline + budget,
        "help_bytes_sent": result["sent"],
        "disconnected": result["cut"],
        "last_cut_s": result["last_cut_s"],
        "server_alive": server.alive(),
        "stats_answered": bool(stats),
        **{k: stat(stats, k) for k in STAT_KEYS},
    }


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
