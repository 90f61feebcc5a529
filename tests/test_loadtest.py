"""The Locust load test, run as users run it: a server subprocess, `locust --headless`, its CSV.

Locust monkey-patches the process it is imported into, so everything here runs in subprocesses
(loadtest/cpu_use.py, which imports no Locust, is the exception), and every process is stopped by
its PID (Locust's --processes workers by its process group). No sleep splits reads here: the
ledger scenario feeds the load test's client one byte at a time instead, and checks that each
line counts exactly when its last byte arrives.

Promises (README.md "Load testing", docs/LOADTEST.md) -> tests:

- `make loadtest` (loadtest.run): server on a free port, headless run, every delivery checked,
  CSV + HTML + summary written, server stopped by PID, RESULT line and exit status
    -> test_make_loadtest_driver_starts_a_server_runs_and_writes_the_report
    -> test_make_loadtest_driver_fails_and_says_why_when_nothing_was_measured
    -> test_sigterm_stops_the_driver_its_locust_and_its_server
- its bad options are one-line usage errors
    -> test_bad_driver_options_are_one_line_usage_errors
- each user joins under a unique name, reads everything, times every message (`deliver`)
    -> test_headless_run_connects_sends_and_delivers_every_message_without_failures
- ... whatever language the server speaks (joining is chat.protocol's ClientHandshake)
    -> test_users_join_a_server_speaking_russian_by_locale_and_every_delivery_arrives
- the room sends RATE messages a second whatever the number of users; 0: everyone listens
    -> test_headless_run_... (assert_room_rate)
    -> test_a_room_where_everyone_only_listens_measures_no_delivery_and_fails
- `--chat-message-bytes` sets the message length
    -> test_headless_run_... (send row's content size)
- `--chat-deliver-sample N`: every Nth delivery a `deliver` request, every one still checked
    -> test_two_processes_merge_their_ledgers_and_lose_nothing
- `--csv` writes _stats, _stats_history, _failures, _exceptions; `--html`; `--chat-summary`
    -> test_headless_run_...
- `--processes`: ledgers merged over Locust's messaging, nothing lost
    -> test_two_processes_merge_their_ledgers_and_lose_nothing
- rows: `connect` fails on refusal and on `! ` answers; `error` rows carry the server's text
    -> test_refused_joins_and_server_errors_are_failures_with_their_reason
    -> test_nothing_listening_on_the_port_is_a_fail_that_says_no_user_joined
- `disconnect` fails with the reason and the server's last words
    -> test_a_server_going_away_is_a_disconnect_failure_with_its_last_words
- delivery check: gaps lost, repeats duplicated, late joiners and early leavers owed their
  window, processes merged, foreign lines counted apart
    -> test_ledger_counts_gaps_and_missing_tails_as_lost_and_repeats_as_duplicated
- the verdict: FAIL, with reasons, on loss, connect failure, error, disconnect, or nothing
  measured; the `delivery-check` row fails with it; exit status 1 (2: usage error)
    -> test_nothing_listening_on_the_port_is_a_fail_that_says_no_user_joined
    -> test_a_room_where_everyone_only_listens_measures_no_delivery_and_fails
    -> test_refused_joins_and_server_errors_are_failures_with_their_reason
    -> test_a_missing_or_impossible_host_is_a_usage_error_and_a_fail
- cross-check with `/stats`: messages_in and deliveries_out agree exactly
    -> assert_clean_run (both clean-run tests)
- `--host` HOST:PORT, tcp://HOST:PORT, [::1]:PORT; no port or a bad one is a usage error
    -> test_host_forms_in_the_guide_parse_and_bad_ports_are_usage_errors
    -> test_nothing_listening_on_the_port_... (runs with tcp://)
- CPU average and peak (peak never below the average), per Locust process and for the server
    -> test_busiest_window_* (three), assert_clean_run, test_make_loadtest_driver_starts_...
- the CSV holds the drain and the delivery-check row (the 1.2 s wait for locust#1806)
    -> every run_locust test reads the delivery-check row from the CSV
- `python loadtest/chat_user.py --help` lists every `--chat-*` option of the guide
    -> test_every_chat_option_in_the_guide_is_listed_by_the_locustfile_help
    -> test_every_chat_option_the_readme_names_exists
- ... under a heading of their own, `--chat-message-bytes` in bytes; without Locust installed,
  one line saying how to install it, status 1
    -> test_locustfile_help_lists_the_chat_options_under_their_own_heading
    -> test_locustfile_help_without_locust_installed_says_how_to_install_it
- bad `--chat-*` values (negative rates, zero sizes, nan, a prefix names cannot start with) are
  one-line usage errors, status 2
    -> test_bad_chat_option_values_are_one_line_usage_errors
- not tested: the web UI, `--master`/`--worker` across machines and `-f -`, a worker that does
  not report, `--chat-clock wall`, `--chat-latency-to` values, `--chat-connect-timeout-s`,
  `--chat-name-prefix`, subclassing ChatUser, the CPU-bound and busy-machine flags.
"""

