"""Unique user names, and which senders share this machine's monotonic clock (by their names)."""

from __future__ import annotations

import hashlib
import os
import random
import socket
from pathlib import Path


def _clock_tag() -> str:
    """Four hex digits naming this machine's monotonic clock (same kernel boot, same clock)."""
    try:
        seed = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        seed = socket.gethostname()
    return hashlib.sha1(seed.encode()).hexdigest()[:4]


CLOCK_TAG = _clock_tag()
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_identity = {"pid": 0, "token": "", "count": 0}


def _base36(n: int) -> str:
    digits = ""
    while True:
        n, digit = divmod(n, 36)
        digits = _ALPHABET[digit] + digits
        if not n:
            return digits


def unique_name(prefix: str) -> str:
    """`PREFIX-TAGTOKEN-N`: TAG names the machine's clock, TOKEN the process (pid and two random
    characters), N counts up. Unique across processes and, with TAG, across machines."""
    if _identity["pid"] != os.getpid():  # locust forks workers after importing this file
        token = _base36(os.getpid()) + "".join(random.choices(_ALPHABET, k=2))
        _identity.update(pid=os.getpid(), token=token, count=0)
    _identity["count"] += 1
    return f"{prefix}-{CLOCK_TAG}{_identity['token']}-{_identity['count']}"


def same_clock(sender: str) -> bool:
    """Whether `sender`'s stamps come from this machine's monotonic clock (by its name)."""
    parts = sender.rsplit("-", 2)
    return len(parts) == 3 and parts[1][:4] == CLOCK_TAG
