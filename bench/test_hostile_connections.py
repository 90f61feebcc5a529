"""Hostile connections (issue 9): a crowd that holds connections open without a name while
legitimate clients try to join, and 10,000 clients leaving at once. Shared sizes and helpers:
bench/hostile.py; the lock-out attacker: bench/hostile_crowd.py."""

from __future__ import annotations

import math
import signal
import threading
import time

import pytest

from bench.hostile import ATTACKER_HOSTS, TIMEOUT_S, Sizes, pedantic, stat
from bench.hostile_crowd import CLOSE_REASONS, Crowd, Slot, legit_join
from bench.measure import Window, drive_once, extra_info, server_stats
from bench.swarm import SenderPlan, Swarm, Verdict, percentile_ms, raise_open_files_limit
from bench.targets import (
    LOCKOUT_DRIBBLING,
    LOCKOUT_JOIN_TARGET_S,
    LOCKOUT_LEGIT_TRIES,
    LOCKOUT_SILENT,
    MASS_CLIENTS,
    MASS_MESSAGE_TARGET_MS,
    MASS_SIGTERM_TARGET_S,
)
from harness import ServerProcess

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


def lockout_crowd(server: ServerProcess, size: dict, attacked: bool) -> Crowd:
    """The attacker's silent and dribbling slots, spread over its hosts; none in the calm run."""
    hosts = size["hosts"]
    kinds = ["silent"] * size["silent"] + ["dribbling"] * size["dribbling"]
    slots = [Slot(kind, hosts[i % len(hosts)]) for i, kind in enumerate(kinds)] if attacked else []
    return Crowd(server.address, slots, size["dribble_s"], size["retry_s"])


def attack(
    crowd: Crowd, address: tuple[str, int], tries: int, window_s: float, joins: list
) -> float:
    """The crowd ramps up, then holds on while `tries` legitimate clients join one after another
    over the rest of the window (their seconds, or None, go to `joins`). Returns the ramp's s."""
    start = time.monotonic()
    # The ramp: every slot tried once (or a third of the window gone).
    while crowd.opened < len(crowd.slots) and time.monotonic() - start < window_s / 3:
        crowd.run(time.monotonic() + 0.1)
    ramp_s = time.monotonic() - start
    spacing = (window_s - ramp_s) / (tries + 1)
    tries_done = threading.Event()

    def legit() -> None:
        for k in range(tries):
            time.sleep(spacing)
            joins.append(legit_join(address, f"legit{k}"))
        tries_done.set()

    thread = threading.Thread(target=legit, daemon=True)
    thread.start()
    crowd.run(start + window_s)
    while not tries_done.is_set():
        crowd.run(time.monotonic() + 0.1)
    thread.join()
    return ramp_s


@pytest.mark.timeout(300)
@pytest.mark.parametrize("attacked", [False, True], ids=["calm", "crowded"])
def test_lockout(benchmark, threaded, attacked, quick):
    """Silent and dribbling connections from many attacker addresses keep as many slots as the
    server lets them; meanwhile legitimate clients from 127.0.0.1 join one after another."""
    size = LOCKOUT.pick(quick)
    raise_open_files_limit()
    server = threaded(*size["server"])
    crowd = lockout_crowd(server, size, attacked)
    tries, window_s = size["tries"], size["window_s"]
    joins: list[float | None] = []
    ramp: list[float] = []
    benchmark.group = "hostile lockout"
    try:
        pedantic(
            benchmark, lambda: ramp.append(attack(crowd, server.address, tries, window_s, joins))
        )
        held = crowd.open_now()
        stats = server_stats(server.address)
    finally:
        crowd.close()
    joined = [j for j in joins if j is not None]
    info = lockout_info(server, crowd, size, attacked, joined, ramp[0], held, stats)
    benchmark.extra_info.update(info)
    assert len(joined) == tries, f"only {len(joined)} of {tries} legitimate clients got in"
    if attacked:
        refused = sum(crowd.closed[r] for _, r in CLOSE_REASONS)
        assert refused > 0, "the attacker was never refused nor pushed out"