from __future__ import annotations

import csv
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.protocol import (
    LEAVE_LINE,
    STATS_COMMAND,
    LineDecoder,
    command_line,
    encode_line,
    parse_server_line,
    stats_reply,
)
from chat.texts import RU
from harness import Peer, ServerProcess, free_port
from harness import start_chat_server as start_server
from loadtest.cpu_use import cpu_use_pct  # no Locust import: safe in this process

ROOT = Path(__file__).resolve().parent.parent
CHAT_USER = ROOT / "loadtest" / "chat_user.py"
LOCUST_TIMEOUT_S = 60.0
WAIT_S = 20.0


def run_locust(
    tmp_path: Path,
    server: ServerProcess | str | None,
    *extra: str,
    users: int = 40,
    run_time: str = "4s",
    meanwhile: Callable[[], None] | None = None,
) -> tuple[int, dict[str, dict[str, str]], dict, str]:
    """Run a headless test against `server` (or a --host value, or no --host at all);
    `meanwhile` runs during it. (exit status, CSV rows by name, chat summary, Locust's output)."""
    prefix = tmp_path / "locust"
    if isinstance(server, ServerProcess):
        server = f"{server.host}:{server.port}"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(CHAT_USER),
        "--headless",
        *([] if server is None else ["--host", server]),
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        run_time,
        "--csv",
        str(prefix),
        "--chat-summary",
        str(tmp_path / "summary.json"),
        "--only-summary",
        *extra,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        if meanwhile is not None:
            meanwhile()
        output, _ = proc.communicate(timeout=LOCUST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"locust did not finish in {LOCUST_TIMEOUT_S} s:\n{output[-3000:]}")
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f) if row["Type"] == "chat"}
    summary_path = tmp_path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return proc.returncode, rows, summary, output


def assert_clean_run(
    status: int, rows: dict, summary: dict, output: str, users: int, deliver_sample: int = 1
) -> None:
    """Everything a clean run promises, exactly: every user in, every message owed and received
    once, every row's count equal to what the ledger and the server counted."""
    tail = output[-3000:]
    assert status == 0, tail
    assert summary["verdict"] == "PASS" and summary["problems"] == [], tail
    for name in ("connect", "send", "deliver", "delivery-check"):
        assert rows[name]["Failure Count"] == "0", f"{name} failed:\n{tail}"
    assert "error" not in rows and "disconnect" not in rows, tail
    assert summary["users"] == summary["connects"] == users
    assert int(rows["connect"]["Request Count"]) == users
    assert summary["connect_failures"] == summary["errors"] == summary["disconnects"] == 0
    assert int(rows["delivery-check"]["Request Count"]) == 1
    d = summary["deliveries"]
    assert int(rows["send"]["Request Count"]) == d["sent"]
    assert d["lost"] == d["duplicated"] == 0
    assert d["received"] == d["expected"]
    # Nobody is owed their own message, nor one message twice; only messages sent while the
    # others were still joining (the first second of the run) are owed to fewer than all.
    assert 0.8 * d["sent"] * (users - 1) <= d["expected"] <= d["sent"] * (users - 1), d
    # Every Nth message a receiver gets is a `deliver` request: per receiver, at most N-1 left out.
    delivers = int(rows["deliver"]["Request Count"])
    assert d["received"] // deliver_sample - users < delivers <= d["received"] // deliver_sample
    if deliver_sample == 1:
        assert delivers == d["received"]
    assert summary["untimed"] == 0  # one machine, one monotonic clock: every delivery is timed
    assert summary["drain_quiet"]
    server = summary["server"]
    assert server["delta"]["messages_in"] == d["sent"]
    assert server["delta"]["deliveries_out"] == d["received"]
    assert server["messages_in_minus_sent"] == server["deliveries_out_minus_received"] == 0
    for process in summary["locust_processes"]:
        assert process["cpu_peak_pct"] >= process["cpu_avg_pct"], process
    assert f"chat summary: {users} users joined (0 connect failures)" in output
    assert f"{d['received']} received, 0 lost, 0 duplicated -> OK" in output


