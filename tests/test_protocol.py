"""The sans-IO protocol: framing, limits, names, commands and server lines. No sockets needed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import protocol
from chat.probe import parse_probe, parse_probe_times, probe_text
from chat.protocol import (
    LINE_TOO_LONG,
    Accepted,
    ClientHandshake,
    Command,
    Leave,
    LineDecoder,
    Message,
    NameRefused,
    parse_client_line,
    parse_server_line,
)


def feed_in_pieces(decoder: LineDecoder, data: bytes, cuts: list[int]) -> list:
    out, start = [], 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out.extend(decoder.feed(data[start:cut]))
        start = cut
    return out


line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=60
)


@settings(max_examples=300)
@given(lines=st.lists(line_text, max_size=8), data=st.data(), crlf=st.booleans())
def test_lines_survive_any_split_and_merge_of_the_byte_stream(lines, data, crlf):
    end = b"\r\n" if crlf else b"\n"
    stream = b"".join(line.encode() + end for line in lines)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream)))
    got = feed_in_pieces(LineDecoder(), stream, cuts)
    assert [line.decode() for line in got] == lines


def test_every_byte_offset_of_multibyte_text_reassembles_exactly():
    text = "привет, мир 👋 ok"
    stream = text.encode() + b"\nnext\n"
    for cut in range(len(stream) + 1):
        decoder = LineDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == [text.encode(), b"next"], cut


def test_crlf_split_between_reads_is_one_terminator():
    decoder = LineDecoder()
    assert decoder.feed(b"hi\r") == []
    assert decoder.feed(b"\nthere\r\n") == [b"hi", b"there"]


def test_overlong_line_is_discarded_as_it_streams_and_never_buffered_whole():
    decoder = LineDecoder(max_line_bytes=10)
    assert decoder.feed(b"x" * 8) == []
    assert decoder.feed(b"x" * 8) == [LINE_TOO_LONG]  # reported as soon as the limit is crossed
    assert decoder.buffered_bytes == 0
    for _ in range(100):  # the rest of the long line streams in and is dropped
        assert decoder.feed(b"y" * 1000) == []
        assert decoder.buffered_bytes == 0
    assert decoder.feed(b"yyy\nok\n") == [b"ok"]


def test_overlong_line_inside_one_chunk_is_replaced_by_the_marker_in_place():
    decoder = LineDecoder(max_line_bytes=5)
    assert decoder.feed(b"ab\n" + b"z" * 6 + b"\ncd\n") == [b"ab", LINE_TOO_LONG, b"cd"]


def test_line_of_exactly_the_limit_is_accepted_with_either_terminator():
    assert LineDecoder(5).feed(b"12345\n") == [b"12345"]
    decoder = LineDecoder(5)
    assert decoder.feed(b"12345\r") == []
    assert decoder.feed(b"\n") == [b"12345"]


def test_invalid_utf8_is_framed_and_left_for_the_caller_to_reject():
    assert LineDecoder().feed(b"\xff\xfe\n") == [b"\xff\xfe"]


def test_name_rules():
    assert protocol.name_problem("alice") is None
    assert protocol.name_problem("Вася_1.2-3") is None
    assert protocol.name_problem("x" * 32) is None
    assert protocol.name_problem("") == "empty"
    assert protocol.name_problem("x" * 33) == "too-long"
    for bad in ("a b", "a:b", "a\x1bb", "*x", "a/b"):
        assert protocol.name_problem(bad) == "bad-char", bad
    assert protocol.name_key("Alice") == protocol.name_key("aLICE")
    # The Unicode detail (confusables, invisible characters, NFC) is specified in test_names.py.


def test_a_chat_line_is_recognised_only_with_a_valid_name():
    assert parse_server_line("alice\u3164: hi").kind == "notice"
    assert parse_server_line("José: hola") == protocol.ServerLine("chat", "hola", "José")


def test_client_lines_are_classified():
    assert parse_client_line("hello") == Message("hello")
    assert parse_client_line("//etc/passwd") == Message("/etc/passwd")
    assert parse_client_line("leave") == Leave()
    assert parse_client_line("/quit") == Leave()
    assert parse_client_line("/QUIT now") == Leave()
    assert parse_client_line("/msg bob hi there") == Command("msg", "bob hi there")
    assert parse_client_line("/WHO") == Command("who", "")
    assert parse_client_line("   ") is None
    assert parse_client_line("leaving") == Message("leaving")


def test_server_lines_are_told_apart_by_prefix():
    assert parse_server_line("alice: hi: there") == protocol.ServerLine(
        "chat", "hi: there", "alice"
    )
    assert parse_server_line("bob (private): psst") == protocol.ServerLine("private", "psst", "bob")
    assert parse_server_line("* alice joined the chat").kind == "notice"
    assert parse_server_line("! name refused").kind == "error"
    assert parse_server_line("no colon here").kind == "notice"
    assert parse_server_line("not a name: x").kind == "notice"


def test_stats_line_round_trips():
    stats = {"clients": 3, "uptime_s": 1.5}
    line = protocol.notice_line(protocol.format_stats(stats))
    assert protocol.parse_stats(parse_server_line(line).text) == {"clients": 3.0, "uptime_s": 1.5}


def test_probe_bodies_round_trip_and_pad_to_size():
    body = probe_text(7, 123456789, size=64)
    assert len(body) == 64
    assert parse_probe(body) == (7, 123456789)
    assert parse_probe(probe_text(1, 2)) == (1, 2)
    assert parse_probe("hello") is None
    assert parse_probe("#x y") is None


def test_paced_probe_carries_its_intended_time_and_plain_ones_use_the_send_time():
    body = probe_text(3, 2000, size=80, intended_ns=1500)
    assert len(body) == 80
    assert parse_probe_times(body) == (3, 2000, 1500)
    assert parse_probe(body) == (3, 2000)
    assert parse_probe_times(probe_text(4, 9, size=64)) == (4, 9, 9)


@pytest.mark.parametrize(
    "greeting, welcome",
    [
        ("* hello! send your name: 1-32 letters", "* welcome, bob! 2 online: alice, bob"),
        ("* привет! отправьте своё имя", "* добро пожаловать, bob! в чате 2: alice, bob"),
    ],
)
def test_client_handshake_knows_the_outcome_in_any_language(greeting, welcome):
    handshake = ClientHandshake()
    assert handshake.line_received(greeting) is None
    assert handshake.line_received("! name refused: alice is taken") == NameRefused(
        "name refused: alice is taken"
    )
    assert handshake.line_received(welcome) == Accepted(welcome[2:])


def test_client_handshake_sees_a_refusal_before_any_greeting():
    assert ClientHandshake().line_received("! server full (2 clients)") == NameRefused(
        "server full (2 clients)"
    )
