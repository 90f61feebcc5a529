"""Names and text that cannot impersonate (issue 9): name profile, confusable keys, text rule, log
escaping. Pure functions, no sockets."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chat import names, protocol
from chat.protocol import (
    Command,
    Message,
    Refused,
    for_log,
    name_key,
    name_problem,
    normalize_name,
    parse_client_line,
    text_problem,
)
from chat.texts import EN, RU

IMPERSONATIONS_OF_ALICE = {
    "Cyrillic а": "\u0430lice",
    "fullwidth": "ａｌｉｃｅ",
    "dotless ı": "al\u0131ce",
    "capitals": "ALICE",
    "superscript two": "alice²",
    "circled one": "alice①",
    "Hangul filler U+3164": "alice\u3164",
    "halfwidth Hangul filler U+FFA0": "alice\uffa0",
    "Hangul jungseong filler U+1160": "alice\u1160",
    "zero-width space": "alice\u200b",
    "zero-width joiner": "ali\u200dce",
    "right-to-left override": "\u202ealice",
    "soft hyphen": "ali\u00adce",
    "variation selector": "alice\ufe0f",
    "combining grapheme joiner": "alice\u034f",
}


@pytest.mark.parametrize("fake", IMPERSONATIONS_OF_ALICE.values(), ids=IMPERSONATIONS_OF_ALICE)
def test_every_impersonation_of_alice_is_refused_or_collides_with_alice(fake):
    assert name_problem(fake) is not None or name_key(fake) == name_key("alice")


def test_invisible_fillers_and_format_characters_are_refused_as_invisible():
    for fake in ("alice\u3164", "alice\uffa0", "alice\u1160", "alice\u200b", "\u202ealice"):
        assert name_problem(fake) == "invisible", ascii(fake)


def test_compatibility_forms_are_not_allowed_in_names():
    for fake in ("alice²", "alice①", "ﬁsh", "Ⅻ", "ǅemal"):
        assert name_problem(fake) == "not-allowed", fake


@pytest.mark.parametrize(
    "composed",
    ["José", "한국어", "Ångström", "Ελένη", "Phở"],
)
def test_nfc_and_nfd_spellings_are_one_name_shown_composed(composed):
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert name_problem(decomposed) is None
    assert name_key(decomposed) == name_key(composed)
    assert normalize_name(decomposed) == composed


def test_fullwidth_names_are_shown_in_ordinary_width():
    assert normalize_name("ａｌｉｃｅ") == "alice"
    assert normalize_name("Alice") == "Alice"  # case is kept for display


@pytest.mark.parametrize(
    "name", ["alice", "Алиса", "José", "李小龙", "bob.smith", "x_1-2", "नमस्ते", "علي", "Straße"]
)
def test_international_names_are_valid(name):
    assert name_problem(name) is None
    assert normalize_name(name) == name


def test_uniqueness_ignores_case_in_every_script():
    assert name_key("Alice") == name_key("aLICE")
    assert name_key("Алиса") == name_key("АЛИСА")
    assert name_key("Straße") == name_key("STRASSE")


def test_look_alike_names_in_other_scripts_collide():
    assert name_key("\u0430lice") == name_key("alice")  # Cyrillic а
    assert name_key("p\u0430ypal") == name_key("paypal")
    assert name_key("b0b") == name_key("bob")  # skeleton prototype O, folded
    assert name_key("Алиса") != name_key("alice")  # different looks, different names


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "empty"),
        ("x" * 33, "too-long"),
        ("x" * 1000, "too-long"),
        ("o'neil", "bad-char"),
        ("a b", "bad-char"),
        ("a:b", "bad-char"),
        ("ａ：ｂ", "bad-char"),  # a fullwidth colon is still a colon
        ("a\x1bb", "bad-char"),
        ("*x", "bad-char"),
        ("a/b", "bad-char"),
        ("smile☺", "bad-char"),
        ("\u0301abc", "not-allowed"),  # an accent with nothing before it
        ("abc\u05d0", "mixed-direction"),
    ],
)
def test_names_are_refused_with_a_reason(name, code):
    assert name_problem(name) == code


def test_length_counts_characters_as_shown_after_composition():
    syllables = "한" * 32
    assert name_problem(unicodedata.normalize("NFD", syllables)) is None
    assert name_problem(syllables + "한") == "too-long"


def test_every_name_code_has_a_text_in_both_languages():
    codes = ["empty", "too-long", "bad-char", "invisible", "not-allowed", "mixed-direction"]
    for code in codes:
        key = "name_" + code.replace("-", "_")
        assert key in EN and key in RU, key
    assert "bad_text" in EN and "bad_text" in RU


def test_an_invalid_name_never_finds_a_valid_user():
    assert name_key("alice²") != name_key("alice")
    assert name_key("") != name_key("alice")


def test_skeleton_table_is_the_uts39_table():
    table = names._prototypes()
    assert len(table) == 6307  # confusables.txt 13.0 has 6,311; 4 never reach a name, see there
    assert table["\u0430"] == "a" and table["\u0131"] == "i" and table["0"] == "O"
    assert table["m"] == "rn" and table["\u2460"] == "\u2780"  # multi-character, and a pair
    prototypes = "".join(table.values())
    assert not set(prototypes) & set(table), "a prototype is never itself mapped"


name_chars = st.characters(
    whitelist_categories=("Lu", "Ll", "Lo", "Lm", "Mn", "Nd"), whitelist_characters="_-."
)


@settings(max_examples=300)
@given(st.text(name_chars, min_size=1, max_size=12))
@example("Ҋ")  # its key folds to a Cyrillic и, whose own prototype is U+1D0E (found by Hypothesis)
def test_key_is_the_same_for_every_spelling_of_a_valid_name(name):
    if name_problem(name) is not None:
        return
    shown = normalize_name(name)
    assert name_problem(shown) is None
    assert normalize_name(shown) == shown
    key = name_key(name)
    assert name_key(shown) == key
    assert name_key(unicodedata.normalize("NFD", name)) == key
    assert name_key(unicodedata.normalize("NFC", name)) == key
    assert name_key(shown.upper()) == key or name_problem(shown.upper()) is not None
    if name_problem(key) is None:  # the key, when it is itself a name, is its own key
        assert name_key(key) == key


@settings(max_examples=300)
@given(st.text(max_size=20))
def test_skeleton_is_idempotent(text):
    once = names.skeleton(text)
    assert names.skeleton(once) == once


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_name_rules_never_raise_on_any_string(text):
    problem = name_problem(text)
    assert problem is None or isinstance(problem, str)
    assert isinstance(name_key(text), str)


# --- chat text ---------------------------------------------------------------------------------

FORBIDDEN_IN_TEXT = (
    [chr(c) for c in range(0x20) if c != 0x09] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
) + ["\u2028", "\u2029"]


@pytest.mark.parametrize("char", FORBIDDEN_IN_TEXT, ids=ascii)
def test_text_with_a_control_or_line_separator_is_refused(char):
    assert text_problem(f"hello{char}* bob left the chat.") == "control"


def test_forged_notice_after_cr_is_refused_whole():
    assert parse_client_line("hello\r* bob left the chat.") == Refused("control")
    assert parse_client_line("/msg bob hi\x85* alice left") == Refused("control")
    assert parse_client_line("/nick bob\u2028x") == Refused("control")
    assert parse_client_line("\x00") == Refused("control")


def test_tab_emoji_and_ordinary_unicode_text_pass():
    for text in ("a\tb", "hi 👋🏽 👨‍👩‍👧", "привет, мир", "שלום", "e\u0301", "\u202ertl"):
        assert text_problem(text) is None, ascii(text)
    assert parse_client_line("a\tb") == Message("a\tb")
    assert parse_client_line("/msg bob hi 👋") == Command("msg", "bob hi 👋")


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_accepted_text_never_splits_into_more_lines(text):
    if text_problem(text) is None:
        assert len(protocol.chat_line("bob", text).splitlines()) <= 1
        assert "\r" not in text and "\n" not in text


# --- the log -----------------------------------------------------------------------------------


def test_log_escapes_controls_bidi_and_invisible_characters_visibly():
    assert for_log("plain text: ok") == "plain text: ok"
    assert for_log("hi\x1b[2J\rforged") == "hi\\x1b[2J\\x0dforged"
    assert for_log("x\u202ey") == "x\\u202ey"
    assert for_log("a\u3164b\u200bc") == "a\\u3164b\\u200bc"
    assert for_log("tag\U000e0041") == "tag\\U000e0041"
    assert for_log("\x85\u2028\t") == "\\x85\\u2028\\x09"
    assert for_log("привет 👋") == "привет 👋"


def test_log_escaping_cannot_be_imitated():
    assert for_log("\\x1b") == "\\\\x1b"
    assert for_log("\x1b") != for_log("\\x1b")


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_logged_text_is_one_printable_line(text):
    logged = for_log(text)
    assert logged.isprintable()
    assert not any(names.is_invisible(ch) for ch in logged)
