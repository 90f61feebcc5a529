"""Everything a server can be told, with every default in one place.

The command line (chat/cli.py) builds a `Config` from these fields; tests and embedders build one
directly. Limits that belong to one concern keep their constant in that concern's module
(flood.py, admission.py, delivery.py, protocol.py) and are gathered here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chat import protocol
from chat.admission import (
    EXEMPT_NETWORKS,
    MAX_PER_ADDRESS,
    NEW_PER_ADDRESS_PER_MIN,
    Network,
    parse_networks,
)
from chat.bus_names import LEASE_S, MAX_BUFFERED_ENTRIES
from chat.delivery import MAX_QUEUED_TOTAL_BYTES, WRITE_DEADLINE_S
from chat.flood import FLOOD_BURST_BYTES, FLOOD_RATE_BYTES_PER_S

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5555
MAX_PENDING_BYTES: Final = 16 * 1024 * 1024
HANDSHAKE_TIMEOUT_S: Final = 30.0
MAX_CLIENTS: Final = 10_000
# Connections still without a name: never more than this, so they cannot fill the server. A new
# one over it pushes out the one that has waited longest (real clients name themselves at once).
MAX_UNNAMED: Final = 1_000
NOTICE_LIMIT: Final = 1_000
DELIVERY_KINDS: Final = ("queued", "inline")


@dataclass
class Config:
    """Everything a server can be told; each field is the command-line option of the same name."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_line: int = protocol.MAX_LINE_BYTES
    max_pending: int = MAX_PENDING_BYTES
    write_deadline: float = WRITE_DEADLINE_S
    max_queued_total: int = MAX_QUEUED_TOTAL_BYTES
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S
    max_clients: int = MAX_CLIENTS
    notice_limit: int = NOTICE_LIMIT
    max_per_address: int = MAX_PER_ADDRESS
    new_per_address: int = NEW_PER_ADDRESS_PER_MIN
    exempt: tuple[Network, ...] = parse_networks(",".join(EXEMPT_NETWORKS))
    max_unnamed: int = MAX_UNNAMED
    flood_rate: int = FLOOD_RATE_BYTES_PER_S
    flood_burst: int = FLOOD_BURST_BYTES
    delivery: str = "queued"
    writers: int = 1
    lang: str = "en"
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_port: int | None = None
    password_file: str | None = None
    bus: str | None = None
    node_name: str | None = None
    bus_buffer: int = MAX_BUFFERED_ENTRIES
    bus_lease: float = LEASE_S
