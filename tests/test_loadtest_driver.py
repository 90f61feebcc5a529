"""`make loadtest`: python -m loadtest.run starts a server on a free port, runs Locust headless,
writes the report, stops everything by PID and ends with a RESULT line and its exit status.

Promises (README.md "Load testing", docs/LOADTEST.md) -> tests (the rest are mapped in
test_loadtest.py and the other test_loadtest_*.py files):

- `make loadtest` (loadtest.run): server on a free port, headless run, every delivery checked,
  CSV + HTML + summary written, server stopped by PID, RESULT line and exit status
    -> test_make_loadtest_driver_starts_a_server_runs_and_writes_the_report
    -> test_make_loadtest_driver_fails_and_says_why_when_nothing_was_measured
    -> test_sigterm_stops_the_driver_its_locust_and_its_server
- its bad options are one-line usage errors
    -> test_bad_driver_options_are_one_line_usage_errors
- CPU average and peak (peak never below the average), per Locust process and for the server
    -> test_make_loadtest_driver_starts_...
    -> test_loadtest.py: assert_clean_run
    -> test_loadtest_verdicts.py: test_busiest_window_* (three)
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from loadtest_helpers import LOCUST_TIMEOUT_S, ROOT, WAIT_S


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
