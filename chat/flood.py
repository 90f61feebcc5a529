"""Flood control: what a client may make the server do, and how long its reader waits when over.

Each client has a token bucket measured in the bytes its lines make the server send, counted once
per recipient plus a fixed cost per delivered line (a short line to 50 people costs about what 50
sends cost), plus a fixed cost for every line it sends and a larger one for every command or name
attempt. A chat message costs its size times the room; `/who` and `/help` their reply and a
command's share; a rename its notice times the room. Over budget, the client's reader thread
simply stops reading until the bucket has refilled: TCP's flow control pushes back on the flooder
and nothing queues in the server for it, as IRC daemons' "fakelag" does. Within the budget a busy
reader still rests once it has worked about twice SLICE_S (below) without a pause, so that no client
holds the GIL from the others. Pure arithmetic on a clock the caller passes in: no sockets, no
threads.
"""

from __future__ import annotations

import math
from typing import Final

# What one delivered line costs beyond its bytes: roughly a small send's share of a write call.
LINE_COST_BYTES: Final = 64
# What every line a client sends costs before it is delivered anywhere: reading, framing,
# decoding and classifying it take the server about as long as a few deliveries.
LINE_IN_COST_BYTES: Final = 256
# What a command or a name attempt costs on top: each is Python work of its own (a /who sorts
# the room, a name is checked against PRECIS and the confusables) worth a hundred deliveries or
# more. It holds a script to 64 commands a second (512 at once); nobody types that fast.
COMMAND_COST_BYTES: Final = 128 * 1024
# Sustained rate and burst. A person typing, a paced sender and every burst in bench/ stay far
# inside them (the largest, 10 senders x 500 lines of 1 kB to 100 clients, costs 51 MB each);
# a script at wire speed is held to 8 MiB/s of fan-out: about 3,000 short lines a second into a
# room of 50, a tenth of what the server can deliver on 2 cores.
FLOOD_RATE_BYTES_PER_S: Final = 8 * 1024 * 1024
FLOOD_BURST_BYTES: Final = 64 * 1024 * 1024
# A fair share of the GIL within the budget. CPython takes the GIL from a busy thread only once a
# switch interval (50 ms here, chat/cli.py), and a thread that gets it back after every recv or
# send can keep it much longer. A client spending its burst at wire speed (64 KiB reads of short
# lines, milliseconds of Python each) kept every other thread waiting at each step of a message:
# 50-110 ms of latency for everyone else in the room. So a reader thread that has worked on one
# client's lines for SLICE_S without waiting for more, and then for SLICE_S of its own CPU time
# (a thread that only waited for the GIL is not busy), rests as long as that stretch lasted: no
# client gets much more than half the server, and the others get the GIL between its stretches.
# A person typing or a paced sender waits for its next line long before.
SLICE_S: Final = 0.0005
SLICE_LINES: Final = 64  # chat lines of one read handled between two looks at the clock


def delivery_cost(payload_bytes: int, recipients: int, lines: int = 1) -> int:
    """What sending `lines` lines of `payload_bytes` in all to `recipients` clients costs."""
    return max(1, recipients) * (payload_bytes + lines * LINE_COST_BYTES)


class FloodBudget:
    """A token bucket: `charge` spends, `wait_s` says how long to stop reading before the next line.

    A rate of 0 turns flood control off. The bucket may go into debt (a cost is known only once a
    line is handled); the debt is paid by waiting, so the long-run rate holds exactly.
    """

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def charge(self, cost: float, now: float) -> None:
        """Spend `cost` at time `now` (monotonic seconds)."""
        if self.rate <= 0:
            return
        self._refill(now)
        self._tokens -= cost

    def available(self, now: float) -> float:
        """What may be spent now without waiting (infinite when flood control is off)."""
        if self.rate <= 0:
            return math.inf
        self._refill(now)
        return self._tokens

    def wait_s(self, now: float) -> float:
        """Seconds until the bucket is out of debt; 0 when the client may go on."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
