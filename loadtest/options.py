"""The `--chat-*` command-line options (registered with Locust on import) and `--host` parsing."""

from __future__ import annotations

import argparse
from typing import Any

from locust import events
from locust.env import Environment

from chat.protocol import MAX_LINE_BYTES
from loadtest.ledger import DRAIN_QUIET_S

MAX_PORT = 65535

DEFAULTS: dict[str, Any] = {
    "chat_room_rate": 10.0,
    "chat_message_bytes": 64,
    "chat_drain_s": 5.0,
    "chat_deliver_sample": 1,
    "chat_clock": "monotonic",
    "chat_latency_to": "arrival",
    "chat_connect_timeout_s": 10.0,
    "chat_name_prefix": "u",
    "chat_summary": "",
    "chat_room_users": 0,
}


@events.init_command_line_parser.add_listener
def add_chat_options(parser: argparse.ArgumentParser, **_kw: Any) -> None:
    """The `--chat-*` options; they show in `--help` and in the web UI."""
    parser.add_argument(
        "--chat-room-rate",
        type=float,
        default=DEFAULTS["chat_room_rate"],
        help="messages per second from the whole room, shared by all users (0: everyone only "
        "listens). Each user waits an exponential time with mean USERS/RATE. Default 10",
    )
    parser.add_argument(
        "--chat-message-bytes",
        type=int,
        default=DEFAULTS["chat_message_bytes"],
        help=f"length of each message in bytes, at most {MAX_LINE_BYTES}. Default 64",
    )
    parser.add_argument(
        "--chat-drain-s",
        type=float,
        default=DEFAULTS["chat_drain_s"],
        help="at the end, the longest time to keep reading after sending stopped (it ends "
        f"earlier, once nothing arrived for {DRAIN_QUIET_S} s). Default 5",
    )
    parser.add_argument(
        "--chat-deliver-sample",
        type=int,
        default=DEFAULTS["chat_deliver_sample"],
        help="report every Nth received message as a `deliver` request (all are still checked "
        "for loss). Raise it when Locust's CPU is the limit. Default 1",
    )
    parser.add_argument(
        "--chat-clock",
        choices=["monotonic", "wall"],
        default=DEFAULTS["chat_clock"],
        help="clock in the messages: monotonic (one clock per machine; deliveries between "
        "machines are checked but not timed) or wall (time of day; times deliveries between "
        "machines too, with their clock offset as error). Default monotonic",
    )
    parser.add_argument(
        "--chat-latency-to",
        choices=["arrival", "read"],
        default=DEFAULTS["chat_latency_to"],
        help="where `deliver` ends: arrival (when the bytes reached this machine, by the "
        "kernel's receive timestamp on Linux, so Locust's own delays are left out; their size is "
        "in the summary as read lag) or read (when Locust got to read them). Default arrival",
    )
    parser.add_argument(
        "--chat-connect-timeout-s",
        type=float,
        default=DEFAULTS["chat_connect_timeout_s"],
        help="connect plus join must finish within this. Default 10",
    )
    parser.add_argument(
        "--chat-name-prefix",
        type=str,
        default=DEFAULTS["chat_name_prefix"],
        help="start of every user's name (the rest makes it unique). Default u",
    )
    parser.add_argument(
        "--chat-summary",
        type=str,
        default=DEFAULTS["chat_summary"],
        help="write the end-of-run summary (delivery check, server /stats, Locust CPU) as JSON",
    )
    # Set by the master so every worker paces its users for the whole room, not its own share.
    parser.add_argument(
        "--chat-room-users", type=int, default=0, help=argparse.SUPPRESS, include_in_web_ui=False
    )


def parse_address(host: str | None) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `tcp://HOST:PORT` as a socket address."""
    if not host:
        raise ValueError("give the chat server as --host HOST:PORT, e.g. --host 127.0.0.1:5555")
    rest = host.split("://", 1)[-1].rstrip("/")
    name, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--host {host!r} has no port; use HOST:PORT, e.g. 127.0.0.1:5555")
    if not 1 <= int(port) <= MAX_PORT:
        raise ValueError(f"--host {host!r}: the port must be 1-{MAX_PORT}, not {int(port)}")
    return name.strip("[]") or "127.0.0.1", int(port)


def options_of(environment: Environment) -> Any:
    """The run's options; the defaults when nothing parsed any."""
    if environment.parsed_options is None:  # an Environment built by hand, e.g. in a script
        environment.parsed_options = argparse.Namespace(**DEFAULTS)
    return environment.parsed_options
