"""The chat server's own `/stats`: read them over the protocol, cross-check the run with them."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

from chat.protocol import (
    LEAVE_LINE,
    STATS_COMMAND,
    Accepted,
    ClientHandshake,
    LineDecoder,
    NameRefused,
    command_line,
    encode_line,
    parse_server_line,
    password_line,
    stats_reply,
)
from loadtest.client import RECV_BYTES, SERVER_LINE_LIMIT_BYTES
from loadtest.identity import unique_name

log = logging.getLogger("chat_user")

STATS_TIMEOUT_S = 3.0
# Chat lines the server delivered to a /stats visit itself, before and after its reply: the
# server counts them in deliveries_out, the users never see them.
VISIT_BEFORE = "visit_deliveries_before_reply"
VISIT_AFTER = "visit_deliveries_after_reply"


class StatsRefused(Exception):
    """The server answered the visit with an error line."""


def fetch_server_stats(
    address: tuple[str, int],
    tls: ssl.SSLContext | None = None,
    password: str | None = None,
    timeout_s: float = STATS_TIMEOUT_S,
) -> dict[str, float] | None:
    """Join briefly (over TLS with `tls`, presenting `password`), ask `/stats`, leave. None
    (and a warning) when that does not work."""
    deadline = time.monotonic() + timeout_s
    visit = encode_line(unique_name("stats")) + encode_line(command_line(STATS_COMMAND))
    if password is not None:
        visit = encode_line(password_line(password)) + visit
    try:
        with socket.create_connection(address, timeout=timeout_s) as raw:
            sock = raw if tls is None else tls.wrap_socket(raw, server_hostname=address[0])
            sock.sendall(visit)
            lines = _server_lines(sock, deadline)
            stats = _stats_reply(lines)
            if stats is not None:
                sock.sendall(encode_line(LEAVE_LINE))
                stats[VISIT_AFTER] = _wait_until_closed(lines, deadline)
            return stats
    except StatsRefused as exc:
        log.warning("/stats refused: %s", exc)
    except OSError as exc:
        log.warning("could not read the server's /stats: %s", exc)
    return None


def _stats_reply(lines: Iterator[str]) -> dict[str, float] | None:
    """The counters from the lines after joining, with the chat lines this visit was delivered
    before the reply (VISIT_BEFORE); StatsRefused on an error line."""
    handshake = ClientHandshake()
    joined = False
    delivered = 0
    for line in lines:
        if not joined:
            answer = handshake.line_received(line)
            if isinstance(answer, NameRefused):
                raise StatsRefused(answer.reason)
            joined = isinstance(answer, Accepted)
            continue
        parsed = parse_server_line(line)
        if parsed.kind == "error":
            raise StatsRefused(parsed.text)
        stats = stats_reply(line)
        if stats is not None:
            stats[VISIT_BEFORE] = delivered
            return stats
        delivered += parsed.kind in ("chat", "private")
    return None


def _wait_until_closed(lines: Iterator[str], deadline: float) -> int:
    """Read until the server closes a leaving client's connection (it is out of the room: from
    then on no delivery to this visit is counted); the chat lines delivered meanwhile."""
    delivered = 0
    with contextlib.suppress(OSError):
        for line in lines:
            delivered += parse_server_line(line).kind in ("chat", "private")
    return delivered


def _server_lines(sock: socket.socket, deadline: float) -> Iterator[str]:
    """The server's lines until it closes or the deadline passes (over-long ones skipped)."""
    decoder = LineDecoder(SERVER_LINE_LIMIT_BYTES)
    while (remaining_s := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining_s)
        data = sock.recv(RECV_BYTES)
        if not data:
            return
        for raw in decoder.feed(data):
            if isinstance(raw, bytes):
                yield raw.decode("utf-8", "replace")


def server_cross_check(
    start: dict[str, float] | None, end: dict[str, float] | None, check: dict[str, int]
) -> dict[str, Any] | None:
    """The server's counters over the run next to what the users counted; None without both."""
    if start is None or end is None:
        return None
    counters = [k for k in end if k in start and k != "uptime_s" and not k.startswith("visit_")]
    delta = {k: end[k] - start[k] for k in counters}
    # Between the two replies the server also delivered to the visits themselves: after the
    # first one's reply (it was still leaving) and before the last one's.
    visits = start.get(VISIT_AFTER, 0) + end.get(VISIT_BEFORE, 0)
    # A node of a cluster (--bus) also gives the whole cluster's counters, which are what the
    # users' counts compare with when they are spread over the nodes.
    scope = "cluster_" if "cluster_messages_in" in delta else ""
    for key in ("deliveries_out", "cluster_deliveries_out"):
        if key in delta or key == "deliveries_out":
            delta[key] = delta.get(key, 0) - visits
    return {
        "start": start,
        "end": end,
        "delta": delta,
        "scope": "cluster" if scope else "server",
        # Anyone else in the room is counted by the server too: small differences are expected
        # then, large ones are worth a look.
        "messages_in_minus_sent": delta.get(f"{scope}messages_in", 0) - check["sent"],
        "deliveries_out_minus_received": delta.get(f"{scope}deliveries_out", 0) - check["received"],
    }
