"""The load test's verdicts and figures: the delivery ledger, the FAIL verdicts when nothing
could be measured, and the CPU figures' busiest window.

The ledger scenario runs in a subprocess because Locust monkey-patches the process it is imported
into. No sleep splits reads here: the scenario feeds the load test's client one byte at a time
instead, and checks that each line counts exactly when its last byte arrives.

Promises (README.md "Load testing", docs/LOADTEST.md) -> tests (the rest are mapped in
test_loadtest.py and the other test_loadtest_*.py files):

- the room sends RATE messages a second whatever the number of users; 0: everyone listens
    -> test_a_room_where_everyone_only_listens_measures_no_delivery_and_fails
    -> test_loadtest.py: test_headless_run_... (assert_room_rate)
- rows: `connect` fails on refusal and on `! ` answers; `error` rows carry the server's text
    -> test_nothing_listening_on_the_port_is_a_fail_that_says_no_user_joined
    -> test_loadtest.py: test_refused_joins_and_server_errors_are_failures_with_their_reason
- delivery check: gaps lost, repeats duplicated, late joiners and early leavers owed their
  window, processes merged, foreign lines counted apart
    -> test_ledger_counts_gaps_and_missing_tails_as_lost_and_repeats_as_duplicated
- the verdict: FAIL, with reasons, on loss, connect failure, error, disconnect, or nothing
  measured; the `delivery-check` row fails with it; exit status 1 (2: usage error)
    -> test_nothing_listening_on_the_port_is_a_fail_that_says_no_user_joined
    -> test_a_room_where_everyone_only_listens_measures_no_delivery_and_fails
    -> test_a_missing_or_impossible_host_is_a_usage_error_and_a_fail
    -> test_loadtest.py: test_refused_joins_and_server_errors_are_failures_with_their_reason
- `--host` HOST:PORT, tcp://HOST:PORT, [::1]:PORT; no port or a bad one is a usage error
    -> test_nothing_listening_on_the_port_... (runs with tcp://)
    -> test_loadtest_options.py: test_host_forms_in_the_guide_parse_and_bad_ports_are_usage_errors
- CPU average and peak (peak never below the average), per Locust process and for the server
    -> test_busiest_window_* (three)
    -> test_loadtest.py: assert_clean_run
    -> test_loadtest_driver.py: test_make_loadtest_driver_starts_...
- the CSV holds the drain and the delivery-check row (the 1.2 s wait for locust#1806)
    -> every run_locust test (here and in test_loadtest.py) reads the delivery-check row from
       the CSV
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loadtest_helpers import run_locust, scenario_json

from harness import ServerProcess, free_port
from loadtest.cpu_use import cpu_use_pct  # no Locust import: safe in this process

LEDGER_SCENARIO = r"""
import json, time
from locust.event import EventHook
from chat.probe import probe_text
from chat.protocol import chat_line, encode_line, notice_line
from loadtest.client import ChatClient
from loadtest.ledger import DeliveryLedger, check_deliveries

def client(ledger, name, connected=True):
    c = ChatClient(("127.0.0.1", 9), name, ledger, EventHook())
    ledger.receivers.append(c.tally)
    c.connected = connected
    return c

def hear(c, sender, *seqs):
    now = time.monotonic_ns()
    c.on_data(b"".join(encode_line(chat_line(sender, probe_text(s, now))) for s in seqs), now)

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
joined, human = notice_line("someone joined the chat"), chat_line("human", "hello")
r5.on_data(encode_line(joined) + encode_line(human), 0)
# Reads split anywhere, one byte at a time, through a name's two-byte letter too: each line
# is still counted once, when its last byte arrives.
r6 = client(b, "r6")
now = time.monotonic_ns()
wire = b"".join(encode_line(chat_line(s, probe_text(q, now))) for s, q in [("bob", 1),
                ("bob", 2), ("bob", 3), ("\u0451\u0436", 1), ("\u0451\u0436", 2)])
counted_at, before = [], b.deliveries
start = before
for i in range(len(wire)):
    r6.on_data(wire[i : i + 1], now)
    if b.deliveries != before:
        counted_at.append(i)
        before = b.deliveries
