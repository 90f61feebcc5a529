"""The `--chat-*` command-line options (registered with Locust on import) and `--host` parsing.

Every value is checked as it is parsed, so a bad one (`--chat-room-rate -1`, `--chat-message-bytes
0`, `nan`, a `--chat-hosts` entry without a port) is a one-line usage error, status 2, before
anything starts. `chat_addresses` says where users connect: `--chat-hosts` (the nodes of a
cluster, users spread over them) or `--host`; `user_host_index` which one a given user takes.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import ssl
from collections.abc import Callable
from typing import Any

from locust import events
from locust.env import Environment

from chat.password import PASSWORD_ENV
from chat.protocol import MAX_LINE_BYTES, MAX_NAME_CHARS, name_problem
from chat.tls import client_context
from loadtest.ledger import DRAIN_QUIET_S

MAX_PORT = 65535
GROUP_TITLE = "Chat load test options (loadtest/chat_user.py)"
# The longest tail unique_name adds: "-" + 4-character clock tag + process token + "-" + count.
NAME_SUFFIX_SAMPLE = "-abcd2hkhs0z-999999"

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
    "chat_tls": False,
    "chat_ca": "",
    "chat_room_users": 0,
    "chat_hosts": "",
}
HOSTS_EXAMPLE = "127.0.0.1:5555,127.0.0.1:5556"
Address = tuple[str, int]


def _number(kind: Callable[[str], float], low: float, low_included: bool) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` at or above `low` (strictly above unless included)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if not (value >= low if low_included else value > low):
            bound = f"{low:g} or more" if low_included else f"above {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def _name_prefix(text: str) -> str:
    problem = name_problem(text + NAME_SUFFIX_SAMPLE)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{text!r} makes names the server refuses ({problem}): use letters, digits, _ - . "
            f"and at most {MAX_NAME_CHARS - len(NAME_SUFFIX_SAMPLE)} characters"
        )
    return text


def _hosts(text: str) -> str:
    """An argparse type: `H1:P1,H2:P2,...`, each as `--host` takes it; kept as given ("": not
    given, --host applies)."""
    if not text:
        return text
    try:
        parse_hosts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add(group: argparse._ArgumentGroup, *flags: str, **kwargs: Any) -> None:
    # Locust's web UI lists an option when its action says so; Locust's own add_argument sets
    # these, an argument group's does not.
    action = group.add_argument(*flags, **kwargs)
    action.include_in_web_ui = True  # type: ignore[attr-defined]
    action.is_secret = action.is_required = action.is_multiple = False  # type: ignore[attr-defined]


# The `--chat-*` options in `--help` order: (flag, add_argument keywords).
CHAT_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--chat-hosts",
        dict(
            metavar="H1:P1,H2:P2",
            type=_hosts,
            default=DEFAULTS["chat_hosts"],
            help="the servers (the nodes of one cluster) to spread the users over, instead of "
            "--host: in each Locust process its Nth user joins host N mod the number of hosts "
            "(worker W starts at host W), so the hosts get as many users each, give or take one "
            "per process",
        ),
    ),
    (
        "--chat-room-rate",
        dict(
            metavar="RATE",
            type=_number(float, 0, low_included=True),
            default=DEFAULTS["chat_room_rate"],
            help="messages per second from the whole room, shared by all users (0: everyone "
            "only listens). Each user waits an exponential time with mean USERS/RATE. Default 10",
        ),
    ),
    (
        "--chat-message-bytes",
        dict(
            metavar="BYTES",
            type=_number(int, 1, low_included=True),
            default=DEFAULTS["chat_message_bytes"],
            help="length of each message in bytes (never shorter than its sequence number and "
            "time stamp, about 25 bytes); the server discards lines over its --max-line, "
            f"{MAX_LINE_BYTES} by default. Default 64",
        ),
    ),
    (
        "--chat-drain-s",
        dict(
            metavar="SECONDS",
            type=_number(float, 0, low_included=False),
            default=DEFAULTS["chat_drain_s"],
            help="at the end, the longest time to keep reading after sending stopped (it ends "
            f"earlier, once nothing arrived for {DRAIN_QUIET_S} s). Default 5",
        ),
    ),
    (
        "--chat-deliver-sample",
        dict(
            metavar="N",
            type=_number(int, 1, low_included=True),
            default=DEFAULTS["chat_deliver_sample"],
            help="report every Nth received message as a `deliver` request (all are still "
            "checked for loss). Raise it when Locust's CPU is the limit. Default 1",
        ),
    ),
    (
        "--chat-clock",
        dict(
            choices=["monotonic", "wall"],
            default=DEFAULTS["chat_clock"],
            help="clock in the messages: monotonic (one clock per machine; deliveries between "
            "machines are checked but not timed) or wall (time of day; times deliveries "
            "between machines too, with their clock offset as error). Default monotonic",
        ),
    ),
    (
        "--chat-latency-to",
        dict(
            choices=["arrival", "read"],
            default=DEFAULTS["chat_latency_to"],
            help="where `deliver` ends: arrival (when the bytes reached this machine, by the "
            "kernel's receive timestamp on Linux, so Locust's own delays are left out; their "
            "size is in the summary as read lag) or read (when Locust got to read them). "
            "Default arrival",
        ),
    ),
    (
        "--chat-connect-timeout-s",
        dict(
            metavar="SECONDS",
            type=_number(float, 0, low_included=False),
            default=DEFAULTS["chat_connect_timeout_s"],
            help="connect plus join must finish within this. Default 10",
        ),
    ),
    (
        "--chat-name-prefix",
        dict(
            metavar="PREFIX",
            type=_name_prefix,
            default=DEFAULTS["chat_name_prefix"],
            help="start of every user's name (the rest makes it unique). Default u",
        ),
    ),
    (
        "--chat-tls",
        dict(
            action="store_true",
            default=DEFAULTS["chat_tls"],
            help="connect over TLS (the system's trusted CAs, or --chat-ca). A server password is "
            "taken from $CHAT_PASSWORD, never from the command line. Arrival times need a plain "
            "socket, so over TLS `deliver` ends when Locust reads",
        ),
    ),
    (
        "--chat-ca",
        dict(
            metavar="FILE",
            type=str,
            default=DEFAULTS["chat_ca"],
            help="trust the certificate authority in FILE (PEM); implies --chat-tls",
        ),
    ),
    (
        "--chat-summary",
        dict(
            metavar="PATH",
            type=str,
            default=DEFAULTS["chat_summary"],
            help="write the end-of-run summary (delivery check, server /stats, Locust CPU) as JSON",
        ),
    ),
)


@events.init_command_line_parser.add_listener
def add_chat_options(parser: argparse.ArgumentParser, **_kw: Any) -> None:
    """The `--chat-*` options, under their own heading in `--help`; the web UI shows them too."""
    group = parser.add_argument_group(
        GROUP_TITLE, "How the simulated people chat, and how the run is checked."
    )
    for flag, settings in CHAT_OPTIONS:
        _add(group, flag, **settings)
    # Set by the master so every worker paces its users for the whole room, not its own share.
    parser.add_argument(
        "--chat-room-users",
        type=_number(int, 0, low_included=True),
        default=0,
        help=argparse.SUPPRESS,
        include_in_web_ui=False,
    )


def parse_address(host: str | None, option: str = "--host") -> Address:
    """`HOST:PORT`, `[V6]:PORT` or `tcp://HOST:PORT` as a socket address."""
    if not host:
        raise ValueError("give the chat server as --host HOST:PORT, e.g. --host 127.0.0.1:5555")
    rest = host.split("://", 1)[-1].rstrip("/")
    name, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{option} {host!r} has no port; use HOST:PORT, e.g. 127.0.0.1:5555")
    if not 1 <= int(port) <= MAX_PORT:
        raise ValueError(f"{option} {host!r}: the port must be 1-{MAX_PORT}, not {int(port)}")
    return name.strip("[]") or "127.0.0.1", int(port)


def parse_hosts(text: str) -> list[Address]:
    """`--chat-hosts`: comma-separated `HOST:PORT`s (a host may be given twice)."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ValueError(f"no host given; use H1:P1,H2:P2, e.g. {HOSTS_EXAMPLE}")
    if not all(items):
        raise ValueError(f"{text!r} has an empty entry; use H1:P1,H2:P2, e.g. {HOSTS_EXAMPLE}")
    return [parse_address(item, "host") for item in items]


