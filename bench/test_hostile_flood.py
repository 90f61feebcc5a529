"""Hostile clients that send too much (issue 9): a flooder among chatters, and a 50 MB burst with
flood control on and off. Shared sizes and helpers: bench/hostile.py."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pytest

from bench.hostile import (
    ATTACKER,
    QUICK_FLOOD_BURST,
    QUICK_FLOOD_RATE,
    TIMEOUT_S,
    Sizes,
    cut_count,
    pedantic,
    stat,
)
from bench.measure import Window, drive_once, extra_info, server_stats
from bench.swarm import SenderPlan, Swarm, percentile_ms
from bench.targets import (
    BURST_BYTES,
    BURST_LINE_BYTES,
    BURST_READERS,
    FLOOD_CHAT_RATE_PER_S,
    FLOOD_CHATTERS,
    FLOOD_HELD_MARGIN,
    FLOOD_P99_VS_CALM_MAX,
)
from chat.flood import FLOOD_BURST_BYTES, FLOOD_RATE_BYTES_PER_S, delivery_cost
from chat.probe import probe_text
from harness import ServerProcess

# --- 1. flood: one client at wire speed while 50 chat ---------------------------------------------

FLOOD = Sizes(
    full={"chatters": FLOOD_CHATTERS, "seconds": 10.0},
    quick={"chatters": 5, "seconds": 1.0},
)
# The calm run's p99 (by quick mode), which the flooded run that follows is set against.
_flood_calm_p99: dict[bool, float] = {}


@dataclass
class FloodRoom:
    """One flood case's room: `chatters` clients, then the would-be flooder from ATTACKER."""

    server: ServerProcess
    swarm: Swarm
    chatters: int
    seconds: float
    rate: int
    burst: int
    lines: int = 0  # the flooder's; none in the calm run
    t0_ns: int = 0  # when the flooder's lines were stamped

    @property
    def flooder(self) -> int:
        return self.chatters

    @property
    def flooder_name(self) -> str:
        return self.swarm.clients[self.flooder].name


def flood_lines(name: str, recipients: int, rate: float, burst: float, seconds: float) -> int:
    """Lines of short probes that keep the flooder over its budget for about `seconds`."""
    cost = delivery_cost(len(name) + 2 + len(probe_text(10**6, time.monotonic_ns())), recipients)
    return math.ceil((burst + rate * seconds) / cost)


def flood_cost(name: str, count: int, recipients: int, stamp_ns: int) -> int:
    """What the flooder's `count` lines cost it, as the server charges it (chat.flood)."""
    payload = sum(len(name) + 2 + len(probe_text(seq, stamp_ns)) for seq in range(count))
    return delivery_cost(payload, recipients, lines=count)


def flood_room(threaded, swarms, quick: bool) -> FloodRoom:
    """A server with the flood budget (quick mode's smaller one) and its joined, settled room."""
    size = FLOOD.pick(quick)
    chatters = size["chatters"]
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
    return FloodRoom(server, swarm, chatters, size["seconds"], rate, burst)


def flood_plans(room: FloodRoom, attacked: bool) -> list[SenderPlan]:
    """Every chatter at the chat rate, staggered; (attacked) the flooder's lines at wire speed."""
    chatters, seconds = room.chatters, room.seconds
    name = room.flooder_name
    count = int(FLOOD_CHAT_RATE_PER_S * seconds)
    plans = [
        SenderPlan(
            i, count, FLOOD_CHAT_RATE_PER_S, start_offset_s=i / (FLOOD_CHAT_RATE_PER_S * chatters)
        )
        for i in range(chatters)
    ]
    room.lines = flood_lines(name, chatters, room.rate, room.burst, seconds) if attacked else 0
    if attacked:
        plans.append(SenderPlan(room.flooder, room.lines))
    return plans


def flood_info(room: FloodRoom, window: Window, stats: dict, attacked: bool, quick: bool) -> dict:
    """extra_info for one flood run; the flooded run's is set against the calm run's p99."""
    cut = cut_count(room.swarm, range(room.chatters))
    p99 = percentile_ms(window.verdict.latencies_ns, 99)
    info = extra_info(
        "hostile_flood", room.server, room.chatters, window, attacked=attacked, seconds=room.seconds
    )
    info.update(
        chat_rate_per_s=FLOOD_CHAT_RATE_PER_S,
        chatters_cut=cut,
        flooder_cut=room.swarm.clients[room.flooder].state == "closed",
        throttled=stat(stats, "throttled"),
        rested=stat(stats, "rested"),
        slow_consumers=stat(stats, "slow_consumers"),
        flood_rate_bytes_per_s=room.rate,
        flood_burst_bytes=room.burst,
        none_cut=cut == 0,
        nothing_lost=window.verdict.ok and not window.timed_out,
    )
    if not attacked:
        _flood_calm_p99[quick] = p99
    else:
        info.update(flooded_info(room, stats, p99, _flood_calm_p99.get(quick)))
    return info


