"""The chat wire protocol, sans-IO: line framing, name rules, commands, and server line formats.

No sockets, threads or clocks here. The server, the terminal client, the Locust user and the
benchmark swarm all reuse this module, so the wire format is written once. docs/PROTOCOL.md is the
prose version of the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

# Re-exported: the server and clients call the name rules as protocol.name_problem and so on.
from chat.names import MAX_NAME_CHARS as MAX_NAME_CHARS
from chat.names import is_invisible
from chat.names import name_key as name_key
from chat.names import name_problem as name_problem
from chat.names import normalize_name as normalize_name

ENCODING: Final = "utf-8"
DELIMITER: Final = b"\n"
MAX_LINE_BYTES: Final = 4096

NOTICE_PREFIX: Final = "* "
ERROR_PREFIX: Final = "! "
PRIVATE_MARK: Final = " (private)"
LEAVE_WORDS: Final = frozenset({"leave", "/quit"})
# What a client sends to leave: the original's word, which every server version understands.
LEAVE_LINE: Final = "leave"


class LineTooLong:
    """Marker the decoder yields in place of a line that exceeded its limit (it was discarded)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


LINE_TOO_LONG: Final = LineTooLong()


class LineDecoder:
    """Turns arbitrary byte chunks into whole lines, never buffering more than `max_line_bytes`.

    `feed(chunk)` returns the lines completed by that chunk as bytes, without the `\\n` or `\\r\\n`.
    A line longer than the limit is discarded as it streams in: the decoder yields LINE_TOO_LONG
    once, as soon as the limit is crossed, and drops bytes until the next newline.
    """

    __slots__ = ("max_line_bytes", "_partial", "_discarding")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.max_line_bytes = max_line_bytes
        self._partial = b""
        self._discarding = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete line held back, waiting for its newline."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> list[bytes | LineTooLong]:
        if self._discarding:
            end = chunk.find(DELIMITER)
            if end < 0:
                return []
            chunk = chunk[end + 1 :]
            self._discarding = False
        data = self._partial + chunk if self._partial else chunk
        whole = data.split(DELIMITER)
        partial = whole.pop()
        if b"\r" in data:
            whole = [_strip_cr(line) for line in whole]
        limit = self.max_line_bytes
        lines: list[bytes | LineTooLong] = list(whole)
        if whole and max(map(len, whole)) > limit:
            lines = [self.line_length_exceeded() if len(x) > limit else x for x in whole]
        # A trailing b"\r" may belong to a "\r\n" still in flight, so it does not count yet.
        if len(partial) > limit + (partial[-1:] == b"\r"):
            partial = b""
            self._discarding = True
            lines.append(self.line_length_exceeded())
        self._partial = partial
        return lines

    def line_length_exceeded(self) -> LineTooLong:
        """What happens at the limit: the line is dropped and its place is marked."""
        return LINE_TOO_LONG


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def encode_line(text: str) -> bytes:
    """One protocol line: UTF-8 text plus the newline."""
    return text.encode(ENCODING) + DELIMITER


# --- names and text ---------------------------------------------------------------------------
# Name rules (validity, the shown form, the uniqueness key) live in chat.names and are imported
# above: name_problem, normalize_name, name_key.

# A line break in any of its spellings, or a control a terminal acts on: inside chat text these
# would let a client draw lines the server never sent (`hello\r* bob left the chat.` reads as a
# notice to anything that splits with universal newlines or str.splitlines()). TAB is harmless.
_FORBIDDEN_IN_TEXT: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def text_problem(text: str) -> str | None:
    """Why `text` may not be sent to others, as a short code, or None when it may.

    "control": it holds NUL, CR, LF, any other C0 or C1 control but TAB (so also NEL, U+0085),
    DEL, or a LINE/PARAGRAPH SEPARATOR (U+2028, U+2029).
    """
    return "control" if _FORBIDDEN_IN_TEXT.search(text) else None


def for_log(text: str) -> str:
    """`text` from a client made safe for one log line: every control, separator, format,
    invisible, private-use or unassigned character is written as an escape (`\\x1b`, `\\u202e`,
    `\\U000e0001`), and a backslash as `\\\\`, so no client can forge log lines, repaint the
    operator's terminal or hide text, and the escaping cannot be imitated.
    """
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return "".join(map(_log_char, text))


@lru_cache(maxsize=8192)
def _log_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    # isprintable() is False for every category C and Z character but the ASCII space.
    if char.isprintable() and not is_invisible(char):
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message to everyone else."""

    text: str


@dataclass(frozen=True, slots=True)
class Command:
    """A `/command` line: `name` is lower-case without the slash, `arg` the rest, stripped."""

    name: str
    arg: str


@dataclass(frozen=True, slots=True)
class Leave:
    """`leave` or `/quit`: the client ends its session."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A line nobody may see: `reason` is a `text_problem` code. The sender gets an error."""

    reason: str


def parse_client_line(text: str) -> Message | Command | Leave | Refused | None:
    """Classify one decoded line from a client. None means an empty line (ignored).

    A line `text_problem` objects to is Refused whole, whatever it is (message, `/msg`, `/nick`),
    before anything else: checked once here, no command can pass such text on.
    """
    problem = text_problem(text)
    if problem is not None:
        return Refused(problem)
    if not text.strip():
        return None
    if text.strip() in LEAVE_WORDS:
        return Leave()
    if text.startswith("//"):
        return Message(text[1:])
    if text.startswith("/"):
        word, _, rest = text[1:].partition(" ")
        if word.lower() == "quit":
            return Leave()
        return Command(word.lower(), rest.strip())
    return Message(text)


