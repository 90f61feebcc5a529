"""The server password: `/pass` before the name, a salted scrypt hash in a file, wrong guesses
closed slowly, the password never in a log, argv or `/stats`. tests/README.md maps each promise
here."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from client_helpers import pty_output, run_piped
from conftest import Peer, running, start_server
from tls_helpers import PASSWORD, TlsFiles, hash_password, server_start_failure

from chat.password import WRONG_PASSWORD_DELAY_S, PasswordHash
from chat.protocol import password_line

GREETING = "* hello! send /pass PASSWORD, then your name: 1-32 letters, digits, _ - or ."


def test_right_password_then_a_name_joins(password_file: Path):
    with running(password_file=str(password_file)) as srv:
        alice = Peer(srv.address, "alice", password=PASSWORD)
        bob = Peer(srv.address)
        bob.send(password_line(f"  {PASSWORD} "))  # blanks around it do not count
        assert bob.join("bob").startswith("* welcome, bob! 2 online")
        alice.expect_line("* bob joined the chat")


def test_the_greeting_asks_for_the_password_first(password_file: Path):
    with running(password_file=str(password_file)) as srv:
        with socket.create_connection(srv.address, timeout=5) as raw:
            assert raw.recv(4096).decode() == GREETING + "\n"


@pytest.mark.parametrize(
    ("first_line", "error"),
    [
        (password_line("guess"), "! wrong password, closing"),
        ("alice", "! this server needs a password: send /pass PASSWORD first, closing"),
    ],
)
def test_a_wrong_or_missing_password_is_told_then_closed_after_a_delay(
    password_file: Path, first_line: str, error: str
):
    with running(password_file=str(password_file)) as srv:
        inside = Peer(srv.address, "inside", password=PASSWORD)
        guesser = Peer(srv.address)
        started = time.monotonic()
        guesser.send(first_line)
        guesser.send("alice")
        guesser.expect_line(error)
        assert guesser.wait_closed(timeout_s=5) == []
        assert time.monotonic() - started >= WRONG_PASSWORD_DELAY_S * 0.9
        assert srv.registry.names() == ["inside"]
        assert inside.barrier() == []  # nobody else noticed


def test_wrong_guesses_do_not_hold_up_anyone_else(password_file: Path):
    with running(password_file=str(password_file)) as srv:
        guessers = [Peer(srv.address) for _ in range(5)]
        for guesser in guessers:
            guesser.send(password_line("guess"))
        started = time.monotonic()
        Peer(srv.address, "alice", password=PASSWORD)  # joins while all five wait out their delay
        assert time.monotonic() - started < WRONG_PASSWORD_DELAY_S
        for guesser in guessers:
            guesser.wait_closed()


def test_a_password_over_tls(password_file: Path, tls_files: TlsFiles):
    options = {"password_file": str(password_file), **tls_files.server_options()}
    with running(**options) as srv:
        alice = Peer(srv.address, "alice", tls=tls_files.client_context(), password=PASSWORD)
        assert alice.barrier() == []


def test_a_pass_line_to_a_server_without_a_password_is_ignored():
    with running() as srv:
        alice = Peer(srv.address, "alice", password="anything")
        assert alice.barrier() == []


def test_hash_password_writes_a_salted_hash_and_never_the_password():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert PASSWORD not in first and first.count("\n") == 1
    assert first != second  # salted
    assert PasswordHash.parse(first).matches(PASSWORD)
    assert not PasswordHash.parse(first).matches(PASSWORD + "x")


@pytest.mark.parametrize("which", ["missing", "not a hash"])
def test_an_unusable_password_file_is_one_line_and_exit_one(tmp_path: Path, which: str):
    path = tmp_path / "chat.pass"
    if which == "not a hash":
        path.write_text(PASSWORD + "\n")  # the password itself: refused, never echoed
    line = server_start_failure("--password-file", str(path))
    assert str(path) in line and PASSWORD not in line


def test_the_password_is_never_in_the_log_argv_or_stats(password_file: Path):
    server = start_server("--log-level", "DEBUG", "--password-file", str(password_file))
    try:
        with open(f"/proc/{server.pid}/cmdline", "rb") as f:
            assert PASSWORD.encode() not in f.read()
        alice = Peer(server.address, "alice", password=PASSWORD)
        guesser = Peer(server.address)
        guesser.send(password_line(PASSWORD[:-1]))
        guesser.wait_closed()
        alice.send("/stats")
        stats = alice.expect(lambda line: line.startswith("* stats: "))
        assert PASSWORD not in stats and PASSWORD[:-1] not in stats
    finally:
        server.stop()
    assert "refused 127.0.0.1" in server.stderr_text and "wrong password" in server.stderr_text
    assert PASSWORD[:-1] not in server.stderr_text  # neither the right one nor the guess


def test_the_client_presents_chat_password_from_the_environment(password_file: Path):
    server = start_server("--quiet", "--password-file", str(password_file))
    try:
        bob = Peer(server.address, "bob", password=PASSWORD)
        done = run_piped(server.port, "alice\nhi bob\n", env={"CHAT_PASSWORD": PASSWORD})
        assert done.returncode == 0, done.stderr
        bob.expect_line("alice: hi bob")
        wrong = run_piped(server.port, "carol\n", env={"CHAT_PASSWORD": "guess"})
        assert wrong.returncode == 1
        assert "! wrong password, closing" in wrong.stdout
        assert len(wrong.stderr.splitlines()) == 1 and "Traceback" not in wrong.stderr
    finally:
        server.stop()


def test_the_client_asks_for_the_password_without_echo_on_a_terminal(password_file, pty_client):
    server = start_server("--quiet", "--lang", "en", "--password-file", str(password_file))
    try:
        child = pty_client(server.port, "--password", "--name", "alice")
        child.expect_exact("password: ")
        child.sendline(PASSWORD)
        child.expect_exact("* welcome, alice!")
        assert PASSWORD.encode() not in pty_output(child)  # never echoed
    finally:
        server.stop()
