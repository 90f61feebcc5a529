"""`make loadtest`: start a chat server on a free port, load it with Locust, summarise, stop it.

    python -m loadtest.run                          # 30 users for 15 s, report in results/latest/
    python -m loadtest.run -u 500 -r 50 -t 1m --processes 2
    python -m loadtest.run --nodes 2                # a local Redis and 2 nodes, users spread
    python -m loadtest.run --server-arg=--writers=2 -- --chat-room-rate 50 --chat-message-bytes 200

Arguments after `--` go to Locust unchanged (any `locust` or `--chat-*` option). The report lands in
results/latest/ (git-ignored; --results results/reference records a reference on purpose):
Locust's CSV files and HTML report, and PREFIX_summary.json (delivery check, server /stats and
process use, Locust's CPU). Exit status 0 only when Locust saw no failure and every
delivery arrived exactly once. The server (every node, and Redis) is stopped by its PID whatever
happens.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import free_port
from loadtest.render import process_lines, rows_table, summary_lines
from loadtest.servers import start_servers

ROOT = Path(__file__).resolve().parent.parent
CHAT_USER = Path(__file__).resolve().parent / "chat_user.py"
DEFAULT_RESULTS = ROOT / "results" / "latest"
LOCUST_GRACE_S = 120.0  # beyond --run-time: start-up, ramp, drain and report writing
LOCUST_STOP_TIMEOUT_S = 20.0  # a stopped run still drains and writes its report
_SPAN_RE = re.compile(r"(\d+)([hms]?)")


def main(argv: list[str] | None = None) -> int:
    """Run one load test; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
    split = argv.index("--") if "--" in argv else len(argv)
    parser = _parser()
    args = parser.parse_args(argv[:split])
    locust_extra = argv[split + 1 :]
    try:
        locust_timeout_s = parse_span_s(args.run_time) + LOCUST_GRACE_S
    except ValueError as exc:
        parser.error(str(exc))
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    prefix = results / args.prefix
    summary_path = Path(f"{prefix}_summary.json")
    summary_path.unlink(missing_ok=True)

    servers = start_servers(args.nodes, args.server_arg, prefix)
    try:
        print(servers.describe(), flush=True)
        processes = _processes_args(args.processes) if args.processes else []
        cmd = locust_command(
            None,
            args.users,
            args.spawn_rate,
            args.run_time,
            prefix,
            summary_path,
            extra=[*servers.locust_target(), *processes, *locust_extra],
        )
        print("$ " + shlex.join(["python", *cmd[1:]]), flush=True)
        servers.watch()
        locust_status = run_locust(cmd, locust_timeout_s)
        use = servers.usage()
    finally:
        servers.stop()

    server_use = None if servers.clustered else use[servers.nodes[0].label]
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if summary is not None:
        summary["server_process"] = server_use
        if servers.clustered:
            summary["cluster_processes"] = use
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    rows = read_rows(Path(f"{prefix}_stats.csv"))
    print(format_report(args, rows, summary, server_use, prefix))
    if summary is not None and servers.clustered:
        print("\n".join(process_lines(use)))
    reasons = failure_reasons(locust_status, summary)
    print(f"\nRESULT: {'FAIL: ' + '; '.join(reasons) if reasons else 'PASS'}")
    return 1 if reasons else 0