def assert_room_rate(summary: dict, rate: float, run_s: float) -> None:
    """The room sends a Poisson stream of `rate` messages a second whatever the number of users.
    Sending runs for the run time less the ramp and each newcomer's first wait (at most 1.5 s
    here); the bounds are that span's Poisson mean -/+ 5 standard deviations."""
    low, high = rate * (run_s - 1.5), rate * run_s
    sent = summary["deliveries"]["sent"]
    assert low - 5 * low**0.5 <= sent <= high + 5 * high**0.5, sent


def test_headless_run_connects_sends_and_delivers_every_message_without_failures(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    status, rows, summary, output = run_locust(
        tmp_path,
        server_process,
        "--chat-room-rate",
        "20",
        "--chat-message-bytes",
        "100",
        "--html",
        str(tmp_path / "report.html"),
        users=40,
    )
    assert_clean_run(status, rows, summary, output, users=40)
    assert_room_rate(summary, rate=20, run_s=4)
    assert [p["node"] for p in summary["locust_processes"]] == ["local"]
    assert float(rows["send"]["Average Content Size"]) == 101  # 100 characters and the newline
    for name in ("stats.csv", "stats_history.csv", "failures.csv", "exceptions.csv"):
        assert (tmp_path / f"locust_{name}").exists(), name
    assert (tmp_path / "report.html").stat().st_size > 0


def test_users_join_a_server_speaking_russian_by_locale_and_every_delivery_arrives(
    tmp_path: Path,
) -> None:
    # The server picks its language from LC_ALL, LC_MESSAGES, then LANG: only LANG says Russian.
    russian = {"LANG": "ru_RU.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
    server = start_server("--quiet", env=russian)  # no --lang
    try:
        status, rows, summary, output = run_locust(
            tmp_path, server, "--chat-room-rate", "20", users=20
        )
        peer = Peer(server.address)  # after the run, so it takes no delivery from the check
        welcome = parse_server_line(peer.join("observer"))
        peer.close()
    finally:
        server.stop()
    assert welcome.kind == "notice"
    assert welcome.text.startswith(RU["welcome"].partition("{")[0]), welcome  # it speaks Russian
    assert_clean_run(status, rows, summary, output, users=20)


def test_two_processes_merge_their_ledgers_and_lose_nothing(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    port = str(free_port())
    status, rows, summary, output = run_locust(
        tmp_path,
        server_process,
        "--chat-room-rate",
        "20",
        "--chat-latency-to",
        "read",
        "--chat-deliver-sample",
        "3",
        "--processes",
        "2",
        "--master-bind-port",
        port,
        "--master-port",
        port,
        users=30,
    )
    assert_clean_run(status, rows, summary, output, users=30, deliver_sample=3)
    nodes = sorted(p["node"] for p in summary["locust_processes"])
    assert nodes == ["master", "worker 0", "worker 1"]
    assert sum(p["users"] for p in summary["locust_processes"]) == 30


def test_refused_joins_and_server_errors_are_failures_with_their_reason(tmp_path: Path) -> None:
    server = start_server("--quiet", "--max-clients", "6", "--max-line", "80")
    try:
        status, rows, summary, output = run_locust(
            tmp_path, server, "--chat-message-bytes", "120", "--chat-room-rate", "20", users=8
        )
    finally:
        server.stop()
    assert status == 1
    assert summary["users"] == summary["connects"] == 6  # the server takes six, refuses the rest
    refused = summary["connect_failures"]
    assert int(rows["connect"]["Failure Count"]) == refused
    assert int(rows["connect"]["Request Count"]) == 6 + refused
    # The two left out try again every second or more: at least once more each in the 4 s.
    assert 4 <= refused, refused
    # Every message is over the line limit: each one is answered by one error and delivered to
    # nobody.
    sent = summary["deliveries"]["sent"]
    assert summary["errors"] == int(rows["error"]["Failure Count"]) == sent > 0
    assert summary["deliveries"]["expected"] == summary["deliveries"]["received"] == 0
    assert summary["problems"] == [
        f"no delivery was expected ({sent} messages sent): nothing was measured",
        f"{refused} connect failure(s)",
        f"{sent} error line(s) from the server",
    ]
    failures = (tmp_path / "locust_failures.csv").read_text()
    assert "server full" in failures
    assert "line too long" in failures


def server_clients(server: ServerProcess) -> int:
    """How many clients the server counts, this one included (joins, asks /stats, leaves)."""
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(encode_line("stats-probe") + encode_line(command_line(STATS_COMMAND)))
        decoder = LineDecoder()
        while True:
            data = sock.recv(65536)
            assert data, "server closed the connection"
            for line in decoder.feed(data):
                stats = stats_reply(line.decode()) if isinstance(line, bytes) else None
                if stats is not None:
                    sock.sendall(encode_line(LEAVE_LINE))
                    return int(stats["clients"])


def test_a_server_going_away_is_a_disconnect_failure_with_its_last_words(tmp_path: Path) -> None:
    server = start_server("--quiet")

    def stop_server_once_everyone_is_in() -> None:
        deadline = time.monotonic() + 20
        while server_clients(server) < 11 and time.monotonic() < deadline:
            time.sleep(0.2)
        server.stop()

    try:
        status, rows, summary, output = run_locust(
            tmp_path, server, users=10, run_time="8s", meanwhile=stop_server_once_everyone_is_in
        )
    finally:
        server.stop()
    assert status == 1
    assert summary["connects"] == summary["disconnects"] == 10, output[-3000:]
    assert rows["disconnect"]["Failure Count"] == "10"
    refused = summary["connect_failures"]
    assert int(rows["connect"]["Failure Count"]) == refused
    # They try to come back: each of the ten after max(1 s, an exponential wait of mean 1 s),
    # with about 5 s of the run left, so fewer than five retries would take astronomical luck.
    assert refused >= 5, refused
    assert summary["problems"][-2:] == [
        f"{refused} connect failure(s)",
        "10 unexpected disconnect(s)",
    ]
    assert "shutting down" in (tmp_path / "locust_failures.csv").read_text()


LEDGER_SCENARIO = r"""
import json, time
from locust.event import EventHook
from chat.probe import probe_text
from chat.protocol import chat_line, encode_line, notice_line
from loadtest.client import ChatClient
from loadtest.ledger import DeliveryLedger, check_deliveries

def client(ledger, name, connected=True):
    c = ChatClient(("127.0.0.1", 9), name, ledger, EventHook())
    ledger.receivers.append(c.tally)
    c.connected = connected
    return c

def hear(c, sender, *seqs):
    now = time.monotonic_ns()
    c.on_data(b"".join(encode_line(chat_line(sender, probe_text(s, now))) for s in seqs), now)

a, b = DeliveryLedger(), DeliveryLedger()   # two Locust processes
a.sent["alice"] = 5
b.sent["bob"] = 3
r1, r2, r3 = client(a, "r1"), client(a, "r2"), client(a, "r3")
r4 = client(a, "r4", connected=False)       # left before the end: owed only up to what it saw
r5 = client(b, "r5")
hear(r1, "alice", 1, 2, 4, 5)               # 3 lost
hear(r2, "alice", 1, 2, 3, 3, 4, 5)         # 3 twice
hear(r3, "alice", 3, 4)                     # joined late: owed 3..5, 5 lost
hear(r4, "alice", 2, 3)                     # owed 2..3
hear(r5, "alice", 1, 2, 3, 4, 5)
hear(r1, "bob", 1, 2)                       # bob's last (3) lost
hear(r5, "human", 1, 2, 4)                  # not ours: gaps only, 3 lost
joined, human = notice_line("someone joined the chat"), chat_line("human", "hello")
r5.on_data(encode_line(joined) + encode_line(human), 0)
# Reads split anywhere, one byte at a time, through a name's two-byte letter too: each line
# is still counted once, when its last byte arrives.
r6 = client(b, "r6")
now = time.monotonic_ns()
wire = b"".join(encode_line(chat_line(s, probe_text(q, now))) for s, q in [("bob", 1),
                ("bob", 2), ("bob", 3), ("\u0451\u0436", 1), ("\u0451\u0436", 2)])
counted_at, before = [], b.deliveries
start = before
for i in range(len(wire)):
    r6.on_data(wire[i : i + 1], now)
    if b.deliveries != before:
        counted_at.append(i)
        before = b.deliveries
assert counted_at == [i for i, byte in enumerate(wire) if byte == 10], counted_at
assert b.deliveries - start == 5
print(json.dumps([check_deliveries([a.report(), b.report()]), b.foreign_lines]))
"""


def test_ledger_counts_gaps_and_missing_tails_as_lost_and_repeats_as_duplicated() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LEDGER_SCENARIO],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    check, foreign = json.loads(done.stdout)
    assert check == {
        "senders": 2,
        "sent": 8,
        "expected": 5 + 5 + 3 + 2 + 5 + 3 + 4 + 3 + 2,
        "received": 4 + 6 + 2 + 2 + 5 + 2 + 3 + 3 + 2,
        "lost": 1 + 0 + 1 + 0 + 0 + 1 + 1,
        "duplicated": 1,
    }
    assert foreign == 1


def locustfile_help() -> str:
    done = subprocess.run(
        [sys.executable, str(CHAT_USER), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_chat_option_in_the_guide_is_listed_by_the_locustfile_help() -> None:
    guide = (ROOT / "docs" / "LOADTEST.md").read_text()
    documented = set(re.findall(r"^\| `(--chat-[a-z-]+)`", guide, re.MULTILINE))
    listed = set(re.findall(r"(--chat-[a-z-]+)", locustfile_help()))
    assert len(documented) == 9, documented
    assert documented == listed


def test_every_chat_option_the_readme_names_exists() -> None:
    named = set(re.findall(r"(--chat-[a-z-]+)", (ROOT / "README.md").read_text()))
    assert named <= set(re.findall(r"(--chat-[a-z-]+)", locustfile_help()))


OPTION_SCENARIO = r"""
import contextlib, io, json, sys
import loadtest.options  # registers the --chat-* options
from locust.argument_parser import get_parser
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parsed = get_parser().parse_args(["-f", "chat_user.py", *args])
            status = 0
        except SystemExit as exc:
            status = exc.code
    out.append([status, err.getvalue()])
print(json.dumps(out))
"""


def test_bad_chat_option_values_are_one_line_usage_errors() -> None:
    cases = [
        (["--chat-room-rate", "-1"], "argument --chat-room-rate: must be 0 or more, not -1"),
        (
            ["--chat-room-rate", "nan"],
            "argument --chat-room-rate: must be a finite number, not nan",
        ),
        (["--chat-room-rate", "x"], "argument --chat-room-rate: not a number: 'x'"),
        (["--chat-message-bytes", "0"], "argument --chat-message-bytes: must be 1 or more, not 0"),
        (
            ["--chat-message-bytes", "1.5"],
            "argument --chat-message-bytes: not a whole number: '1.5'",
        ),
        (["--chat-drain-s", "0"], "argument --chat-drain-s: must be above 0, not 0"),
        (
            ["--chat-deliver-sample", "0"],
            "argument --chat-deliver-sample: must be 1 or more, not 0",
        ),
        (
            ["--chat-connect-timeout-s", "inf"],
            "argument --chat-connect-timeout-s: must be a finite number, not inf",
        ),
        (
            ["--chat-name-prefix", "a b"],
            "argument --chat-name-prefix: 'a b' makes names the server",
        ),
        (["--chat-room-rate", "0", "--chat-message-bytes", "1", "--chat-drain-s", "0.5"], None),
    ]
    done = subprocess.run(
        [sys.executable, "-c", OPTION_SCENARIO, json.dumps([args for args, _ in cases])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    for (args, message), (status, stderr) in zip(cases, json.loads(done.stdout), strict=True):
        if message is None:
            assert (status, stderr) == (0, ""), args
            continue
        assert status == 2, args
        assert len(stderr.splitlines()) == 1 and f"error: {message}" in stderr, (args, stderr)
    # And as users meet it: Locust itself stops at once with that one line and status 2.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(CHAT_USER),
            "--headless",
            "--chat-room-rate",
            "-1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        done.stderr.split(":")[0] + ": error: argument --chat-room-rate: must be 0 or more, not -1"
    ]


def test_locustfile_help_lists_the_chat_options_under_their_own_heading() -> None:
    text = locustfile_help()
    heading = "\nChat load test options (loadtest/chat_user.py):\n"
    assert heading in text
    before, after = text.split(heading, 1)
    # The section runs to the next heading: the next line that is not indented.
    own_section = re.split(r"\n(?=\S)", after, maxsplit=1)[0]
    assert re.findall(r"--chat-[a-z-]+", before) == []
    listed = re.findall(r"^  (--chat-[a-z-]+)", own_section, re.MULTILINE)
    assert len(listed) == 9, own_section
    message_bytes = own_section.split("--chat-message-bytes", 1)[1].split("\n  --", 1)[0]
    assert "bytes" in message_bytes and "character" not in message_bytes


def test_locustfile_help_without_locust_installed_says_how_to_install_it() -> None:
    # -S: this Python without its site-packages, so without Locust, as a plain python3 would be.
    done = subprocess.run(
        [sys.executable, "-S", str(CHAT_USER), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "locust" in done.stderr and "not installed" in done.stderr
    assert "make test" in done.stderr and "pip install -e '.[loadtest]'" in done.stderr


ADDRESS_SCENARIO = r"""
import json
from loadtest.options import parse_address
out = {}
for host in ["127.0.0.1:5555", "tcp://127.0.0.1:5555/", "[::1]:6000", ":7000", "127.0.0.1",
             "127.0.0.1:x", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999", ""]:
    try:
        out[host] = list(parse_address(host))
    except ValueError as exc:
        out[host] = str(exc)
print(json.dumps(out))
"""


def test_host_forms_in_the_guide_parse_and_bad_ports_are_usage_errors() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ADDRESS_SCENARIO],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "127.0.0.1:5555": ["127.0.0.1", 5555],
        "tcp://127.0.0.1:5555/": ["127.0.0.1", 5555],
        "[::1]:6000": ["::1", 6000],
        ":7000": ["127.0.0.1", 7000],
        "127.0.0.1": "--host '127.0.0.1' has no port; use HOST:PORT, e.g. 127.0.0.1:5555",
        "127.0.0.1:x": "--host '127.0.0.1:x' has no port; use HOST:PORT, e.g. 127.0.0.1:5555",
        "127.0.0.1:0": "--host '127.0.0.1:0': the port must be 1-65535, not 0",
        "127.0.0.1:65536": "--host '127.0.0.1:65536': the port must be 1-65535, not 65536",
        "127.0.0.1:99999": "--host '127.0.0.1:99999': the port must be 1-65535, not 99999",
        "": "give the chat server as --host HOST:PORT, e.g. --host 127.0.0.1:5555",
    }


# --- verdicts when nothing could be measured ----------------------------------------------------


def test_nothing_listening_on_the_port_is_a_fail_that_says_no_user_joined(tmp_path: Path) -> None:
    status, rows, summary, output = run_locust(
        tmp_path, f"tcp://127.0.0.1:{free_port()}", users=3, run_time="2s"
    )
    assert status == 1
    refused = summary["connect_failures"]
    # Three users try at once, then each again every second or more, for 2 s.
    assert 3 <= refused <= 9, refused
    assert int(rows["connect"]["Request Count"]) == int(rows["connect"]["Failure Count"]) == refused
    assert summary["users"] == summary["connects"] == 0
    assert summary["verdict"] == "FAIL"
    assert summary["problems"] == ["no user joined", f"{refused} connect failure(s)"]
    assert rows["delivery-check"]["Failure Count"] == "1"
    assert f"-> FAIL: no user joined; {refused} connect failure(s)" in output
    assert "-> OK" not in output
    assert "ConnectionRefusedError" in (tmp_path / "locust_failures.csv").read_text()


def test_a_room_where_everyone_only_listens_measures_no_delivery_and_fails(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    status, rows, summary, output = run_locust(
        tmp_path, server_process, "--chat-room-rate", "0", users=3, run_time="2s"
    )
    assert status == 1
    assert summary["users"] == summary["connects"] == 3
    assert summary["deliveries"]["sent"] == 0 and "send" not in rows  # 0: everyone only listens
    reason = "no delivery was expected (0 messages sent): nothing was measured"
    assert summary["problems"] == [reason]
    assert rows["delivery-check"]["Failure Count"] == "1"
    assert f"-> FAIL: {reason}" in output


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (None, "give the chat server as --host HOST:PORT, e.g. --host 127.0.0.1:5555"),
        ("127.0.0.1:99999", "--host '127.0.0.1:99999': the port must be 1-65535, not 99999"),
    ],
)
def test_a_missing_or_impossible_host_is_a_usage_error_and_a_fail(
    tmp_path: Path, host: str | None, reason: str
) -> None:
    status, rows, summary, output = run_locust(tmp_path, host, users=2, run_time="2s")
    assert status == 2, output[-3000:]
    assert f"ERROR/chat_user: {reason}" in output
    assert "refused" not in output.lower()
    assert "connect" not in rows  # nobody tried
    assert summary["problems"] == [reason, "no user joined"]
    assert rows["delivery-check"]["Failure Count"] == "1"
    assert f"-> FAIL: {reason}; no user joined" in output


# --- CPU figures --------------------------------------------------------------------------------


def test_busiest_window_of_a_short_run_is_the_whole_run() -> None:
    assert cpu_use_pct([(10.0, 1.0), (10.5, 1.5)], window_s=1.0) == (100.0, 100.0)
    assert cpu_use_pct([(0.0, 0.0), (4.0, 1.0), (8.0, 3.0)], window_s=10.0) == (37.5, 37.5)


def test_busiest_window_finds_a_burst_at_the_end() -> None:
    samples = [(0.0, 0.0), (1.0, 0.1), (2.0, 0.2), (3.0, 1.2)]
    assert cpu_use_pct(samples, window_s=1.0) == (40.0, 100.0)


@given(
    st.lists(st.tuples(st.floats(0.05, 3.0), st.floats(0.0, 2.0)), min_size=1, max_size=40),
    st.sampled_from([0.5, 1.0, 10.0]),
)
def test_busiest_window_is_never_below_the_average(steps: list, window_s: float) -> None:
    samples, t, cpu = [(0.0, 0.0)], 0.0, 0.0
    for dt, busy in steps:
        t, cpu = t + dt, cpu + dt * busy
        samples.append((t, cpu))
    average, peak = cpu_use_pct(samples, window_s)
    assert peak >= average


# --- python -m loadtest.run (make loadtest) -----------------------------------------------------


def run_driver(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.run", "--results", str(tmp_path), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=LOCUST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the driver stops its server and Locust on SIGTERM
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"loadtest.run did not finish:\n{stdout[-3000:]}{stderr[-3000:]}")
    return proc.returncode, stdout, stderr


def read_until(proc: subprocess.Popen, marker: bytes, timeout_s: float) -> str:
    """`proc`'s stdout (unbuffered reads of its pipe) until `marker` has come."""
    deadline, seen = time.monotonic() + timeout_s, b""
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {timeout_s} s: {seen!r}"
        if select.select([proc.stdout], [], [], remaining)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"output ended before {marker!r}: {seen!r}"
            seen += chunk
    return seen.decode()


def server_pid_of(stdout: str) -> int:
    match = re.search(r"^chat server pid (\d+) on 127\.0\.0\.1:\d+$", stdout, re.MULTILINE)
    assert match, stdout[-3000:]
    return int(match.group(1))


def assert_gone(pid: int) -> None:
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_make_loadtest_driver_starts_a_server_runs_and_writes_the_report(tmp_path: Path) -> None:
    status, stdout, stderr = run_driver(tmp_path, "-u", "10", "-r", "10", "-t", "3s")
    assert status == 0, stdout[-3000:] + stderr[-3000:]
    assert stdout.rstrip().splitlines()[-1] == "RESULT: PASS"
    assert_gone(server_pid_of(stdout))
    for name in ("locust_stats.csv", "locust.html", "locust_summary.json", "locust_server.log"):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "locust_summary.json").read_text())
    d = summary["deliveries"]
    assert re.search(
        rf"^deliveries: 10 users joined \(0 connect failures\), {d['sent']} messages from "
        rf"{d['senders']} senders, {d['expected']} owed, {d['expected']} received, 0 lost, "
        r"0 duplicated -> OK$",
        stdout,
        re.MULTILINE,
    ), stdout[-3000:]
    use = summary["server_process"]
    # One thread per client, the listener and the writer; the /stats visit may add one.
    assert 12 <= use["threads_peak"] <= 13, use
    assert use["cpu_peak_1s_pct"] >= use["cpu_avg_pct"], use
    for process in summary["locust_processes"]:
        assert process["cpu_peak_pct"] >= process["cpu_avg_pct"], process


def test_make_loadtest_driver_fails_and_says_why_when_nothing_was_measured(
    tmp_path: Path,
) -> None:
    status, stdout, stderr = run_driver(
        tmp_path,
        *("-u", "4", "-r", "4", "-t", "2s", "--server-arg=--max-clients=3"),
        *("--", "--chat-room-rate", "0"),
    )
    assert status == 1, stdout[-3000:] + stderr[-3000:]
    summary = json.loads((tmp_path / "locust_summary.json").read_text())
    refused = summary["connect_failures"]
    assert refused >= 1 and summary["users"] == 3
    assert stdout.rstrip().splitlines()[-1] == (
        "RESULT: FAIL: no delivery was expected (0 messages sent): nothing was measured; "
        f"{refused} connect failure(s); locust exit status 1"
    )
    assert "-> OK" not in stdout
    assert_gone(server_pid_of(stdout))


def test_bad_driver_options_are_one_line_usage_errors(tmp_path: Path) -> None:
    for args, message in [
        (["-u", "0"], "argument -u/--users: must be above 0, not 0"),
        (["-r", "nan"], "argument -r/--spawn-rate: must be above 0, not nan"),
        (["-t", "soon"], "not a time span: 'soon'"),
    ]:
        status, stdout, stderr = run_driver(tmp_path, *args)
        assert status == 2, args
        assert stderr.splitlines()[-1].endswith(message), stderr
        assert "Traceback" not in stderr and stdout == ""


def test_sigterm_stops_the_driver_its_locust_and_its_server(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.run", "-u", "5", "-t", "60s", "--results", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        server_pid = server_pid_of(read_until(proc, b"$ python -m locust", WAIT_S))
        deadline = time.monotonic() + WAIT_S
        while not (tmp_path / "locust_stats_history.csv").exists():  # Locust is running
            assert time.monotonic() < deadline, "Locust never started"
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=LOCUST_TIMEOUT_S)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert output.rstrip().splitlines()[-1].startswith("RESULT: FAIL"), output[-3000:]
    assert server_pid in {child.pid for child in children}
    for child in children:
        assert_gone(child.pid)
