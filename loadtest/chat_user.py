"""Locust load test for the chat server: simulated people chatting over the raw TCP protocol.

    locust -f loadtest/chat_user.py --host 127.0.0.1:5555                     # web UI on :8089
    locust -f loadtest/chat_user.py --host 127.0.0.1:5555 --headless -u 100 -r 20 -t 1m
    locust -f loadtest/chat_user.py --host 127.0.0.1:5555 --headless ... --processes 2
    locust -f loadtest/chat_user.py --chat-hosts 127.0.0.1:5555,127.0.0.1:5556 --headless ...

Every ChatUser joins under a unique name (with --chat-hosts, on one of the cluster's nodes, users
spread evenly over them), sends probe messages (a sequence number and the sender's
clock, chat/probe.py) at its share of the room's chat rate, and reads everything the server sends.
Rows in Locust's statistics: `connect`, `send`, `deliver` (one-way latency of each received
message), `error` (`! ` lines from the server), `disconnect`, and one `delivery-check` per run,
which fails when deliveries were lost or duplicated. At the end of a run the senders stop, the
receivers drain, and every process's counts are merged (over Locust's own messaging when there are
workers) and cross-checked with the server's `/stats`. `python loadtest/chat_user.py --help`
lists the `--chat-*` options (`locust --help` reads no locustfile); docs/LOADTEST.md is the guide.

This file is the user and the entry point; the rest lives beside it in the loadtest package:
client.py (the TCP client), ledger.py (delivery bookkeeping), identity.py (unique names),
options.py (`--chat-*`), run_control.py (the run's state on the Locust environment, and the
end-of-run halt, drain and merge), summary.py (verdicts and summary), render.py (the summary as
text), server_stats.py (the server's `/stats`).
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
from pathlib import Path

LOADTEST_MODULES = ("locust", "psutil")  # the `loadtest` extra in pyproject.toml


def _exit_unless_installed() -> None:
    """Run as a script by a Python without the load test's packages: say how to get them."""
    missing = [name for name in LOADTEST_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"{Path(__file__).name}: {' and '.join(missing)} not installed for {sys.executable}; "
            "run `make test` (it installs everything in .venv) and use "
            "`.venv/bin/python loadtest/chat_user.py --help`, or `pip install -e '.[loadtest]'`"
        )


if __name__ == "__main__":
    _exit_unless_installed()

from locust import User, task  # noqa: E402
from locust.env import Environment  # noqa: E402


def _put_repository_on_path() -> None:
    """Make `loadtest` (and `chat`) importable however Locust got this file: by path from any
    directory, or, on `-f -` workers, as a copy in the temp directory beside an installed `chat`."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "loadtest" / "__init__.py").is_file():
        import chat  # the copy's repository: where `pip install -e .` put chat

        root = Path(chat.__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


_put_repository_on_path()

from loadtest.client import ChatClient  # noqa: E402
from loadtest.identity import unique_name  # noqa: E402
from loadtest.options import connection_settings, options_of  # noqa: E402 (registers --chat-*)
from loadtest.run_control import run_of  # noqa: E402 (registers the end-of-run listeners)

PASSWORD_ENV = "CHAT_PASSWORD"  # as the terminal client: a password never goes on argv

RECONNECT_MIN_WAIT_S = 1.0
# A user further behind its schedule than this drops the backlog rather than send it in a burst
# (a person does not type a minute of missed messages at once); the lateness it had is counted.
MAX_BEHIND_S = 10.0


class ChatUser(User):
    """A person in the room: joins under a unique name, chats at a share of the room's rate, reads
    everything. Override `wait_time` in a subclass for other pacing.

    The pacing is open-loop: message times are drawn on a fixed schedule (a Poisson process at
    the user's share of the rate), not from whenever the last send finished, so a user held up
    by a slow server or a busy Locust sends late rather than less, and each probe carries the
    time it was due (the summary's corrected latency counts from it, as wrk2 does).
    """

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.client: ChatClient | None = None
        self._options = options_of(environment)
        self._due_s = time.monotonic()  # when the next message is due by the schedule
        self._address: tuple[str, int] | None = None  # its host, chosen once (--chat-hosts)

    def wait_time(self) -> float:
        options = self._options
        runner = self.environment.runner
        users = options.chat_room_users or (runner.target_user_count if runner else 1) or 1
        rate = options.chat_room_rate
        now = time.monotonic()
        if self.client is None or not self.client.connected:
            self._due_s = now + RECONNECT_MIN_WAIT_S  # a new schedule from the reconnection
            return RECONNECT_MIN_WAIT_S
        if rate <= 0:
            return 1.0
        self._due_s = max(self._due_s, now - MAX_BEHIND_S) + random.expovariate(rate / users)
        return max(0.0, self._due_s - now)

    def on_start(self) -> None:
        self._join()
        self.wait()  # a newcomer listens first; otherwise every join would add a message

    @task
    def chat(self) -> None:
        if run_of(self.environment).ledger.halted:
            return
        if self.client is None or not self.client.connected:
            self._join()
        elif self._options.chat_room_rate > 0:
            late_s = max(0.0, time.monotonic() - self._due_s)
            self.client.send_probe(self._options.chat_message_bytes, late_s)

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()

    def _join(self) -> None:
        ledger = run_of(self.environment).ledger
        if ledger.halted:
            return
        options = self._options
        if self._address is None:
            try:
                self._address = run_of(self.environment).next_address()
            except ValueError:
                return  # said once at the start of the test, which is quitting
        tls, password = connection_settings(options)
        self.client = ChatClient(
            self._address,
            unique_name(options.chat_name_prefix),
            ledger,
            self.environment.events.request,
            wall_clock=options.chat_clock == "wall",
            to_arrival=options.chat_latency_to == "arrival",
            deliver_sample=options.chat_deliver_sample,
            tls=tls,
            password=password,
        )
        self.client.connect(options.chat_connect_timeout_s)
        self._due_s = time.monotonic()  # the schedule starts when the user is in the room


if __name__ == "__main__":
    # `locust --help` reads no locustfile, so it cannot list the --chat-* options; this does.
    from locust.argument_parser import get_parser

    help_parser = get_parser()
    help_parser.prog = "locust -f loadtest/chat_user.py"
    help_parser.print_help()
