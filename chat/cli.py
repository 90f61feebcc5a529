"""The server's command line: argparse builds a `Config` once, from the defaults in chat/config.py.

Also what only a process needs: logging, the open-files limit, thread stacks, the GIL switch
interval and signals. `python -m chat.server` and `chat-server` run `main`.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Final

from chat.admission import Network, parse_networks
from chat.config import DELIVERY_KINDS, Config
from chat.password import hash_password_main
from chat.server import ChatServer, SetupError
from chat.texts import default_lang

log = logging.getLogger("chat.server")
ready_log = logging.getLogger("chat.server.ready")  # `listening on`, shown even with --quiet

DEFAULTS: Final = Config()
THREAD_STACK_BYTES: Final = 256 * 1024
# CPython's default 5 ms GIL switch interval makes every thread that waits for the GIL wake every
# 5 ms. When thousands of reader threads become runnable at once (a mass disconnect), those timed
# wake-ups swamp the machine: 10,000 leaves took 5-9 s and SIGTERM then missed its 2 s. Our threads
# release the GIL at every recv and send, so a longer interval rarely forces a switch otherwise.
SWITCH_INTERVAL_S: Final = 0.05
SHUTDOWN_SWITCH_INTERVAL_S: Final = 0.001
# Linux 6.16+ gives each process a private futex hash table (prctl PR_FUTEX_HASH), sized for a
# few threads. With thousands of session threads parked on their own locks (chat/parking.py) its
# chains grow long and every futex wake in the process walks them, the GIL's hand-offs included:
# a GIL round trip between two threads took 29 us with no parked threads and 160 us with 10,000.
# Zero slots selects the system-wide table, as every kernel before 6.16 did: 34 us with 10,000.
PR_FUTEX_HASH: Final = 78
PR_FUTEX_HASH_SET_SLOTS: Final = 1
# Descriptors the process needs besides its clients' sockets (listener, wake pipes, selectors,
# log files, a spare for refusing clients when out of descriptors).
RESERVED_FDS: Final = 64


def build_parser() -> argparse.ArgumentParser:
    """Every option: the Config fields by group (from CONFIG_OPTIONS), then the process's own."""
    parser = argparse.ArgumentParser(
        prog="chat-server",
        description="A multi-user TCP chat server, one thread per client (docs/PROTOCOL.md).",
        epilog="`chat-server hash-password > FILE` writes a --password-file: the password is "
        "read without echo, or as the first line of standard input when it is not a terminal.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for title, options in CONFIG_OPTIONS.items():
        group = parser.add_argument_group(title)
        for name, kind, help_text in options:
            flag = "--" + name.replace("_", "-")
            default = getattr(DEFAULTS, name)
            if name == "exempt":  # parsed from text like the rest, so --help shows it as typed
                default = ",".join(map(str, default))
            if isinstance(kind, tuple):
                group.add_argument(flag, choices=kind, default=default, help=help_text)
            else:
                group.add_argument(flag, type=kind, default=default, help=help_text)
    _add_process_options(parser.add_argument_group("process"))
    return parser


def _add_process_options(group: argparse._ArgumentGroup) -> None:
    """What is not the server's Config: the GIL, the language's default, logging."""
    group.add_argument(
        "--switch-interval",
        type=_positive_float,
        default=SWITCH_INTERVAL_S,
        help="CPython's GIL switch interval in seconds (sys.setswitchinterval); longer keeps a "
        "mass disconnect of thousands of threads cheap",
    )
    group.add_argument(
        "--lang",
        choices=("en", "ru"),
        default=None,
        help="language of notices (default: from the locale, else en)",
    )
    group.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level",
    )
    group.add_argument(
        "--quiet",
        action="store_true",
        help="log warnings only (same as --log-level WARNING), for benchmarks",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (0 < value < math.inf):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _networks(text: str) -> tuple[Network, ...]:
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


# The Config fields as options, by group: (field, type or choices, help). The flag is the field's
# name with dashes; the default is Config's own (chat/config.py), so it is written once.
CONFIG_OPTIONS: Final[
    dict[str, tuple[tuple[str, Callable[[str], object] | tuple[str, ...], str], ...]]
] = {
    "listening": (
        ("host", str, "address to listen on (use ::1 for IPv6 loopback)"),
        ("port", _port, "TCP port; 0 picks a free one"),
    ),
    "TLS and password": (
        ("tls_cert", str, "serve TLS with this certificate chain (PEM), on --port or --tls-port"),
        ("tls_key", str, "the certificate's private key (PEM); default: in --tls-cert's file"),
        ("tls_port", _port, "serve TLS on this port and plain text on --port, side by side"),
        (
            "password_file",
            str,
            "clients must send /pass PASSWORD first; the file holds its salted hash, written "
            "by `python -m chat.server hash-password`",
        ),
    ),
    "several servers, one room (docs/CLUSTER.md)": (
        (
            "bus",
            str,
            "share one room with every server started with the same Redis URL "
            "(redis://[:PASSWORD@]HOST:PORT/DB, rediss:// for TLS); needs redis-py",
        ),
        ("node_name", str, "this server's name on the bus (default: HOSTNAME:PORT)"),
        (
            "bus_buffer",
            _positive_int,
            "events kept for the other servers while the bus is down; beyond it the oldest "
            "are dropped and the others' clients told how many they missed",
        ),
        (
            "bus_lease",
            _positive_float,
            "seconds after its last heartbeat that a silent server's users are announced gone "
            "and their names freed",
        ),
    ),
    "clients and lines": (
        ("max_clients", _positive_int, "connections at once; one more gets 'server full'"),
        (
            "max_line",
            _positive_int,
            "longest line a client may send, in bytes; longer lines are discarded with an error",
        ),
        (
            "handshake_timeout",
            _positive_float,
            "seconds a new connection has to get a name accepted",
        ),
        ("notice_limit", int, "join/leave notices stop while more than this many are online"),
    ),
    "connections per address": (
        (
            "max_per_address",
            _non_negative_int,
            "connections at once from one address (0: no limit); exempt addresses aside",
        ),
        (
            "new_per_address",
            _non_negative_int,
            "new connections per minute from one address (0: no limit); exempt addresses aside",
        ),
        (
            "exempt",
            _networks,
            "comma-separated addresses or networks the per-address limits do "
            "not apply to ('' for none)",
        ),
        (
            "max_unnamed",
            _positive_int,
            "connections still without a name; one more pushes out the one waiting longest",
        ),
    ),
    "flood control": (
        (
            "flood_rate",
            _non_negative_int,
            "bytes per second of work a client may cause: each line it sends costs 256, each "
            "command or name 128 KiB, each delivery its bytes plus 64; over it the server stops "
            "reading from that client for a while. 0 turns it off",
        ),
        (
            "flood_burst",
            _positive_int,
            "bytes of work a client may cause at once before --flood-rate applies",
        ),
    ),
    "delivery": (
        (
            "delivery",
            DELIVERY_KINDS,
            "queued: per-client queues, coalesced writes from writer "
            "threads; inline: the original design, each sender writes to every socket itself",
        ),
        ("writers", _positive_int, "writer threads for queued delivery"),
        (
            "max_pending",
            _positive_int,
            "bytes queued for one client whose kernel buffers are "
            "full before it is disconnected as a slow consumer",
        ),
        (
            "write_deadline",
            _positive_float,
            "seconds a client whose kernel buffers are full may "
            "take no byte at all before it is disconnected as a slow consumer",
        ),
        (
            "max_queued_total",
            _positive_int,
            "bytes queued for all clients together (real "
            "cost); over it the clients holding the most are disconnected, biggest first",
        ),
    ),
}


def raise_open_files_limit() -> int | None:
    """10,000 clients need 10,000 descriptors: lift the soft limit to the hard one. Returns the
    limit in force (None: unlimited or unknown)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %s: %s", soft, exc)
    return None if soft == resource.RLIM_INFINITY else soft


def use_system_futex_hash() -> bool:
    """Use the kernel's system-wide futex hash table instead of a small private one (see
    PR_FUTEX_HASH above). Must run before the first thread starts. False where there is nothing
    to change: another system, a kernel before 6.16, or a libc without prctl."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, 0, 0, 0) == 0)