MSG_COMMAND: Final = "msg"
HELP_COMMAND: Final = "help"


def private_message(command: Command) -> tuple[str, str] | None:
    """A `/msg NAME text` command's addressee and text; None when it is another command or lacks
    either (the server answers that with the usage)."""
    if command.name != MSG_COMMAND:
        return None
    target, _, text = command.arg.partition(" ")
    return (target, text) if target and text.strip() else None


STATS_COMMAND: Final = "stats"
# `/pass PASSWORD`: the first line to a server started with a password (IRC's PASS); a server
# without one ignores it, so a client may always send it.
PASS_COMMAND: Final = "pass"


def password_line(password: str) -> str:
    """What a client sends to present `password`: `/pass PASSWORD`."""
    return command_line(PASS_COMMAND, password)


def presented_password(parsed: Message | Command | Leave | Refused | None) -> str | None:
    """The password a parsed `/pass PASSWORD` line presents (blanks around it stripped); None
    for any other line."""
    if isinstance(parsed, Command) and parsed.name == PASS_COMMAND:
        return parsed.arg
    return None


def command_line(name: str, arg: str = "") -> str:
    """A `/command` line as a client sends it: `command_line(STATS_COMMAND)` is `/stats`."""
    return f"/{name} {arg}" if arg else f"/{name}"


WHO_COMMAND: Final = "who"
NICK_COMMAND: Final = "nick"
# `/quit` as a command name: parse_client_line reads it as Leave, like LEAVE_LINE.
QUIT_COMMAND: Final = "quit"


# --- lines the server sends --------------------------------------------------------------------


def chat_line(name: str, text: str) -> str:
    """A message from `name` as everyone else sees it (the original's format)."""
    return f"{name}: {text}"


def private_line(name: str, text: str) -> str:
    return f"{name}{PRIVATE_MARK}: {text}"


def notice_line(text: str) -> str:
    return NOTICE_PREFIX + text


def error_line(text: str) -> str:
    return ERROR_PREFIX + text


@dataclass(frozen=True, slots=True)
class ServerLine:
    """One line from the server, classified. kind: "chat", "private", "notice" or "error"."""

    kind: str
    text: str
    name: str | None = None


_CHAT_RE: Final = re.compile(r"([^\s:]+)( \(private\))?: (.*)", re.DOTALL)


def parse_server_line(line: str) -> ServerLine:
    """Classify a line the server sent. Chat lines start with a valid name and `: `."""
    if line.startswith(NOTICE_PREFIX):
        return ServerLine("notice", line[len(NOTICE_PREFIX) :])
    if line.startswith(ERROR_PREFIX):
        return ServerLine("error", line[len(ERROR_PREFIX) :])
    match = _CHAT_RE.fullmatch(line)
    if match and name_problem(match.group(1)) is None:
        kind = "private" if match.group(2) else "chat"
        return ServerLine(kind, match.group(3), match.group(1))
    # Not produced by this server; shown as a notice rather than passed off as someone's words.
    return ServerLine("notice", line)


# --- the client side of joining -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The server accepted the name: `welcome` is its welcome notice's text."""

    welcome: str


@dataclass(frozen=True, slots=True)
class NameRefused:
    """The server refused the name (or closed the handshake): `reason` is its error's text."""

    reason: str


class ClientHandshake:
    """The client side of joining, sans-IO: feed it the server's lines, learn how the name went.

    Before a name is accepted the server sends only its greeting (the first notice), errors (each
    one refuses the last name sent, or says why the connection ends) and then, on acceptance, its
    welcome (the next notice). Join notices and chat go to named clients only. So the outcome is
    known from the kind of line alone, whatever language the server speaks.
    """

    __slots__ = ("_greeted",)

    def __init__(self) -> None:
        self._greeted = False

    def line_received(self, line: str) -> Accepted | NameRefused | None:
        """The outcome this line brings, or None (the greeting, or nothing of note)."""
        parsed = parse_server_line(line)
        if parsed.kind == "error":
            return NameRefused(parsed.text)
        if parsed.kind != "notice":
            return None
        if not self._greeted:
            self._greeted = True
            return None
        return Accepted(parsed.text)


def format_stats(stats: dict[str, int | float]) -> str:
    """`/stats` reply body: `stats: key=value ...`, one token per counter."""
    return "stats: " + " ".join(f"{k}={v}" for k, v in stats.items())


def parse_stats(text: str) -> dict[str, float]:
    """Inverse of format_stats, given a notice's text."""
    _, _, body = text.partition("stats: ")
    out: dict[str, float] = {}
    for token in body.split():
        key, _, value = token.partition("=")
        out[key] = float(value)
    return out


def stats_reply(line: str) -> dict[str, float] | None:
    """The counters in a line from the server when it is a `/stats` reply, else None."""
    parsed = parse_server_line(line)
    if parsed.kind != "notice" or not parsed.text.startswith(format_stats({})):  # "stats: "
        return None
    return parse_stats(parsed.text)
