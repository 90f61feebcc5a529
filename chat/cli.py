"""The server's command line: argparse builds a `Config` once, from the defaults in chat/config.py.

Also what only a process needs: logging, the open-files limit, thread stacks, the GIL switch
interval and signals. `python -m chat.server` and `chat-server` run `main`.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import fields
from typing import Final

from chat.admission import Network, parse_networks
from chat.config import DELIVERY_KINDS, Config
from chat.server import ChatServer
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
# Descriptors the process needs besides its clients' sockets (listener, wake pipes, selectors,
# log files, a spare for refusing clients when out of descriptors).
RESERVED_FDS: Final = 64


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-server",
        description="A multi-user TCP chat server, one thread per client (docs/PROTOCOL.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default=DEFAULTS.host, help="address to listen on (use ::1 for IPv6 loopback)")
    add("--port", type=_port, default=DEFAULTS.port, help="TCP port; 0 picks a free one")
    add(
        "--max-line",
        type=_positive_int,
        default=DEFAULTS.max_line,
        help="longest line a client may send, in bytes; longer lines are discarded with an error",
    )
    add(
        "--max-pending",
        type=_positive_int,
        default=DEFAULTS.max_pending,
        help="bytes queued for one client whose kernel buffers are full before it is "
        "disconnected as a slow consumer",
    )
    add(
        "--write-deadline",
        type=_positive_float,
        default=DEFAULTS.write_deadline,
        help="seconds a client whose kernel buffers are full may take no byte at all before it "
        "is disconnected as a slow consumer",
    )
    add(
        "--max-queued-total",
        type=_positive_int,
        default=DEFAULTS.max_queued_total,
        help="bytes queued for all clients together (real cost); over it the clients holding "
        "the most are disconnected, biggest first",
    )
    add(
        "--handshake-timeout",
        type=_positive_float,
        default=DEFAULTS.handshake_timeout,
        help="seconds a new connection has to get a name accepted",
    )
    add(
        "--max-clients",
        type=_positive_int,
        default=DEFAULTS.max_clients,
        help="connections at once; one more gets 'server full' and is closed",
    )
    add(
        "--notice-limit",
        type=int,
        default=DEFAULTS.notice_limit,
        help="join/leave notices stop while more than this many clients are online",
    )
    add(
        "--delivery",
        choices=DELIVERY_KINDS,
        default=DEFAULTS.delivery,
        help="queued: byte-bounded per-client queues, coalesced writes from writer threads; "
        "inline: the original design, each sender writes to every socket itself (a baseline)",
    )
    add(
        "--writers",
        type=_positive_int,
        default=DEFAULTS.writers,
        help="writer threads for queued delivery",
    )
    add(
        "--flood-rate",
        type=_non_negative_int,
        default=DEFAULTS.flood_rate,
        help="bytes per second a client may make the server send (each line counted once per "
        "recipient, plus 64 per line); over it the server stops reading from that client for a "
        "while. 0 turns flood control off",
    )
    add(
        "--max-per-address",
        type=_non_negative_int,
        default=DEFAULTS.max_per_address,
        help="connections at once from one address (0: no limit); exempt addresses aside",
    )
    add(
        "--new-per-address",
        type=_non_negative_int,
        default=DEFAULTS.new_per_address,
        help="new connections per minute from one address (0: no limit); exempt addresses aside",
    )
    add(
        "--exempt",
        type=_networks,
        default=",".join(map(str, DEFAULTS.exempt)),
        help="comma-separated addresses or networks the per-address limits do not apply to "
        "('' for none)",
    )
    add(
        "--max-unnamed",
        type=_positive_int,
        default=DEFAULTS.max_unnamed,
        help="connections still without a name; one more pushes out the one waiting longest",
    )
    add(
        "--flood-burst",
        type=_positive_int,
        default=DEFAULTS.flood_burst,
        help="bytes a client may make the server send at once before --flood-rate applies",
    )
    add(
        "--switch-interval",
        type=_positive_float,
        default=SWITCH_INTERVAL_S,
        help="CPython's GIL switch interval in seconds (sys.setswitchinterval); longer keeps a "
        "mass disconnect of thousands of threads cheap",
    )
    add(
        "--lang",
        choices=("en", "ru"),
        default=None,
        help="language of notices (default: from the locale, else en)",
    )
    add(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level",
    )
    add(
        "--quiet",
        action="store_true",
        help="log warnings only (same as --log-level WARNING), for benchmarks",
    )
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run a server until SIGINT or SIGTERM; the exit status."""
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
    server = ChatServer(config)
    try:
        host, port = server.bind()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror or exc)
        return 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    ready_log.info("listening on %s:%s", host, port)
    server.serve_forever()
    log.info("shutting down")
    # Hundreds of busy threads each hold the GIL for a whole switch interval: at 50 ms the main
    # thread waited seconds for its turn to say goodbye. From here on, short turns.
    sys.setswitchinterval(SHUTDOWN_SWITCH_INTERVAL_S)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
