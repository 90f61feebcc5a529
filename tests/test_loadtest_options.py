"""The load test's options: the `--chat-*` options the guide and the README name, their help,
their bad values, and the `--host` forms.

Locust monkey-patches the process it is imported into, so the locustfile and the option parser
run in subprocesses here.

Promises (README.md "Load testing", docs/LOADTEST.md) -> tests (the rest are mapped in
test_loadtest.py and the other test_loadtest_*.py files):

- `--host` HOST:PORT, tcp://HOST:PORT, [::1]:PORT; no port or a bad one is a usage error
    -> test_host_forms_in_the_guide_parse_and_bad_ports_are_usage_errors
    -> test_loadtest_verdicts.py: test_nothing_listening_on_the_port_... (runs with tcp://)
- `python loadtest/chat_user.py --help` lists every `--chat-*` option of the guide
    -> test_every_chat_option_in_the_guide_is_listed_by_the_locustfile_help
    -> test_every_chat_option_the_readme_names_exists
- ... under a heading of their own, `--chat-message-bytes` in bytes; without Locust installed,
  one line saying how to install it, status 1
    -> test_locustfile_help_lists_the_chat_options_under_their_own_heading
    -> test_locustfile_help_without_locust_installed_says_how_to_install_it
- bad `--chat-*` values (negative rates, zero sizes, nan, a prefix names cannot start with, a
  `--chat-hosts` entry without a port or empty) are one-line usage errors, status 2
    -> test_bad_chat_option_values_are_one_line_usage_errors
- `--chat-hosts` spreads users over the hosts: user i of worker W on host (W + i) mod n; a
  `--host` that is not one of them is one ERROR line, status 2
    -> test_users_are_spread_over_the_hosts_in_turn_from_the_worker_index
    -> test_a_host_that_is_not_one_of_the_chat_hosts_is_one_error_line
    -> test_loadtest_cluster.py (real runs, over one server given twice and over two nodes)
"""

from __future__ import annotations

import json
import re
import subprocess

from loadtest_helpers import CHAT_USER, ROOT, run_python, scenario_json


