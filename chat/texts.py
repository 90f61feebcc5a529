"""What the server says to people, in English and in Russian (the original assignment's wording).

Keys are stable; the protocol module decides the prefixes (`* ` notice, `! ` error). A field
written `{count:клиент|клиента|клиентов}` is a number followed by the noun form it needs, chosen
by the language's plural rule (`plural_en`: one|other, `plural_ru`: one|few|many): "3 клиента".
"""

from __future__ import annotations

import locale
import os
import string
from collections.abc import Callable
from typing import Final

EN: Final[dict[str, str | tuple[str, ...]]] = {
    "hello": "hello! send your name: 1-32 letters, digits, _ - or .",
    "hello_password": "hello! send /pass PASSWORD, then your name: 1-32 letters, digits, _ - or .",
    "wrong_password": "wrong password, closing",
    "password_required": "this server needs a password: send /pass PASSWORD first, closing",
    "not_tls": "this port speaks TLS: connect with a TLS client (chat.client --tls, "
    "openssl s_client -connect HOST:PORT -quiet)",
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
    "full": "server full ({limit:client|clients}), try again later",
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
    "bus_down": "the link to the other servers is down: you are chatting with this server's "
    "users only; what you send reaches the others when it is back",
    "bus_back": "the link to the other servers is back",
    "bus_lost": "{count:message from other servers was|messages from other servers were} lost",
    "left_node_gone": "{name} left the chat: server {node} stopped answering",
    "name_bus_down": "name refused: the link to the other servers is down, try again in a moment",
    "msg_bus_down": "{name} is not on this server and the link to the other servers is down, "
    "try again in a moment",
    "who_local": "(the link to the other servers is down: this server's users only)",
    "name_lost": "disconnected: while the link to the other servers was down, someone on "
    "another server took your name",
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

RU: Final[dict[str, str | tuple[str, ...]]] = {
    "hello": "здравствуйте! отправьте своё имя: 1-32 символа (буквы, цифры, _ - или .)",
    "hello_password": "здравствуйте! отправьте /pass ПАРОЛЬ, затем своё имя: 1-32 символа "
    "(буквы, цифры, _ - или .)",
    "wrong_password": "неверный пароль, соединение закрыто",
    "password_required": "этому серверу нужен пароль: сначала отправьте /pass ПАРОЛЬ, "
    "соединение закрыто",
    "not_tls": "этот порт говорит по TLS: подключитесь клиентом TLS (chat.client --tls, "
    "openssl s_client -connect HOST:PORT -quiet)",
    "welcome": "добро пожаловать, {name}! в чате {count:человек|человека|человек}: {names}",
    "more": "и ещё {n}",
    "joined": "{name} присоединился к чату!",
    "left": "{name} покинул чат.",
    "slow_consumer_left": "пользователь {name} отключён: слишком медленно читает",
    "slow_consumer": (
        "вы отключены: вы перестали читать, а для вас накопилось больше {limit:байта|байт|байт}"
    ),
    "renamed": "{old} теперь под именем {new}",
    "you_are": "теперь вы {name}",
    "who": "в чате {count:человек|человека|человек}: {names}",
    "shutdown": "сервер завершает работу, до свидания",
    "bye": "до свидания, {name}",
    "full": "сервер заполнен ({limit:клиент|клиента|клиентов}), попробуйте позже",
    "address_busy": "слишком много соединений с вашего адреса (предел {limit}), попробуйте позже",
    "address_rate": "слишком много новых соединений с вашего адреса (предел {limit} в минуту), "
    "попробуйте позже",
    "unnamed_full": "слишком много соединений ждёт имени, попробуйте ещё раз",
    "handshake_timeout": "имя не получено за {seconds:g} с, соединение закрыто",
    "name_empty": "имя отклонено: оно пустое; нужно 1-32 символа (буквы, цифры, _ - или .)",
    "name_too_long": "имя отклонено: длиннее {limit:символа|символов|символов}, выберите покороче",
    "name_bad_char": "имя отклонено: {name} содержит символы, кроме букв, цифр, _ - .",
    # "занято" agrees with "имя", so it reads right whatever the name ("Алиса уже занято" did not).
    "name_taken": "имя {name} уже занято, выберите другое",
    "name_invisible": (
        "имя отклонено: в нём есть невидимые символы (нулевой ширины, заполнители, метки)"
    ),
    "name_not_allowed": (
        "имя отклонено: {name} содержит недопустимую в именах форму символа (надстрочную,"
        " в кружке, совместимую или архаичную) или начинается с отдельного знака ударения"
    ),
    "name_mixed_direction": (
        "имя отклонено: в имени {name} смешаны буквы письма справа налево и слева направо"
    ),
    "bad_text": "строка отклонена: управляющие символы и разделители строк в тексте недопустимы",
    "line_too_long": "строка слишком длинная (больше {limit:байта|байт|байт}), отброшена",
    "bad_utf8": "некорректный UTF-8, строка отброшена",
    "unknown_command": "неизвестная команда /{command}, см. /help",
    "usage_msg": "использование: /msg ИМЯ текст",
    "usage_nick": "использование: /nick НОВОЕ_ИМЯ",
    "no_such_user": "нет такого пользователя: {name}",
    "notices_off": (
        "уведомления о входе и выходе отключены,"
        " пока в чате больше {limit:человека|человек|человек}"
    ),
    "bus_down": "связь с другими серверами потеряна: вы общаетесь только с пользователями "
    "этого сервера; ваши сообщения дойдут до остальных, когда связь вернётся",
    "bus_back": "связь с другими серверами восстановлена",
    "bus_lost": "потеряно {count:сообщение|сообщения|сообщений} с других серверов",
    "left_node_gone": "{name} покинул чат: сервер {node} перестал отвечать",
    "name_bus_down": "имя отклонено: нет связи с другими серверами, попробуйте чуть позже",
    "msg_bus_down": "пользователя {name} нет на этом сервере, а связи с другими серверами нет, "
    "попробуйте чуть позже",
    "who_local": "(нет связи с другими серверами: только пользователи этого сервера)",
    "name_lost": "вы отключены: пока не было связи с другими серверами, ваше имя занял "
    "пользователь другого сервера",
    "help": (
        "команды:",
        "  текст          отправить всем (чтобы начать текст с /, напишите //)",
        "  /msg ИМЯ текст отправить текст только пользователю ИМЯ",
        "  /who           кто в чате",
        "  /nick НОВОЕ    сменить имя",
        "  /stats         счётчики сервера",
        "  /help          эта справка",
        "  leave, /quit   выйти из чата",
        "уведомления о входе и выходе отключаются,"
        " пока в чате больше {limit:человека|человек|человек}",
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


def plural_en(count: float, one: str, other: str) -> str:
    """The English noun form after `count`: 1 client, 0 or 2 clients."""
    return one if count == 1 else other


def plural_ru(count: float, one: str, few: str, many: str) -> str:
    """The Russian noun form after `count`: 1, 21, 101 клиент; 2-4, 22-24 клиента; 0, 5-20,
    25-30, 111-114 клиентов. A fraction takes the `few` form (1,5 клиента)."""
    if count != int(count):
        return few
    n = abs(int(count))
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


PLURAL_RULES: Final[dict[str, Callable[..., str]]] = {"en": plural_en, "ru": plural_ru}
PLURAL_SEPARATOR: Final = "|"


class _CatalogueFormatter(string.Formatter):
    """`str.format`, plus `{n:form|form}`: the number, a space, and the form its count needs."""

    def __init__(self, plural: Callable[..., str]) -> None:
        self._plural = plural

    def format_field(self, value: object, format_spec: str) -> str:
        if PLURAL_SEPARATOR in format_spec:
            forms = format_spec.split(PLURAL_SEPARATOR)
            return f"{value} {self._plural(value, *forms)}"
        return str(super().format_field(value, format_spec))


class Texts:
    """Formats catalogue entries in one language: `texts("joined", name="alice")`."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._catalogue = CATALOGUES[lang]
        self._formatter = _CatalogueFormatter(PLURAL_RULES[lang])

    def __call__(self, key: str, **fields: object) -> str:
        text = self._catalogue[key]
        assert isinstance(text, str), f"{key} is a list of lines: use lines()"
        if PLURAL_SEPARATOR not in text:  # str.format is C: 20x faster than string.Formatter
            return text.format(**fields)
        return self._formatter.format(text, **fields)

    def lines(self, key: str, **fields: object) -> list[str]:
        entry = self._catalogue[key]
        assert isinstance(entry, tuple), f"{key} is one line: call the Texts"
        return [self._formatter.format(line, **fields) for line in entry]
