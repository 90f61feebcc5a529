"""The Locust load test, run as users run it: a server subprocess, `locust --headless`, its CSV.

Locust monkey-patches the process it is imported into, so every run here is a subprocess
(tests/loadtest_helpers.py), stopped by its PID (Locust's --processes workers by its process
group). Here are the runs that measure; the verdicts, the delivery ledger and the CPU figures are
in test_loadtest_verdicts.py, the options in test_loadtest_options.py, `make loadtest` in
test_loadtest_driver.py.

Promises (README.md "Load testing", docs/LOADTEST.md) -> tests (the rest are mapped in the other
test_loadtest_*.py files):

- each user joins under a unique name, reads everything, times every message (`deliver`)
    -> test_headless_run_connects_sends_and_delivers_every_message_without_failures
- ... whatever language the server speaks (joining is chat.protocol's ClientHandshake)
    -> test_users_join_a_server_speaking_russian_by_locale_and_every_delivery_arrives
- the room sends RATE messages a second whatever the number of users; 0: everyone listens
    -> test_headless_run_... (assert_room_rate)
    -> test_loadtest_verdicts.py:
       test_a_room_where_everyone_only_listens_measures_no_delivery_and_fails
- `--chat-tls`/`--chat-ca` and $CHAT_PASSWORD: users (and the `/stats` visits) speak TLS and
  present the password
    -> test_users_join_over_tls_with_the_password_and_every_delivery_arrives
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
    -> test_loadtest_verdicts.py:
       test_nothing_listening_on_the_port_is_a_fail_that_says_no_user_joined
- `disconnect` fails with the reason and the server's last words
    -> test_a_server_going_away_is_a_disconnect_failure_with_its_last_words
- the verdict: FAIL, with reasons, on loss, connect failure, error, disconnect, or nothing
  measured; the `delivery-check` row fails with it; exit status 1 (2: usage error)
    -> test_refused_joins_and_server_errors_are_failures_with_their_reason
    -> test_loadtest_verdicts.py: the three tests under "verdicts when nothing could be measured"
- cross-check with `/stats`: messages_in and deliveries_out agree exactly
    -> assert_clean_run (both clean-run tests)
- CPU average and peak (peak never below the average), per Locust process and for the server
    -> assert_clean_run
    -> test_loadtest_verdicts.py: test_busiest_window_* (three)
    -> test_loadtest_driver.py: test_make_loadtest_driver_starts_...
- the CSV holds the drain and the delivery-check row (the 1.2 s wait for locust#1806)
    -> every run_locust test (here and in test_loadtest_verdicts.py) reads the delivery-check row
       from the CSV
- not tested: the web UI, `--master`/`--worker` across machines and `-f -`, a worker that does
  not report, `--chat-clock wall`, `--chat-latency-to` values, `--chat-connect-timeout-s`,
  `--chat-name-prefix`, subclassing ChatUser, the CPU-bound and busy-machine flags.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from loadtest_helpers import run_locust
from tls_helpers import PASSWORD, TlsFiles

from chat.password import PASSWORD_ENV
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
    # Beside Locust's CSVs: corrected latency per second, every delivery of the run in it.
    over_time = (tmp_path / "locust_latency_over_time.csv").read_text().splitlines()
    assert over_time[0] == "Timestamp,Deliveries,p50 ms,p99 ms,max ms"
    latency = summary["latency"]
    assert latency["timed"] > 0
    assert sum(int(line.split(",")[1]) for line in over_time[1:]) == latency["timed"]
    assert latency["corrected_ms"]["max"] >= latency["uncorrected_ms"]["max"]
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


def test_users_join_over_tls_with_the_password_and_every_delivery_arrives(
    tmp_path: Path, tls_files: TlsFiles, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = ("--password-file", str(password_file))
    server = start_server("--quiet", *password, *tls_files.server_args())
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)  # Locust's subprocess inherits it
    options = ("--chat-room-rate", "20", "--chat-ca", str(tls_files.ca_cert))
    try:
        status, rows, summary, output = run_locust(tmp_path, server, *options, users=20)
    finally:
        server.stop()
    assert_clean_run(status, rows, summary, output, users=20)
    assert PASSWORD not in output


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