def _fit_open_files_limit(max_clients: int, open_files: int | None) -> int:
    """Lower `max_clients` to what the open-files limit allows, with a warning: past it, accept
    fails and clients would wait unanswered instead of being told the server is full."""
    if open_files is None or max_clients + RESERVED_FDS <= open_files:
        return max_clients
    fitted = max(1, open_files - RESERVED_FDS)
    log.warning(
        "--max-clients %s does not fit the open-files limit (%s): using %s",
        max_clients,
        open_files,
        fitted,
    )
    return fitted


def _tls_note(server: ChatServer) -> str:
    """What the `listening on HOST:PORT` line adds about TLS: ` (TLS)`, or where TLS listens."""
    if server.tls_address is None:
        return ""
    if server.tls_address == server.server_address:
        return " (TLS)"
    return " and TLS on {}:{}".format(*server.tls_address)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run a server until SIGINT or SIGTERM. Returns the status of a
    failed start (or of `hash-password`); after serving, the process exits 0 from here."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["hash-password"]:
        return hash_password_main()
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else getattr(logging, args.log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", stream=sys.stderr)
    ready_log.setLevel(logging.INFO)
    options = vars(args)
    config = Config(**{f.name: options[f.name] for f in fields(Config)})
    config.lang = args.lang or default_lang()
    config.max_clients = _fit_open_files_limit(config.max_clients, raise_open_files_limit())
    threading.stack_size(THREAD_STACK_BYTES)
    sys.setswitchinterval(args.switch_interval)
    use_system_futex_hash()
    try:
        server = ChatServer(config)
    except SetupError as exc:
        log.error("%s", exc)
        return 1
    try:
        host, port = server.bind()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror or exc)
        return 1
    try:
        server.join_bus()
    except SetupError as exc:
        log.error("%s", exc)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    ready_log.info("listening on %s:%s%s", host, port, _tls_note(server))
    server.serve_forever()
    log.info("shutting down")
    # Hundreds of busy threads each hold the GIL for a whole switch interval: at 50 ms the main
    # thread waited seconds for its turn to say goodbye. From here on, short turns.
    sys.setswitchinterval(SHUTDOWN_SWITCH_INTERVAL_S)
    server.shutdown()
    # Everything worth keeping is sent and flushed. The interpreter's own teardown of thousands
    # of daemon threads and their sessions took 1.7 s of the 2 s a stop may take: leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
