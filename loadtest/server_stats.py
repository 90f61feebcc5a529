"""The chat server's own `/stats`: read them over the protocol, cross-check the run with them."""

from __future__ import annotations

import contextlib
import logging
import socket
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
    stats_reply,
)
from loadtest.client import RECV_BYTES, SERVER_LINE_LIMIT_BYTES
from loadtest.identity import unique_name

log = logging.getLogger("chat_user")

STATS_TIMEOUT_S = 3.0


class StatsRefused(Exception):
    """The server answered the visit with an error line."""


def fetch_server_stats(
    address: tuple[str, int], timeout_s: float = STATS_TIMEOUT_S
) -> dict[str, float] | None:
    """Join briefly, ask `/stats`, leave. None (and a warning) when that does not work."""
    deadline = time.monotonic() + timeout_s
    visit = encode_line(unique_name("stats")) + encode_line(command_line(STATS_COMMAND))
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            sock.sendall(visit)
            stats = _stats_reply(_server_lines(sock, deadline))
            if stats is not None:
                sock.sendall(encode_line(LEAVE_LINE))
                _wait_until_closed(sock, deadline)
            return stats
    except StatsRefused as exc:
        log.warning("/stats refused: %s", exc)
    except OSError as exc:
        log.warning("could not read the server's /stats: %s", exc)
    return None


def _stats_reply(lines: Iterator[str]) -> dict[str, float] | None:
    """The counters from the lines after joining; StatsRefused on an error line."""
    handshake = ClientHandshake()
    joined = False
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
            return stats
    return None


def _wait_until_closed(sock: socket.socket, deadline: float) -> None:
    """The server closes a leaving client's connection once it is out of the room: from then on
    it counts no delivery to this visit, so the visit cannot blur the cross-check."""
    with contextlib.suppress(OSError):
        for _line in _server_lines(sock, deadline):
            pass


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
    delta = {k: end[k] - start[k] for k in end if k in start and k != "uptime_s"}
    return {
        "start": start,
        "end": end,
        "delta": delta,
        # The server also counts what this check's own /stats visits caused, and anyone else in
        # the room: small differences are expected, large ones are worth a look.
        "messages_in_minus_sent": delta.get("messages_in", 0) - check["sent"],
        "deliveries_out_minus_received": delta.get("deliveries_out", 0) - check["received"],
    }
