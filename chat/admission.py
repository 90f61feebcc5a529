"""Who may connect: limits per source address, at once and new per minute, with exempt networks.

One address must not be able to fill the server (IRC daemons such as Ergo allow 16 connections at
once and a few dozen new ones per window from one address, and exempt localhost). The accept loop
asks `admit` for every connection and each connection's end calls `release`. No sockets here.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Final

from chat.flood import FloodBudget

MAX_PER_ADDRESS: Final = 16
NEW_PER_ADDRESS_PER_MIN: Final = 32
EXEMPT_NETWORKS: Final = ("127.0.0.1/32", "::1/128")  # this machine's own default address only
# Remembered addresses that have been idle long enough to have their full allowance back are
# forgotten once this many are remembered, so a scan from many addresses cannot grow the table.
MAX_REMEMBERED: Final = 10_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`"127.0.0.1, 10.0.0.0/8"` -> networks; ValueError naming the bad entry. Empty: none."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"not an address or network: {item!r}") from None
    return tuple(out)


class Admission:
    """Per-address connection limits. `admit` returns None or why not (a texts key)."""

    def __init__(
        self, max_per_address: int, new_per_minute: int, exempt: Iterable[Network]
    ) -> None:
        self.max_per_address = max_per_address
        self.new_per_minute = new_per_minute
        self.exempt = tuple(exempt)
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()
        self._recent: dict[str, FloodBudget] = {}

    def is_exempt(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.exempt)

    def admit(self, host: str, now: float) -> str | None:
        """Count a new connection from `host`, or say why it is refused: "address_busy" (too many
        at once) or "address_rate" (too many new ones this minute). Refused ones count nowhere."""
        if self.is_exempt(host):
            return None
        with self._lock:
            if self.max_per_address and self._open[host] >= self.max_per_address:
                return "address_busy"
            budget = self._recent.get(host)
            if budget is None:
                self._forget_idle(now)
                rate = self.new_per_minute / 60
                budget = self._recent[host] = FloodBudget(rate, self.new_per_minute, now)
            if budget.available(now) < 1:
                return "address_rate"
            budget.charge(1, now)
            self._open[host] += 1
        return None

    def release(self, host: str) -> None:
        """A connection `admit` let in has ended."""
        if self.is_exempt(host):
            return
        with self._lock:
            self._open[host] -= 1
            if self._open[host] <= 0:
                del self._open[host]

    def _forget_idle(self, now: float) -> None:
        if len(self._recent) < MAX_REMEMBERED:
            return
        full = self.new_per_minute
        for host in [h for h, b in self._recent.items() if b.available(now) >= full]:
            if host not in self._open:
                del self._recent[host]
