"""What the server says to people, in English and in Russian (the original assignment's wording).

Keys are stable; the protocol module decides the prefixes (`* ` notice, `! ` error).
"""

from __future__ import annotations

import locale
import os
from typing import Final

EN: Final = {
    "hello": "hello! send your name: 1-32 letters, digits, _ - or .",
    "welcome": "welcome, {name}! {count} online: {names}",
    "more": "and {n} more",
    "joined": "{name} joined the chat",
    "left": "{name} left the chat.",
    "slow_consumer_left": "{name} was disconnected: too slow to read",
    "slow_consumer": "disconnected: you stopped reading and over {limit} bytes were queued for you",
    "renamed": "{old} is now known as {new}",
    "you_are": "you are now {name}",
    "who": "online ({count}): {names}",
    "shutdown": "server is shutting down, goodbye",
    "bye": "goodbye, {name}",
    "full": "server full ({limit} clients), try again later",
    "address_busy": "too many connections from your address (limit {limit}), try again later",
    "address_rate": "too many new connections from your address (limit {limit} a minute), "
    "try again later",
    "unnamed_full": "too many connections are waiting for a name, try again",
    "handshake_timeout": "no name received within {seconds:g} s, closing",
    "name_empty": "name refused: it is empty; send 1-32 letters, digits, _ - or .",
    "name_too_long": "name refused: longer than {limit} characters, try a shorter one",
    "name_bad_char": "name refused: {name} has characters other than letters, digits, _ - .",
    "name_taken": "name refused: {name} is taken, try another",
    "name_invisible": "name refused: it has invisible characters (zero-width, fillers, marks)",
    "name_not_allowed": (
        "name refused: {name} has a character form names cannot use"
        " (superscript, circled, compatibility or archaic form, or a lone accent first)"
    ),
    "name_mixed_direction": "name refused: {name} mixes right-to-left and left-to-right letters",
    "bad_text": "line refused: control characters and line separators are not allowed in text",
    "line_too_long": "line too long (over {limit} bytes), discarded",
    "bad_utf8": "invalid UTF-8, line discarded",
    "unknown_command": "unknown command /{command}, try /help",
    "usage_msg": "usage: /msg NAME text",
    "usage_nick": "usage: /nick NEWNAME",
    "no_such_user": "no such user: {name}",
    "notices_off": "join and leave notices are off while more than {limit} are online",
    "help": (
        "commands:",
        "  text           send text to everyone (a line starting // sends a literal /)",
        "  /msg NAME text send text to NAME only",
        "  /who           list who is online",
        "  /nick NEW      change your name",
        "  /stats         server counters",
        "  /help          this help",
        "  leave or /quit end the session",
        "join and leave notices stop while more than {limit} are online",
    ),
}

RU: Final = {
    "hello": "привет! отправьте своё имя: 1-32 буквы, цифры, _ - или .",
    "welcome": "добро пожаловать, {name}! в чате {count}: {names}",
    "more": "и ещё {n}",
    "joined": "{name} присоединился к чату!",
    "left": "{name} покинул чат.",
    "slow_consumer_left": "{name} отключён: слишком медленно читает",
    "slow_consumer": "отключение: вы перестали читать, в очереди больше {limit} байт",
    "renamed": "{old} теперь {new}",
    "you_are": "теперь вы {name}",
    "who": "в чате ({count}): {names}",
    "shutdown": "сервер завершает работу, до свидания",
    "bye": "до свидания, {name}",
    "full": "сервер заполнен ({limit} клиентов), попробуйте позже",
    "address_busy": "слишком много соединений с вашего адреса (предел {limit}), попробуйте позже",
    "address_rate": "слишком много новых соединений с вашего адреса (предел {limit} в минуту), "
    "попробуйте позже",
    "unnamed_full": "слишком много соединений ждут имени, попробуйте ещё раз",
    "handshake_timeout": "имя не получено за {seconds:g} с, соединение закрыто",
    "name_empty": "имя отклонено: пустое; нужно 1-32 буквы, цифры, _ - или .",
    "name_too_long": "имя отклонено: длиннее {limit} символов, выберите короче",
    "name_bad_char": "имя отклонено: в {name} есть символы кроме букв, цифр, _ - .",
    "name_taken": "имя отклонено: {name} уже занято, выберите другое",
    "name_invisible": "имя отклонено: в нём есть невидимые символы (нулевой ширины, заполнители)",
    "name_not_allowed": (
        "имя отклонено: в {name} есть недопустимая форма символа"
        " (надстрочный, в кружке, совместимый или архаичный, или знак ударения в начале)"
    ),
    "name_mixed_direction": "имя отклонено: в {name} смешаны буквы справа налево и слева направо",
    "bad_text": "строка отклонена: управляющие символы и разделители строк в тексте недопустимы",
    "line_too_long": "слишком длинная строка (больше {limit} байт), отброшена",
    "bad_utf8": "неверная кодировка UTF-8, строка отброшена",
    "unknown_command": "неизвестная команда /{command}, см. /help",
    "usage_msg": "использование: /msg ИМЯ текст",
    "usage_nick": "использование: /nick НОВОЕ_ИМЯ",
    "no_such_user": "нет такого пользователя: {name}",
    "notices_off": "уведомления о входе и выходе отключены, пока в чате больше {limit}",
    "help": (
        "команды:",
        "  текст          отправить всем (строка с // отправляет буквальный /)",
        "  /msg ИМЯ текст отправить только ИМЯ",
        "  /who           кто в чате",
        "  /nick НОВОЕ    сменить имя",
        "  /stats         счётчики сервера",
        "  /help          эта справка",
        "  leave или /quit выйти",
        "уведомления о входе и выходе отключаются, когда в чате больше {limit}",
    ),
}

CATALOGUES: Final = {"en": EN, "ru": RU}


def default_lang() -> str:
    """ "ru" when the environment's locale is Russian, else "en"."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "ru" if value.lower().startswith("ru") else "en"
    code = locale.getlocale()[0] or ""
    return "ru" if code.lower().startswith("ru") else "en"


class Texts:
    """Formats catalogue entries in one language: `texts("joined", name="alice")`."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._catalogue = CATALOGUES[lang]

    def __call__(self, key: str, **fields: object) -> str:
        return self._catalogue[key].format(**fields)

    def lines(self, key: str, **fields: object) -> list[str]:
        return [line.format(**fields) for line in self._catalogue[key]]