def flooded_info(room: FloodRoom, stats: dict, p99: float, calm: float | None) -> dict:
    """How fast the server took the flood from the flooder, and the chatters' p99 against calm."""
    # The flooder's lines are all stamped when queued (t0): the last one's latency at a
    # reader is how long the server took to take the whole flood from it.
    timing = room.swarm.verify([0], timed_senders=[room.flooder])
    flood_s = percentile_ms(timing.latencies_ns, 100) / 1e3
    cost = flood_cost(room.flooder_name, room.lines, room.chatters, room.t0_ns)
    sustained = (cost - room.burst) / flood_s if flood_s > 0 else math.inf
    held = sustained <= FLOOD_HELD_MARGIN * room.rate and (stats.get("throttled", 0) > 0)
    return dict(
        flood_lines=room.lines,
        flood_cost_bytes=cost,
        flood_s=round(flood_s, 3),
        flood_fanout_bytes_per_s=round(sustained),
        flood_vs_rate=round(sustained / room.rate, 3),
        calm_p99_ms=None if calm is None else round(calm, 4),
        p99_vs_calm=None if not calm else round(p99 / calm, 3),
        p99_within_2x=None if not calm else p99 <= FLOOD_P99_VS_CALM_MAX * calm,
        flooder_held=held,
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attacked", [False, True], ids=["calm", "flooded"])
def test_flood(benchmark, threaded, swarms, attacked, quick):
    """50 clients chat at 10 msg/s each; in the flooded run one more client (from 127.0.0.2)
    sends short lines at wire speed the whole time. Calm: the same room, that client silent."""
    room = flood_room(threaded, swarms, quick)
    server, swarm, seconds = room.server, room.swarm, room.seconds
    plans = flood_plans(room, attacked)
    window = Window()
    swarm.begin_window()
    room.t0_ns = time.monotonic_ns()
    pedantic(benchmark, lambda: drive_once(window, server, swarm, plans, seconds + TIMEOUT_S))
    window.verdict = swarm.verify(timed_senders=range(room.chatters))
    stats = server_stats(server.address)
    benchmark.group = f"hostile flood chatters={room.chatters}"
    info = flood_info(room, window, stats, attacked, quick)
    benchmark.extra_info.update(info)
    cut = info["chatters_cut"]
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


def burst_flood_args(flood_control: str, quick: bool) -> tuple[str, ...]:
    """The server's flood options: off, quick mode's small budget, or the default budget."""
    if flood_control == "off":
        return ("--flood-rate", "0")
    if quick:
        return ("--flood-rate", str(QUICK_FLOOD_RATE * 5), "--flood-burst", str(QUICK_FLOOD_BURST))
    return ()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("flood_control", ["on", "off"])
def test_burst(benchmark, threaded, swarms, flood_control, quick):
    """One sender bursts 1000-byte lines into a room of readers that keep reading. With flood
    control on (the default) the sender is held at its budget; off, it goes at wire speed and only
    the slow-consumer rule stands between it and the readers."""
    size = BURST.pick(quick)
    readers, lines = size["readers"], size["bytes"] // BURST_LINE_BYTES
    server = threaded("--notice-limit", "0", *burst_flood_args(flood_control, quick))
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
        rested=stat(stats, "rested"),
        slow_consumers=stat(stats, "slow_consumers"),
        none_cut=cut == 0,
        nothing_lost=window.verdict.ok and not window.timed_out,
    )
    benchmark.extra_info.update(info)
    # Whatever arrived arrived once and in order; a reader the slow-consumer rule cut is told so.
    assert info["duplicates"] == info["out_of_order"] == info["unexpected"] == 0, info
    if flood_control == "off":
        # Reported, not promised: at wire speed a reader slower than the sender falls behind for
        # good, and the slow-consumer rule cuts it (it is the reader that fell behind, not the
        # server). With flood control on, the promise below holds.
        return
    assert cut == 0, f"{cut} readers were cut"
    assert window.verdict.ok and not window.timed_out, window.verdict.problems()