def locust_command(
    host: str | None,
    users: int,
    spawn_rate: float,
    run_time: str,
    prefix: Path,
    summary_path: Path,
    *,
    html: bool = True,
    extra: Sequence[str] = (),
) -> list[str]:
    """Headless Locust on our locustfile: its CSV (and HTML) under `prefix`, our summary JSON.
    The tests run Locust with this same command."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(CHAT_USER),
        "--headless",
        *([] if host is None else ["--host", host]),
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        run_time,
        "--csv",
        str(prefix),
        *(["--html", f"{prefix}.html"] if html else []),
        "--chat-summary",
        str(summary_path),
        "--only-summary",
        *extra,
    ]


def failure_reasons(locust_status: int, summary: dict | None) -> list[str]:
    """Why the run failed; empty (PASS) only when Locust exited 0 and the chat verdict passed."""
    if summary is None:
        reasons = ["no chat summary: Locust did not reach the end of the test"]
    else:
        reasons = list(summary["problems"])
    if locust_status != 0:
        reasons.append(f"locust exit status {locust_status}")
    return reasons


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.run",
        description="Start a chat server (or --nodes N of them on a local Redis), run a "
        "headless Locust test against it, summarise.",
        epilog="Arguments after -- go to Locust, e.g. -- --chat-room-rate 50. "
        "See docs/LOADTEST.md and `python loadtest/chat_user.py --help` for the --chat-* options.",
    )
    parser.add_argument(
        "-u", "--users", type=_positive(int), default=30, help="simulated users (30)"
    )
    parser.add_argument(
        "-r", "--spawn-rate", type=_positive(float), default=10, help="joins per second (10)"
    )
    parser.add_argument("-t", "--run-time", default="15s", help="e.g. 15s, 1m, 1m30s (15s)")
    parser.add_argument(
        "--processes", type=int, default=0, help="Locust worker processes (0; -1: one per core)"
    )
    parser.add_argument(
        "--results",
        default=str(DEFAULT_RESULTS),
        help="report directory (results/latest, git-ignored; results/reference only on purpose)",
    )
    parser.add_argument("--prefix", default="locust", help="report file prefix (locust)")
    parser.add_argument(
        "--nodes",
        type=_positive(int),
        default=0,
        help="start a local redis-server and this many chat servers sharing one room over it "
        "(--bus, docs/CLUSTER.md), and spread the users over them (--chat-hosts); "
        "default: one server, no bus",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra option for chat.server, repeatable, e.g. --server-arg=--writers=2",
    )
    return parser


def _positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a number of `kind` above zero, or a one-line usage error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _processes_args(processes: int) -> list[str]:
    # A free port for master and workers, so another Locust on 5557 does not get in the way.
    port = str(free_port())
    return ["--processes", str(processes), "--master-bind-port", port, "--master-port", port]


def parse_span_s(span: str) -> float:
    """Seconds in a Locust time span: `90`, `15s`, `1m30s`, `2h`."""
    parts = _SPAN_RE.findall(span.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != span.strip().lower():
        raise ValueError(f"not a time span: {span!r}")
    return float(sum(int(n) * {"h": 3600, "m": 60}.get(u, 1) for n, u in parts))


def run_locust(cmd: list[str], timeout_s: float) -> int:
    """Run Locust in the foreground (its output shows); stop it by PID if it overruns."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        print(f"locust did not finish within {timeout_s:.0f} s, stopping it", file=sys.stderr)
        return _stop_group(proc)
    except KeyboardInterrupt:
        return _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> int:
    """SIGTERM to Locust (it shuts down and tells its workers to quit), then SIGKILL to its
    process group, which holds its --processes workers."""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(LOCUST_STOP_TIMEOUT_S) or 1
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait() or 1


# --- the report ---------------------------------------------------------------------------------


def read_rows(stats_csv: Path) -> dict[str, dict[str, str]]:
    """Locust's `_stats.csv` rows of this test, by name."""
    if not stats_csv.exists():
        return {}
    with open(stats_csv, newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f) if row["Type"] == "chat"}


def format_report(
    args: argparse.Namespace,
    rows: dict[str, dict[str, str]],
    summary: dict | None,
    server_use: dict | None,
    prefix: Path,
) -> str:
    """What a tester wants to read first, in a dozen lines."""
    out = [f"\n== chat load test: {args.users} users, {args.run_time} ==", "", *rows_table(rows)]
    if summary is None:
        out.append("\nno chat summary: Locust did not reach the end of the test (see its log)")
        return "\n".join(out)
    out.append("")
    out.extend(line.text for line in summary_lines(summary, "deliveries", server_use))
    out.append(f"\nreport: {prefix}.html, {prefix}_stats.csv, {prefix}_summary.json")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