def locustfile_help() -> str:
    done = run_python(str(CHAT_USER), "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_chat_option_in_the_guide_is_listed_by_the_locustfile_help() -> None:
    guide = (ROOT / "docs" / "LOADTEST.md").read_text()
    documented = set(re.findall(r"^\| `(--chat-[a-z-]+)`", guide, re.MULTILINE))
    listed = set(re.findall(r"(--chat-[a-z-]+)", locustfile_help()))
    assert len(documented) == 12, documented
    assert documented == listed


def test_every_chat_option_the_readme_names_exists() -> None:
    named = set(re.findall(r"(--chat-[a-z-]+)", (ROOT / "README.md").read_text()))
    assert named <= set(re.findall(r"(--chat-[a-z-]+)", locustfile_help()))


def test_locustfile_help_lists_the_chat_options_under_their_own_heading() -> None:
    text = locustfile_help()
    heading = "\nChat load test options (loadtest/chat_user.py):\n"
    assert heading in text
    before, after = text.split(heading, 1)
    # The section runs to the next heading: the next line that is not indented.
    own_section = re.split(r"\n(?=\S)", after, maxsplit=1)[0]
    assert re.findall(r"--chat-[a-z-]+", before) == []
    listed = re.findall(r"^  (--chat-[a-z-]+)", own_section, re.MULTILINE)
    assert len(listed) == 12, own_section
    message_bytes = own_section.split("--chat-message-bytes", 1)[1].split("\n  --", 1)[0]
    assert "bytes" in message_bytes and "character" not in message_bytes


def test_locustfile_help_without_locust_installed_says_how_to_install_it() -> None:
    # -S: this Python without its site-packages, so without Locust, as a plain python3 would be.
    done = run_python("-S", str(CHAT_USER), "--help")
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "locust" in done.stderr and "not installed" in done.stderr
    assert "make test" in done.stderr and "pip install -e '.[loadtest]'" in done.stderr


OPTION_SCENARIO = r"""
import contextlib, io, json, sys
import loadtest.options  # registers the --chat-* options
from locust.argument_parser import get_parser
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parsed = get_parser().parse_args(["-f", "chat_user.py", *args])
            status = 0
        except SystemExit as exc:
            status = exc.code
    out.append([status, err.getvalue()])
print(json.dumps(out))
"""


# Each case: the arguments, and the usage error they are refused with (None: accepted).
BAD_CHAT_OPTION_CASES = [
    (["--chat-room-rate", "-1"], "argument --chat-room-rate: must be 0 or more, not -1"),
    (
        ["--chat-room-rate", "nan"],
        "argument --chat-room-rate: must be a finite number, not nan",
    ),
    (["--chat-room-rate", "x"], "argument --chat-room-rate: not a number: 'x'"),
    (["--chat-message-bytes", "0"], "argument --chat-message-bytes: must be 1 or more, not 0"),
    (
        ["--chat-message-bytes", "1.5"],
        "argument --chat-message-bytes: not a whole number: '1.5'",
    ),
    (["--chat-drain-s", "0"], "argument --chat-drain-s: must be above 0, not 0"),
    (
        ["--chat-deliver-sample", "0"],
        "argument --chat-deliver-sample: must be 1 or more, not 0",
    ),
    (
        ["--chat-connect-timeout-s", "inf"],
        "argument --chat-connect-timeout-s: must be a finite number, not inf",
    ),
    (
        ["--chat-name-prefix", "a b"],
        "argument --chat-name-prefix: 'a b' makes names the server",
    ),
    (
        ["--chat-hosts", "127.0.0.1:5555,127.0.0.1"],
        "argument --chat-hosts: host '127.0.0.1' has no port; use HOST:PORT, e.g. 127.0.0.1:5555",
    ),
    (
        ["--chat-hosts", "127.0.0.1:5555,,127.0.0.1:5556"],
        "argument --chat-hosts: '127.0.0.1:5555,,127.0.0.1:5556' has an empty entry; use "
        "H1:P1,H2:P2, e.g. 127.0.0.1:5555,127.0.0.1:5556",
    ),
    (
        ["--chat-hosts", "127.0.0.1:5555,127.0.0.1:0"],
        "argument --chat-hosts: host '127.0.0.1:0': the port must be 1-65535, not 0",
    ),
    (["--chat-hosts", ","], "argument --chat-hosts: no host given; use H1:P1,H2:P2"),
    (["--chat-room-rate", "0", "--chat-message-bytes", "1", "--chat-drain-s", "0.5"], None),
    (["--chat-hosts", "127.0.0.1:5555, [::1]:5556,tcp://127.0.0.1:5555"], None),
]


def test_bad_chat_option_values_are_one_line_usage_errors() -> None:
    cases = BAD_CHAT_OPTION_CASES
    done = parse_chat_options([args for args, _ in cases])
    assert done.returncode == 0, done.stderr
    for (args, message), (status, stderr) in zip(cases, json.loads(done.stdout), strict=True):
        if message is None:
            assert (status, stderr) == (0, ""), args
            continue
        assert status == 2, args
        assert len(stderr.splitlines()) == 1 and f"error: {message}" in stderr, (args, stderr)
    # And as users meet it: Locust itself stops at once with that one line and status 2.
    done = locust_headless("--chat-room-rate", "-1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        done.stderr.split(":")[0] + ": error: argument --chat-room-rate: must be 0 or more, not -1"
    ]


def parse_chat_options(arg_lists: list[list[str]]) -> subprocess.CompletedProcess[str]:
    """OPTION_SCENARIO run on `arg_lists`: its stdout is [exit status, stderr] per list, as JSON."""
    return run_python("-c", OPTION_SCENARIO, json.dumps(arg_lists))


def locust_headless(*args: str) -> subprocess.CompletedProcess[str]:
    """`locust -f loadtest/chat_user.py --headless` with `args`, run to its end (bounded)."""
    return run_python("-m", "locust", "-f", str(CHAT_USER), "--headless", *args)


ADDRESS_SCENARIO = r"""
import json
from loadtest.options import parse_address
out = {}
for host in ["127.0.0.1:5555", "tcp://127.0.0.1:5555/", "[::1]:6000", ":7000", "127.0.0.1",
             "127.0.0.1:x", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999", ""]:
    try:
        out[host] = list(parse_address(host))
    except ValueError as exc:
        out[host] = str(exc)
print(json.dumps(out))
"""


def test_host_forms_in_the_guide_parse_and_bad_ports_are_usage_errors() -> None:
    assert scenario_json(ADDRESS_SCENARIO) == {
        "127.0.0.1:5555": ["127.0.0.1", 5555],
        "tcp://127.0.0.1:5555/": ["127.0.0.1", 5555],
        "[::1]:6000": ["::1", 6000],
        ":7000": ["127.0.0.1", 7000],
        "127.0.0.1": "--host '127.0.0.1' has no port; use HOST:PORT, e.g. 127.0.0.1:5555",
        "127.0.0.1:x": "--host '127.0.0.1:x' has no port; use HOST:PORT, e.g. 127.0.0.1:5555",
        "127.0.0.1:0": "--host '127.0.0.1:0': the port must be 1-65535, not 0",
        "127.0.0.1:65536": "--host '127.0.0.1:65536': the port must be 1-65535, not 65536",
        "127.0.0.1:99999": "--host '127.0.0.1:99999': the port must be 1-65535, not 99999",
        "": "give the chat server as --host HOST:PORT, e.g. --host 127.0.0.1:5555",
    }


HOSTS_SCENARIO = r"""
import argparse, json
from loadtest.options import chat_addresses, user_host_index
options = argparse.Namespace(chat_hosts="127.0.0.1:5555,127.0.0.1:5556,127.0.0.1:5557")
out = {
    "local": [user_host_index(3, 0, i) for i in range(6)],
    "worker 1": [user_host_index(3, 1, i) for i in range(6)],
    "unset worker": [user_host_index(2, -1, i) for i in range(3)],
    "addresses": chat_addresses(options, None),
    "with its --host": chat_addresses(options, "127.0.0.1:5556"),
    "host only": chat_addresses(argparse.Namespace(chat_hosts=""), "127.0.0.1:6000"),
}
try:
    chat_addresses(options, "127.0.0.1:6000")
except ValueError as exc:
    out["conflict"] = str(exc)
print(json.dumps(out))
"""


def test_users_are_spread_over_the_hosts_in_turn_from_the_worker_index() -> None:
    out = scenario_json(HOSTS_SCENARIO)
    assert out["local"] == [0, 1, 2, 0, 1, 2]
    assert out["worker 1"] == [1, 2, 0, 1, 2, 0]
    assert out["unset worker"] == [0, 1, 0]
    hosts = [["127.0.0.1", 5555], ["127.0.0.1", 5556], ["127.0.0.1", 5557]]
    assert out["addresses"] == out["with its --host"] == hosts
    assert out["host only"] == [["127.0.0.1", 6000]]
    assert out["conflict"] == (
        "--host '127.0.0.1:6000' is not one of --chat-hosts "
        "'127.0.0.1:5555,127.0.0.1:5556,127.0.0.1:5557': give one or the other"
    )


def test_a_host_that_is_not_one_of_the_chat_hosts_is_one_error_line() -> None:
    done = locust_headless(
        "--host", "127.0.0.1:1", "--chat-hosts", "127.0.0.1:2,127.0.0.1:3", "-u", "1", "-t", "2s"
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "is not one of --chat-hosts" in errors[0], done.stderr
