"""The load test across several servers: `--chat-hosts` spreads the users, the end-of-run check
covers deliveries between hosts, and `make loadtest ARGS='--nodes 2'` runs against a cluster of
its own (a real redis-server, two nodes).

Promises (docs/LOADTEST.md "Across the nodes of a cluster") -> tests:

- users are spread evenly over the hosts, in every Locust process
    -> test_users_are_spread_evenly_over_the_hosts_in_every_process
- `python -m loadtest.run --nodes 2` starts Redis and two nodes, spreads the users, checks every
  delivery across the nodes, reports each process, and stops them all
    -> test_a_run_across_two_nodes_on_redis_delivers_every_message_exactly_once
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loadtest_helpers import LOCUST_TIMEOUT_S, ROOT, run_locust
from test_loadtest import assert_clean_run

from harness import ServerProcess, free_port


def test_users_are_spread_evenly_over_the_hosts_in_every_process(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    # One server given twice: one room, so the check is the same, and the spread is countable.
    host = f"{server_process.host}:{server_process.port}"
    port = str(free_port())
    workers = ("--processes", "2", "--master-bind-port", port, "--master-port", port)
    status, rows, summary, output = run_locust(
        tmp_path, None, "--chat-hosts", f"{host},{host}", "--chat-room-rate", "20", *workers
    )
    assert_clean_run(status, rows, summary, output, users=40)
    assert summary["hosts"] == [host, host]
    assert summary["users_per_host"] == [20, 20]
    per_process = [p["users_per_host"] for p in summary["locust_processes"] if p["users"]]
    assert per_process == [[10, 10], [10, 10]]


def test_a_run_across_two_nodes_on_redis_delivers_every_message_exactly_once(
    tmp_path: Path,
) -> None:
    pytest.importorskip("harness.cluster", reason="the cluster (branch bus) is not merged yet")
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--nodes", "2", "-u", "20", "-r", "20", "-t", "3s"]
        + ["--results", str(tmp_path), "--", "--chat-room-rate", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOCUST_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.rstrip().endswith("RESULT: PASS")
    summary = json.loads((tmp_path / "locust_summary.json").read_text())
    deliveries = summary["deliveries"]
    assert deliveries["lost"] == deliveries["duplicated"] == 0
    # Half the room on each node: most deliveries crossed the bus.
    assert summary["users_per_host"] == [10, 10]
    assert deliveries["received"] == deliveries["expected"] > 0
    assert sorted(summary["cluster_processes"]) == ["node 1", "node 2", "redis"]
    for label in ("node 1", "node 2", "redis"):
        assert f"{label} process: CPU" in done.stdout
    for node in (1, 2):
        assert (tmp_path / f"locust_node-{node}.log").exists()
