"""Chat names that cannot impersonate: a username profile for validity, confusable skeletons for
uniqueness, and the character classes that no name or chat line may carry.

chat.protocol re-exports what the rest of the project calls (`name_problem`, `normalize_name`,
`name_key`); this module holds the Unicode detail.

Why two libraries where the rest of the server is standard library only: getting this wrong is
an impersonation hole, and both rules are large, versioned Unicode data sets that nobody should
copy by hand.
- precis-i18n implements PRECIS (RFC 8264) and its username profiles (RFC 8265): width mapping,
  case mapping, NFC, the Bidi Rule, and the IdentifierClass that refuses compatibility forms
  (`²`, `①`), old Hangul jamo, unassigned and default-ignorable code points. It derives the
  properties from the running `unicodedata`, so it is always consistent with Python's own NFC.
- confusable-homoglyphs ships Unicode's confusables.txt (UTS #39, version 13.0) as JSON. Its own
  API only answers "is this mixed-script/confusable", not the skeleton UTS #39 defines for
  comparing identifiers, so the skeleton is derived here from the data it ships (see
  `_prototypes`).
"""

from __future__ import annotations

import json
import unicodedata
from functools import cache, lru_cache
from importlib import resources
from typing import Final

from precis_i18n import get_profile
from precis_i18n.unicode import UnicodeData

MAX_NAME_CHARS: Final = 32
NAME_PUNCTUATION: Final = frozenset("_-.")
# No code point has a canonical decomposition longer than 4, so a name longer than this before
# NFC is too long after it: refuse before doing any Unicode work on an arbitrarily long line.
MAX_RAW_NAME_CHARS: Final = MAX_NAME_CHARS * 4

# UsernameCasePreserved is what a user is shown as; the case-mapped profile is what is compared.
# The CaseFold variant (not ToLower) keeps the project's old rule that `Straße` and `STRASSE` are
# one name, and folds more pairs together, which only makes impersonation harder.
_SHOWN: Final = get_profile("UsernameCasePreserved")
_COMPARED: Final = get_profile("UsernameCaseMapped:CaseFold")
_UCD: Final = UnicodeData()