def lockout_info(
    server: ServerProcess,
    crowd: Crowd,
    size: dict,
    attacked: bool,
    joined: list[float],
    ramp_s: float,
    held: int,
    stats: dict,
) -> dict:
    """extra_info for one lock-out run: the legitimate joins and what became of the attacker."""
    tries = size["tries"]
    return {
        "case": "hostile_lockout",
        "server": server.label,
        "clients": len(crowd.slots),
        "attacked": attacked,
        "silent": size["silent"] if attacked else 0,
        "dribbling": size["dribbling"] if attacked else 0,
        "attacker_hosts": len(size["hosts"]) if attacked else 0,
        "window_s": size["window_s"],
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


# --- 5. mass disconnect: 10,000 leave at once -----------------------------------------------------

MASS = Sizes(
    full={"clients": MASS_CLIENTS, "sigterm_after_s": 1.0, "probe_s": 3.0},
    quick={"clients": 50, "sigterm_after_s": 0.2, "probe_s": 0.5},
)
MASS_PROBE_RATE_PER_S = 10.0
STOP_WAIT_S = 20.0


def mass_room(server: ServerProcess, swarms, crowd: int) -> Swarm:
    """`crowd` clients, then alice and bob, joined and settled."""
    swarm = swarms(server)
    swarm.connect(crowd + 2, timeout_s=TIMEOUT_S)
    swarm.settle(quiet_s=0.5, timeout_s=TIMEOUT_S)
    return swarm


def leave_and_talk(
    window: Window,
    server: ServerProcess,
    swarm: Swarm,
    plans: list[SenderPlan],
    size: dict,
    attacked: bool,
) -> float:
    """(attacked) the crowd closes its sockets at once; then alice's probes. Returns the seconds
    the closing took (0 in the calm run)."""
    close_s = 0.0
    if attacked:
        start = time.monotonic()
        swarm.disconnect(range(size["clients"]))
        close_s = time.monotonic() - start
    drive_once(window, server, swarm, plans, size["probe_s"] + TIMEOUT_S)
    return close_s


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
    swarm = mass_room(server, swarms, crowd)
    alice, bob = crowd, crowd + 1
    count = int(MASS_PROBE_RATE_PER_S * size["probe_s"])
    plans = [SenderPlan(alice, count, MASS_PROBE_RATE_PER_S)]
    window = Window()
    swarm.begin_window()
    closing: list[float] = []
    benchmark.group = f"hostile mass clients={crowd}"
    pedantic(
        benchmark,
        lambda: closing.append(leave_and_talk(window, server, swarm, plans, size, attacked)),
    )
    window.verdict = swarm.verify([c.index for c in swarm.clients if c.state != "closed"])
    to_bob = swarm.verify([bob])
    swarm.close()
    sigterm = sigterm_during_mass_disconnect(threaded(*room), swarms, crowd, attacked, size)
    info = extra_info("hostile_mass", server, crowd, window, attacked=attacked)
    info.update(mass_info(to_bob, size, attacked, count, closing[0], sigterm))
    benchmark.extra_info.update(info)
    assert to_bob.ok and not window.timed_out, to_bob.problems()
    assert window.verdict.ok, window.verdict.problems()
    assert sigterm[1] == 0, f"SIGTERM: exit status {sigterm[1]}"


def mass_info(
    to_bob: Verdict,
    size: dict,
    attacked: bool,
    probes: int,
    close_s: float,
    sigterm: tuple[float, int | None],
) -> dict:
    """The mass-disconnect numbers beyond extra_info's: bob's probes and the SIGTERM that follows.
    `sigterm` is (seconds to exit, exit status)."""
    exit_s, status = sigterm
    bob_max = percentile_ms(to_bob.latencies_ns, 100)
    return dict(
        disconnect_s=round(close_s, 3),
        probes=probes,
        bob_first_ms=round(to_bob.latencies_ns[0] / 1e6, 3) if to_bob.latencies_ns else None,
        bob_p99_ms=_ms(percentile_ms(to_bob.latencies_ns, 99)),
        bob_max_ms=_ms(bob_max),
        message_within_target=to_bob.ok and bob_max <= MASS_MESSAGE_TARGET_MS,
        sigterm_after_s=size["sigterm_after_s"] if attacked else 0.0,
        sigterm_exit_s=round(exit_s, 3),
        sigterm_status=status,
        sigterm_within_target=status == 0 and exit_s <= MASS_SIGTERM_TARGET_S,
    )


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


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)