def chat_addresses(options: Any, host: str | None) -> list[Address]:
    """Where the users connect: `--chat-hosts`, or else `--host` (ValueError: one line, why not).

    Both given: `--host` must be one of the hosts (Locust's web UI always sends one)."""
    hosts = getattr(options, "chat_hosts", "")
    if not hosts:
        return [parse_address(host)]
    addresses = parse_hosts(hosts)
    if host and parse_address(host) not in addresses:
        raise ValueError(
            f"--host {host!r} is not one of --chat-hosts {hosts!r}: give one or the other"
        )
    return addresses


def user_host_index(hosts: int, worker_index: int, user_number: int) -> int:
    """Which of `hosts` a process's `user_number`th user (from 0) joins: worker W's users take
    the hosts in turn from host W, so every process spreads its users evenly, and all of them
    together too (a single process is worker 0: user i joins host i mod the number of hosts)."""
    return (max(worker_index, 0) + user_number) % hosts


def options_of(environment: Environment) -> Any:
    """The run's options; the defaults when nothing parsed any."""
    if environment.parsed_options is None:  # an Environment built by hand, e.g. in a script
        environment.parsed_options = argparse.Namespace(**DEFAULTS)
    return environment.parsed_options


def connection_settings(options: Any) -> tuple[ssl.SSLContext | None, str | None]:
    """How users (and the /stats visits) connect: the TLS context (--chat-tls, --chat-ca) or
    None, and the server password from $CHAT_PASSWORD (never from the command line) or None."""
    tls = options.chat_tls or bool(options.chat_ca)
    return (_tls_context(options.chat_ca) if tls else None), os.environ.get(PASSWORD_ENV)


@functools.cache
def _tls_context(ca_file: str) -> ssl.SSLContext:
    """One context per process (loading the trust store is slow), shared by every user."""
    return client_context(ca_file or None)
