"""The server's texts (chat/texts.py): both languages say the same things with the same fields,
Russian numbers agree with their nouns, and every text is one the code sends."""

from __future__ import annotations

import functools
import string
from pathlib import Path

import pytest

from chat.texts import EN, PLURAL_RULES, PLURAL_SEPARATOR, RU, Texts, plural_en, plural_ru

ROOT = Path(__file__).resolve().parents[1]
CATALOGUES = {"en": EN, "ru": RU}
# A value for every field any text uses; a text with a field not listed here fails to format.
SAMPLE_FIELDS = {
    "name": "Алиса",
    "old": "alice",
    "new": "Алиса",
    "count": 3,
    "n": 5,
    "names": "alice, Алиса",
    "limit": 21,
    "seconds": 1.5,
    "command": "frob",
    "node": "node2",
}


def _lines(entry: str | tuple[str, ...]) -> tuple[str, ...]:
    return (entry,) if isinstance(entry, str) else entry


def _fields(entry: str | tuple[str, ...]) -> list[tuple[str, str]]:
    """(field name, format spec) for every replacement field of a catalogue entry."""
    return [
        (name, spec or "")
        for line in _lines(entry)
        for _, name, spec, _ in string.Formatter().parse(line)
        if name is not None
    ]


# --- both languages -----------------------------------------------------------------------------


def test_every_english_key_has_a_russian_twin_and_no_more() -> None:
    assert set(EN) == set(RU)


@pytest.mark.parametrize("key", sorted(EN))
def test_both_languages_fill_in_the_same_fields(key: str) -> None:
    assert {name for name, _ in _fields(EN[key])} == {name for name, _ in _fields(RU[key])}
    assert isinstance(EN[key], str) == isinstance(RU[key], str)


@pytest.mark.parametrize("lang", sorted(CATALOGUES))
def test_every_plural_field_gives_one_form_per_plural_category_of_its_language(lang: str) -> None:
    forms_needed = {"en": 2, "ru": 3}[lang]
    assert set(PLURAL_RULES) == set(CATALOGUES)
    for key, entry in CATALOGUES[lang].items():
        for name, spec in _fields(entry):
            if PLURAL_SEPARATOR in spec:
                assert len(spec.split(PLURAL_SEPARATOR)) == forms_needed, (key, name, spec)


@pytest.mark.parametrize("lang", sorted(CATALOGUES))
def test_every_text_formats_with_its_fields(lang: str) -> None:
    texts = Texts(lang)
    for key, entry in CATALOGUES[lang].items():
        shown = (
            texts(key, **SAMPLE_FIELDS)
            if isinstance(entry, str)
            else "\n".join(texts.lines(key, **SAMPLE_FIELDS))
        )
        assert "{" not in shown and "|" not in shown, (key, shown)


# --- numbers and their nouns --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "form"),
    [
        (0, "клиентов"),
        (1, "клиент"),
        (2, "клиента"),
        (4, "клиента"),
        (5, "клиентов"),
        (11, "клиентов"),
        (12, "клиентов"),
        (14, "клиентов"),
        (21, "клиент"),
        (22, "клиента"),
        (25, "клиентов"),
        (101, "клиент"),
        (111, "клиентов"),
        (112, "клиентов"),
        (1.5, "клиента"),
    ],
)
def test_russian_nouns_agree_with_their_number(count: float, form: str) -> None:
    assert plural_ru(count, "клиент", "клиента", "клиентов") == form


@pytest.mark.parametrize(("count", "form"), [(0, "clients"), (1, "client"), (2, "clients")])
def test_english_nouns_agree_with_their_number(count: int, form: str) -> None:
    assert plural_en(count, "client", "clients") == form


def test_a_full_server_says_how_many_clients_in_agreeing_russian_and_english() -> None:
    ru, en = Texts("ru"), Texts("en")
    assert ru("full", limit=3) == "сервер заполнен (3 клиента), попробуйте позже"
    assert ru("full", limit=21) == "сервер заполнен (21 клиент), попробуйте позже"
    assert ru("full", limit=11) == "сервер заполнен (11 клиентов), попробуйте позже"
    assert en("full", limit=1) == "server full (1 client), try again later"
    assert en("full", limit=3) == "server full (3 clients), try again later"


def test_counts_of_people_and_bytes_agree_in_russian() -> None:
    ru = Texts("ru")
    assert ru("welcome", name="bob", count=2, names="a, bob") == (
        "добро пожаловать, bob! в чате 2 человека: a, bob"
    )
    assert ru("who", count=5, names="") == "в чате 5 человек: "
    assert ru("line_too_long", limit=4096).endswith("(больше 4096 байт), отброшена")
    assert ru("line_too_long", limit=1).endswith("(больше 1 байта), отброшена")
    assert ru("name_too_long", limit=32).startswith("имя отклонено: длиннее 32 символов,")
    assert ru("notices_off", limit=21).endswith("больше 21 человека")
    assert ru.lines("help", limit=100)[-1].endswith("больше 100 человек")


def test_a_taken_name_is_said_without_the_names_gender() -> None:
    assert Texts("ru")("name_taken", name="Алиса") == "имя Алиса уже занято, выберите другое"


def test_other_formats_still_apply() -> None:
    assert Texts("en")("handshake_timeout", seconds=10.0) == "no name received within 10 s, closing"


# --- every text is used -------------------------------------------------------------------------


@functools.cache
def _code() -> str:
    sources = [*(ROOT / "chat").rglob("*.py"), *(ROOT / "loadtest").rglob("*.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in sources if p.name != "texts.py")


def _is_used(key: str, code: str) -> bool:
    if f'"{key}"' in code:
        return True
    # The server looks name refusals up as "name_" + the code chat/names.py returns.
    problem_code = key.removeprefix("name_").replace("_", "-")
    return key.startswith("name_") and '"name_" +' in code and f'return "{problem_code}"' in code


@pytest.mark.parametrize(
    "key",
    sorted(EN),
)
def test_every_text_is_used_by_the_code(key: str) -> None:
    assert _is_used(key, _code()), f"no code sends {key!r}"
