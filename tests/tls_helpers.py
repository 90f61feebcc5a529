"""What the TLS and password tests share: certificates made by trustme (harness/certs.py) and
password files written by `python -m chat.server hash-password` itself.

The fixtures here are registered by tests/conftest.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.certs import TlsFiles, make_tls_files

__all__ = [
    "PASSWORD",
    "TlsFiles",
    "hash_password",
    "password_file",
    "server_start_failure",
    "tls_files",
]

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def hash_password(password: str) -> str:
    """What `python -m chat.server hash-password` writes for `password` piped in."""
    done = subprocess.run(
        [sys.executable, "-m", "chat.server", "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="session")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A password file for PASSWORD, written as a user would."""
    path = tmp_path_factory.mktemp("password") / "chat.pass"
    path.write_text(hash_password(PASSWORD))
    return path


def server_start_failure(*args: str) -> str:
    """Start `python -m chat.server --port 0 ARGS`, which must stop at once with exit status 1
    and one line on stderr, no traceback; that line."""
    done = subprocess.run(
        [sys.executable, "-m", "chat.server", "--port", "0", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    return lines[0]
