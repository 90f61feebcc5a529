"""The harness (harness/) and the benchmark swarm, against real server processes on 127.0.0.1.

The swarm is the bench's own driver (bench/swarm.py); it is tested here because it must join a
server in whatever language the server speaks. Every server is stopped by its PID.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from bench.swarm import SenderPlan, Swarm
from chat.protocol import parse_server_line
from harness import Peer, free_port, start_chat_server, start_process

# The server picks its language from LC_ALL, LC_MESSAGES, then LANG: only LANG says Russian here.
RUSSIAN_LOCALE = {"LANG": "ru_RU.UTF-8", "LC_ALL": "", "LC_MESSAGES": ""}
SWARM_CLIENTS = 4
PROBES_PER_SENDER = 20
TIMEOUT_S = 20.0


def test_swarm_joins_a_server_speaking_russian_by_locale_and_every_delivery_arrives() -> None:
    server = start_chat_server("--quiet", env=RUSSIAN_LOCALE)  # no --lang
    try:
        peer = Peer(server.address)
        welcome = parse_server_line(peer.join("observer"))
        peer.close()
        assert welcome.kind == "notice" and "welcome" not in welcome.text, welcome
        swarm = Swarm(server.address)
        try:
            swarm.connect(SWARM_CLIENTS, timeout_s=TIMEOUT_S)
            swarm.settle()
            swarm.begin_window()
            plans = [SenderPlan(i, PROBES_PER_SENDER) for i in range(SWARM_CLIENTS)]
            report = swarm.drive(plans, timeout_s=TIMEOUT_S)
            verdict = swarm.verify()
        finally:
            swarm.close()
    finally:
        assert server.stop() == 0
    assert not report.timed_out
    assert verdict.ok, verdict.problems()
    expected = SWARM_CLIENTS * (SWARM_CLIENTS - 1) * PROBES_PER_SENDER
    assert verdict.delivered == verdict.expected == expected


def test_a_started_server_listens_where_it_said_and_its_log_file_has_its_stderr(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "server.log"
    server = start_chat_server("--lang", "en", log_path=log_path)
    try:
        with socket.create_connection(server.address, timeout=5):
            pass
    finally:
        assert server.stop() == 0
    assert f"listening on {server.host}:{server.port}" in log_path.read_text()
    assert f"listening on {server.host}:{server.port}" in server.stderr_text


def test_a_server_that_exits_before_listening_is_an_error_with_what_it_said() -> None:
    cmd = [sys.executable, "-c", "import sys; sys.exit('no such option')"]
    with pytest.raises(RuntimeError, match="no such option"):
        start_process(cmd, timeout_s=TIMEOUT_S)


def test_a_free_port_has_nobody_listening_and_can_be_bound() -> None:
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_bench_chat_args_reach_every_chat_server_and_a_case_s_own_options_win(monkeypatch):
    """BENCH_CHAT_ARGS measures one change (`--compare`): both chat.server kinds get it, the
    peers and the asyncio server do not, and a case's own options come after it."""
    from bench.servers import server_command

    monkeypatch.setenv("BENCH_CHAT_ARGS", "--switch-interval 0.005 --max-clients 7")
    threaded = server_command("threaded", "--max-clients", "9")
    assert threaded[threaded.index("--switch-interval") + 1] == "0.005"
    assert threaded.index("--max-clients") < len(threaded) - 2  # the run's, before the case's
    assert threaded[-2:] == ["--max-clients", "9"]  # argparse keeps the last: the case's own
    inline = server_command("inline")
    assert "--switch-interval" in inline and inline[-2:] == ["--delivery", "inline"]
    assert "--switch-interval" not in server_command("asyncio")
    monkeypatch.delenv("BENCH_CHAT_ARGS")
    assert "--switch-interval" not in server_command("threaded")
