"""The chat server's own `/stats`: read them over the protocol, cross-check the run with them."""

from __future__ import annotations

import logging
import socket
import time

from chat.protocol import LineDecoder, encode_line, parse_stats
from loadtest.client import RECV_BYTES, SERVER_LINE_LIMIT_BYTES
from loadtest.identity import unique_name

log = logging.getLogger("chat_user")

STATS_TIMEOUT_S = 3.0


def fetch_server_stats(address: tuple[str, int], timeout_s: float = STATS_TIMEOUT_S) -> dict | None:
    """Join briefly, ask `/stats`, leave. None (and a warning) when that does not work."""
    decoder = LineDecoder(SERVER_LINE_LIMIT_BYTES)
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            sock.sendall(encode_line(unique_name("stats")) + encode_line("/stats"))
            while time.monotonic() < deadline:
                data = sock.recv(RECV_BYTES)
                if not data:
                    break
                for raw in decoder.feed(data):
                    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
                    if text.startswith("! "):
                        log.warning("/stats refused: %s", text)
                        return None
                    if text.startswith("* stats: "):
                        sock.sendall(b"/quit\n")
                        return parse_stats(text[2:])
    except OSError as exc:
        log.warning("could not read the server's /stats: %s", exc)
    return None


def server_cross_check(start: dict | None, end: dict | None, check: dict) -> dict | None:
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
