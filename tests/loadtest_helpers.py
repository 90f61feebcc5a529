"""What the load-test tests share: where the locustfile is, their time bounds, and a headless
Locust run against a server, read back from its CSV and its chat summary.

Locust monkey-patches the process it is imported into, so it only ever runs in a subprocess here,
stopped by its PID (its --processes workers by its process group).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import ServerProcess
from loadtest import run

ROOT = Path(__file__).resolve().parent.parent
CHAT_USER = run.CHAT_USER
LOCUST_TIMEOUT_S = 60.0
WAIT_S = 20.0


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in a fresh interpreter at the checkout's root, bounded; its output as text.
    A fresh one, because Locust monkey-patches the process that imports it."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )


def scenario_json(script: str, *args: str):
    """Run a scenario script (`python -c`) that must succeed; what it printed, as JSON."""
    done = run_python("-c", script, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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
    if isinstance(server, ServerProcess):
        server = f"{server.host}:{server.port}"
    proc = subprocess.Popen(
        locust_command(tmp_path, server, extra, users, run_time),
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
    rows, summary = locust_results(tmp_path)
    return proc.returncode, rows, summary, output


def locust_command(
    tmp_path: Path, host: str | None, extra: tuple[str, ...], users: int, run_time: str
) -> list[str]:
    """`locust --headless` with our locustfile, its CSV and chat summary in `tmp_path`: the
    command `make loadtest` runs, without the HTML report."""
    return run.locust_command(
        host,
        users,
        users,
        run_time,
        tmp_path / "locust",
        tmp_path / "summary.json",
        html=False,
        extra=extra,
    )


def locust_results(tmp_path: Path) -> tuple[dict[str, dict[str, str]], dict]:
    """The run's chat rows of its _stats.csv by name, and its chat summary ({} if none)."""
    with open(tmp_path / "locust_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f) if row["Type"] == "chat"}
    summary_path = tmp_path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return rows, summary
