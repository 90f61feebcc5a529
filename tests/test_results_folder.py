"""Documented commands never touch the committed reference: local runs land in results/latest/.

Each test runs a documented command at a tiny size and compares `git status` of results/ before
and after, so it holds in a dirty tree too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
LATEST = RESULTS / "latest"
REFERENCE = RESULTS / "reference"

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)


def results_status() -> str:
    """Modified, added, deleted and untracked (not ignored) paths under results/."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", "results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def results_unchanged() -> Iterator[None]:
    """Fail if the command under test changed anything git sees under results/."""
    before = results_status()
    yield
    assert results_status() == before


@pytest.fixture
def keep_latest(tmp_path: Path) -> Iterator[None]:
    """Whatever the user's last run left in results/latest/ is put back afterwards."""
    saved = tmp_path / "latest"
    if LATEST.exists():
        shutil.copytree(LATEST, saved)
    try:
        yield
    finally:
        shutil.rmtree(LATEST, ignore_errors=True)
        if saved.exists():
            shutil.copytree(saved, LATEST)


def run(*args: str, timeout_s: float = 100) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )


def test_results_latest_is_ignored_by_git():
    probe = LATEST / "probe.txt"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(probe)], cwd=ROOT, check=False
    ).returncode
    assert ignored == 0, "results/latest/ must be git-ignored"


@pytest.mark.timeout(90)
def test_loadtest_run_writes_to_latest(results_unchanged, keep_latest):
    done = run("-m", "loadtest.run", "-u", "3", "-r", "3", "-t", "3s", timeout_s=80)
    assert (LATEST / "locust_summary.json").exists(), done.stdout + done.stderr
    assert (LATEST / "locust.html").exists()


@pytest.mark.timeout(90)
def test_report_of_the_reference_goes_to_latest(results_unchanged, keep_latest):
    done = run("-m", "bench.report", str(REFERENCE / "bench.json"))
    assert done.returncode == 0, done.stderr
    assert (LATEST / "REPORT.md").exists()
    assert (LATEST / "sweep.png").exists()


def test_a_report_of_any_reference_folder_goes_to_latest_unless_told():
    from bench.report import default_out

    for json_path in (REFERENCE / "bench.json", REFERENCE / "cluster" / "bench.json"):
        assert default_out(json_path) == LATEST, json_path
    assert default_out(LATEST / "bench.json") == LATEST


@pytest.mark.timeout(110)
def test_benchmark_only_run_writes_to_latest(results_unchanged, keep_latest):
    """One small full-size case: `pytest bench/ --benchmark-only` without --benchmark-json."""
    done = run(
        "-m",
        "pytest",
        "bench/test_latency.py",
        "--benchmark-only",
        "-k",
        "test_broadcast_latency and 2-threaded",
        "-p",
        "no:cacheprovider",
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (LATEST / "bench.json").exists()
    assert "benchmark headlines" in done.stdout
    assert "[  1/1]" in done.stdout


def test_make_bench_and_loadtest_write_to_latest_unless_told():
    if shutil.which("make") is None:
        pytest.skip("needs make")

    def commands(*args: str) -> str:
        # -n prints the recipes; -o keeps the venv stamps from being rebuilt.
        stamps = [
            "-o",
            ".venv/.installed-dev",
            "-o",
            ".venv/.installed-run",
            "-o",
            ".venv/bin/python",
        ]
        return subprocess.run(
            ["make", "-n", *stamps, *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    default = commands("bench", "loadtest")
    assert "--benchmark-json=results/latest/bench.json" in default
    assert "--results results/latest" in default
    assert "bench.report --check results/latest/bench.json --out results/latest" in default
    chosen = commands("bench", "OUT=results/reference")
    assert "--benchmark-json=results/reference/bench.json" in chosen