assert counted_at == [i for i, byte in enumerate(wire) if byte == 10], counted_at
assert b.deliveries - start == 5
print(json.dumps([check_deliveries([a.report(), b.report()]), b.foreign_lines]))
"""


def test_ledger_counts_gaps_and_missing_tails_as_lost_and_repeats_as_duplicated() -> None:
    check, foreign = scenario_json(LEDGER_SCENARIO)
    assert check == {
        "senders": 2,
        "sent": 8,
        "expected": 5 + 5 + 3 + 2 + 5 + 3 + 4 + 3 + 2,
        "received": 4 + 6 + 2 + 2 + 5 + 2 + 3 + 3 + 2,
        "lost": 1 + 0 + 1 + 0 + 0 + 1 + 1,
        "duplicated": 1,
    }
    assert foreign == 1


# --- verdicts when nothing could be measured ----------------------------------------------------


def test_nothing_listening_on_the_port_is_a_fail_that_says_no_user_joined(tmp_path: Path) -> None:
    status, rows, summary, output = run_locust(
        tmp_path, f"tcp://127.0.0.1:{free_port()}", users=3, run_time="2s"
    )
    assert status == 1
    refused = summary["connect_failures"]
    # Three users try at once, then each again every second or more, for 2 s.
    assert 3 <= refused <= 9, refused
    assert int(rows["connect"]["Request Count"]) == int(rows["connect"]["Failure Count"]) == refused
    assert summary["users"] == summary["connects"] == 0
    assert summary["verdict"] == "FAIL"
    assert summary["problems"] == ["no user joined", f"{refused} connect failure(s)"]
    assert rows["delivery-check"]["Failure Count"] == "1"
    assert f"-> FAIL: no user joined; {refused} connect failure(s)" in output
    assert "-> OK" not in output
    assert "ConnectionRefusedError" in (tmp_path / "locust_failures.csv").read_text()


def test_a_room_where_everyone_only_listens_measures_no_delivery_and_fails(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    status, rows, summary, output = run_locust(
        tmp_path, server_process, "--chat-room-rate", "0", users=3, run_time="2s"
    )
    assert status == 1
    assert summary["users"] == summary["connects"] == 3
    assert summary["deliveries"]["sent"] == 0 and "send" not in rows  # 0: everyone only listens
    reason = "no delivery was expected (0 messages sent): nothing was measured"
    assert summary["problems"] == [reason]
    assert rows["delivery-check"]["Failure Count"] == "1"
    assert f"-> FAIL: {reason}" in output


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (None, "give the chat server as --host HOST:PORT, e.g. --host 127.0.0.1:5555"),
        ("127.0.0.1:99999", "--host '127.0.0.1:99999': the port must be 1-65535, not 99999"),
    ],
)
def test_a_missing_or_impossible_host_is_a_usage_error_and_a_fail(
    tmp_path: Path, host: str | None, reason: str
) -> None:
    status, rows, summary, output = run_locust(tmp_path, host, users=2, run_time="2s")
    assert status == 2, output[-3000:]
    assert f"ERROR/chat_user: {reason}" in output
    assert "refused" not in output.lower()
    assert "connect" not in rows  # nobody tried
    assert summary["problems"] == [reason, "no user joined"]
    assert rows["delivery-check"]["Failure Count"] == "1"
    assert f"-> FAIL: {reason}; no user joined" in output


# --- CPU figures --------------------------------------------------------------------------------


def test_busiest_window_of_a_short_run_is_the_whole_run() -> None:
    assert cpu_use_pct([(10.0, 1.0), (10.5, 1.5)], window_s=1.0) == (100.0, 100.0)
    assert cpu_use_pct([(0.0, 0.0), (4.0, 1.0), (8.0, 3.0)], window_s=10.0) == (37.5, 37.5)


def test_busiest_window_finds_a_burst_at_the_end() -> None:
    samples = [(0.0, 0.0), (1.0, 0.1), (2.0, 0.2), (3.0, 1.2)]
    assert cpu_use_pct(samples, window_s=1.0) == (40.0, 100.0)


@given(
    st.lists(st.tuples(st.floats(0.05, 3.0), st.floats(0.0, 2.0)), min_size=1, max_size=40),
    st.sampled_from([0.5, 1.0, 10.0]),
)
def test_busiest_window_is_never_below_the_average(steps: list, window_s: float) -> None:
    samples, t, cpu = [(0.0, 0.0)], 0.0, 0.0
    for dt, busy in steps:
        t, cpu = t + dt, cpu + dt * busy
        samples.append((t, cpu))
    average, peak = cpu_use_pct(samples, window_s)
    assert peak >= average


LATENCY_SCENARIO = r"""
import json
from locust.event import EventHook
from chat.probe import probe_text
from chat.protocol import chat_line, encode_line
from loadtest.client import ChatClient
from loadtest.identity import unique_name
from loadtest.ledger import DeliveryLedger, latency_over_time, merged_latency

MS = 1_000_000
alice = unique_name("alice")                  # one of ours: same clock, so timed
a, b = DeliveryLedger(), DeliveryLedger()   # two Locust processes
for ledger, late_ms, seqs in ((a, 0, range(90)), (b, 50, range(10))):
    c = ChatClient(("127.0.0.1", 9), "r", ledger, EventHook(), to_arrival=False)
    for seq in seqs:                          # sent at 1000 ms, read 2 ms later
        intended = 1000 * MS - late_ms * MS if late_ms else None
        body = probe_text(seq, 1000 * MS, intended_ns=intended)
        c.on_data(encode_line(chat_line(alice, body)), 1002 * MS)
reports = [a.report(), b.report()]
print(json.dumps([merged_latency(reports), latency_over_time(reports)]))
"""


def test_latency_histograms_merge_across_processes_corrected_beside_uncorrected() -> None:
    latency, over_time = scenario_json(LATENCY_SCENARIO)
    assert latency["timed"] == 100
    # 10 of 100 deliveries were sent 50 ms behind their schedule: only corrected counts it.
    assert latency["uncorrected_ms"]["max"] == pytest.approx(2, rel=0.01)
    assert latency["corrected_ms"]["p50"] == pytest.approx(2, rel=0.01)
    assert latency["corrected_ms"]["max"] == pytest.approx(52, rel=0.01)
    assert sum(row["count"] for row in over_time) == 100
