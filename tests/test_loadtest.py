"""The Locust load test, run as users run it: a server subprocess, `locust --headless`, its CSV.

Locust monkey-patches the process it is imported into, so everything here runs in subprocesses,
and every process is stopped by its PID (Locust's --processes workers by its process group).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ServerProcess, start_server

from chat.protocol import LineDecoder, parse_stats

ROOT = Path(__file__).resolve().parent.parent
CHAT_USER = ROOT / "loadtest" / "chat_user.py"
LOCUST_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_locust(
    tmp_path: Path,
    server: ServerProcess,
    *extra: str,
    users: int = 40,
    run_time: str = "4s",
    meanwhile: Callable[[], None] | None = None,
) -> tuple[int, dict[str, dict[str, str]], dict, str]:
    """Run a headless test (`meanwhile` runs during it); (exit status, CSV rows by name, chat
    summary, Locust's output)."""
    prefix = tmp_path / "locust"
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(CHAT_USER),
        "--headless",
        "--host",
        f"{server.host}:{server.port}",
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


def assert_clean_run(status: int, rows: dict, summary: dict, output: str) -> None:
    for name in ("connect", "send", "deliver", "delivery-check"):
        assert name in rows, f"no {name} row:\n{output[-3000:]}"
        assert int(rows[name]["Request Count"]) > 0, name
        assert rows[name]["Failure Count"] == "0", f"{name} failed:\n{output[-3000:]}"
    deliveries = summary["deliveries"]
    assert deliveries["expected"] > 0
    assert deliveries["lost"] == 0
    assert deliveries["duplicated"] == 0
    assert deliveries["received"] == deliveries["expected"]
    assert int(rows["deliver"]["Request Count"]) == deliveries["received"]
    assert summary["drain_quiet"]
    server = summary["server"]
    assert server["messages_in_minus_sent"] == 0
    assert server["deliveries_out_minus_received"] == 0
    assert status == 0, output[-3000:]


def test_headless_run_connects_sends_and_delivers_every_message_without_failures(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    status, rows, summary, output = run_locust(
        tmp_path, server_process, "--chat-room-rate", "20", users=40
    )
    assert_clean_run(status, rows, summary, output)
    assert summary["users"] == summary["connects"] == 40
    assert [p["node"] for p in summary["locust_processes"]] == ["local"]


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
        "--processes",
        "2",
        "--master-bind-port",
        port,
        "--master-port",
        port,
        users=30,
    )
    assert_clean_run(status, rows, summary, output)
    nodes = sorted(p["node"] for p in summary["locust_processes"])
    assert nodes == ["master", "worker 0", "worker 1"]
    assert summary["users"] == 30


def test_refused_joins_and_server_errors_are_failures_with_their_reason(tmp_path: Path) -> None:
    server = start_server("--quiet", "--max-clients", "6", "--max-line", "80")
    try:
        status, rows, summary, output = run_locust(
            tmp_path, server, "--chat-message-bytes", "120", "--chat-room-rate", "20", users=8
        )
    finally:
        server.stop()
    assert status == 1
    assert int(rows["connect"]["Failure Count"]) >= 2
    assert int(rows["error"]["Failure Count"]) > 0
    failures = (tmp_path / "locust_failures.csv").read_text()
    assert "server full" in failures
    assert "line too long" in failures


def server_clients(server: ServerProcess) -> int:
    """How many clients the server counts, this one included (joins, asks /stats, leaves)."""
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"stats-probe\n/stats\n")
        decoder = LineDecoder()
        while True:
            data = sock.recv(65536)
            assert data, "server closed the connection"
            for line in decoder.feed(data):
                if isinstance(line, bytes) and line.startswith(b"* stats: "):
                    sock.sendall(b"/quit\n")
                    return int(parse_stats(line[2:].decode())["clients"])


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
    assert int(rows["connect"]["Failure Count"]) > 0  # they try to come back
    assert "shutting down" in (tmp_path / "locust_failures.csv").read_text()


LEDGER_SCENARIO = r"""
import json, time
from chat.probe import probe_text
from loadtest.client import ChatClient
from loadtest.ledger import DeliveryLedger, check_deliveries

def client(ledger, name, connected=True):
    c = ChatClient(("127.0.0.1", 9), name, ledger, lambda **kw: None)
    ledger.receivers.append(c)
    c.connected = connected
    return c

def hear(c, sender, *seqs):
    now = time.monotonic_ns()
    c.on_data(b"".join(f"{sender}: {probe_text(s, now)}\n".encode() for s in seqs), now)

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
r5.on_data(b"* someone joined the chat\nhuman: hello\n", 0)
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
        "expected": 5 + 5 + 3 + 2 + 5 + 3 + 4,
        "received": 4 + 6 + 2 + 2 + 5 + 2 + 3,
        "lost": 1 + 0 + 1 + 0 + 0 + 1 + 1,
        "duplicated": 1,
    }
    assert foreign == 1


def test_chat_options_are_listed_by_the_locustfile_help() -> None:
    done = subprocess.run(
        [sys.executable, str(CHAT_USER), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--chat-room-rate", "--chat-message-bytes", "--chat-drain-s", "--chat-clock"):
        assert option in done.stdout


def test_make_loadtest_driver_starts_a_server_runs_and_writes_the_report(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.run", "-u", "10", "-r", "10", "-t", "3s"]
        + ["--results", str(tmp_path)],
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
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "RESULT: PASS" in stdout
    for name in ("locust_stats.csv", "locust.html", "locust_summary.json"):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "locust_summary.json").read_text())
    assert summary["server_process"]["threads_peak"] >= 10