# A general category that is never part of a name: controls, format characters, spaces,
# separators, symbols and punctuation (but `_ - .`, allowed above), private use, unassigned.
_NOT_NAME_CATEGORIES: Final = frozenset(
    {"Cc", "Co", "Cn", "Cs", "Zs", "Zl", "Zp", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"}
    | {"Sm", "Sc", "Sk", "So"}
)


def is_invisible(char: str) -> bool:
    """True for a character that shows as nothing: format, default-ignorable, Hangul fillers.

    Default_Ignorable_Code_Point covers zero-width spaces and joiners, bidi controls, variation
    selectors and the Hangul fillers U+115F, U+1160, U+3164, U+FFA0 (letters by category, so
    `isalnum()` lets them through, yet every renderer draws them as blank).
    """
    return unicodedata.category(char) == "Cf" or _UCD.default_ignorable(ord(char))


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid chat name, as a short code, or None when it is valid.

    Codes, in the order they are checked:
    - "empty": no characters;
    - "too-long": more than 32 characters once normalised (`normalize_name`);
    - "invisible": a character that shows as nothing (`is_invisible`);
    - "bad-char": anything but letters, digits (any script) and `_ - .`: blanks, `:`, quotes,
      controls, symbols, punctuation;
    - "not-allowed": a letter or digit in a form names may not use (PRECIS IdentifierClass):
      superscripts, circled or compatibility forms (`²`, `①`, `ﬁ`), old Hangul jamo, or a
      combining mark with nothing to combine with;
    - "mixed-direction": right-to-left letters mixed with left-to-right ones (RFC 5893 Bidi Rule).

    Cached: clients call this for every chat line they parse, with few distinct names.
    """
    if not name:
        return "empty"
    if len(name) > MAX_RAW_NAME_CHARS:
        return "too-long"
    return _name_problem(name)


# Only short strings reach the caches, so a client sending long lines cannot fill them.
@lru_cache(maxsize=4096)
def _name_problem(name: str) -> str | None:
    if any(is_invisible(ch) for ch in name):
        return "invisible"
    for ch in name:
        if unicodedata.category(ch) in _NOT_NAME_CATEGORIES and ch not in NAME_PUNCTUATION:
            return "bad-char"
    try:
        shown, _ = _precis_forms(name)
    except UnicodeEncodeError as exc:
        return "mixed-direction" if exc.reason.endswith("bidi_rule") else "not-allowed"
    if len(shown) > MAX_NAME_CHARS:
        return "too-long"
    # A leading mark would combine with whatever precedes the name on screen (`* `, a blank).
    if unicodedata.category(shown[0]).startswith("M"):
        return "not-allowed"
    return None


def normalize_name(name: str) -> str:
    """The form a valid name is stored and shown in: widths mapped, NFC (RFC 8265, case kept).

    `ａｌｉｃｅ` becomes `alice`, a decomposed `José` or Hangul syllable becomes composed, so
    every client sees one spelling. Only for names `name_problem` accepts (raises otherwise).
    """
    return _precis_forms(name)[0]


@lru_cache(maxsize=4096)
def _precis_forms(name: str) -> tuple[str, str]:
    """The shown and the compared PRECIS form of a short string (raises UnicodeEncodeError
    where either profile refuses it). Cached: each costs about 30 us, and a joining name needs
    both three times (`name_problem`, `normalize_name`, `name_key`)."""
    return _SHOWN.enforce(name), _COMPARED.enforce(name)


def name_key(name: str) -> str:
    """The form names are compared in: the UTS #39 skeleton of the case-folded PRECIS form.

    Two names with one key look alike to a reader, so only one of them may be online: case
    (`Alice`), width (`ａｌｉｃｅ`), NFC/NFD and confusables (`аlice` with a Cyrillic а, `alıce`)
    all collide. The skeleton's prototypes are sometimes capitals (`0` -> `O`), so the key is
    case-folded once more, as Ergo does. A string that is not a valid name gets a key no valid
    name has (it starts with NUL), so looking it up finds nobody.
    """
    if len(name) > MAX_RAW_NAME_CHARS:
        return "\0" + name
    return _name_key(name)


KEY_ROUNDS: Final = 4  # every single character reaches its fixed point within three


@lru_cache(maxsize=4096)
def _name_key(name: str) -> str:
    try:
        compared = _precis_forms(name)[1]
    except UnicodeEncodeError:
        return "\0" + name
    # Case-folding a prototype can give a letter with a prototype of its own (U+048A's skeleton
    # folds to a Cyrillic и, whose prototype is U+1D0E): fold and map again until nothing
    # changes, so a key is its own key.
    key = compared
    for _ in range(KEY_ROUNDS):
        folded = unicodedata.normalize("NFD", skeleton(key).casefold())
        if folded == key:
            break
        key = folded
    return key


def skeleton(text: str) -> str:
    """UTS #39 section 4 skeleton: NFD, drop default-ignorables, map to prototypes, NFD again.

    Equal skeletons mean the strings are confusable. Idempotent: prototypes map to themselves.
    """
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(ch, ch) for ch in decomposed if not _UCD.default_ignorable(ord(ch)))
    return unicodedata.normalize("NFD", mapped)


def load_tables() -> None:
    """Build the confusables table now (about 60 ms) rather than at the first name compared: a
    server calls this at start, or the first burst of joining threads all build it at once."""
    _prototypes()


@cache
def _prototypes() -> dict[str, str]:
    """confusables.txt's `source -> prototype` table, rebuilt from confusable-homoglyphs' JSON.

    That JSON is a symmetric graph: for each line `source ; prototype` of confusables.txt both
    ends list each other, and the direction is gone. It comes back from three facts of the data:
    a source is one code point and has exactly one prototype, and no prototype is ever a source
    (UTS #39 makes the table idempotent). So a single code point with more than one neighbour,
    or a multi-character string, is a prototype. Left are pairs that only know each other; the
    generator inserted each line's source before its prototype and JSON keeps insertion order,
    so the first of a pair is the source. Checked against confusables.txt 13.0 itself: the same
    6,307 mappings; the 4 the generator's regex dropped (U+2028, U+2029, U+1F16D, U+3164) are
    characters no name can contain anyway. The generator also kept the LEFT-TO-RIGHT MARKs that
    confusables.txt puts around right-to-left characters in its comments; they are removed.
    """
    data = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    neighbours: dict[str, list[str]] = {}
    for key, entries in json.loads(data).items():
        these = neighbours.setdefault(key.replace("\u200e", ""), [])
        for entry in entries:
            other = entry["c"].replace("\u200e", "")
            if other not in these:
                these.append(other)
    order = {key: index for index, key in enumerate(neighbours)}
    table: dict[str, str] = {}
    for key, others in neighbours.items():
        if len(key) != 1 or len(others) != 1:
            continue
        other = others[0]
        if len(other) > 1 or len(neighbours[other]) > 1 or order[key] < order[other]:
            table[key] = other
    return table
