"""The server password: a salted scrypt hash in a file, checked in constant time.

`python -m chat.server hash-password > FILE` writes the file (the password is read without echo
from a terminal, or as the first line of standard input); `--password-file FILE` makes the server
ask every client for it (`/pass PASSWORD` before the name, docs/PROTOCOL.md). The password itself
is never stored, logged or passed on a command line.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys
import threading
from dataclasses import dataclass
from typing import Final, TextIO

PASSWORD_ENV: Final = "CHAT_PASSWORD"  # where clients (chat.client, loadtest) take it from
SCHEME: Final = "scrypt"
# scrypt's interactive-login cost (RFC 7914 suggests N=2^14, r=8, p=1): 16 MiB and a few tens
# of milliseconds per check. The parameters are stored in the file, so they can be raised later.
SCRYPT_N: Final = 1 << 14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
SCRYPT_MAXMEM_BYTES: Final = 256 * 1024 * 1024
WRONG_PASSWORD_DELAY_S: Final = 1.0  # before a wrong guess is closed: guessing stays slow


class PasswordFileError(Exception):
    """The password file cannot be used; str() is the one line the operator reads."""


@dataclass(frozen=True)
class PasswordHash:
    """A salted scrypt hash and its parameters: `scrypt$N$r$p$SALT$HASH` (base64) on one line."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def of(cls, password: str) -> PasswordHash:
        salt = os.urandom(SALT_BYTES)
        digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return cls(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest)

    @classmethod
    def parse(cls, line: str) -> PasswordHash:
        """Read the file's line; ValueError if it is not one `hash-password` writes."""
        scheme, n, r, p, salt, digest = line.strip().split("$")
        if scheme != SCHEME:
            raise ValueError(f"unknown scheme {scheme!r}")
        return cls(int(n), int(r), int(p), _unb64(salt), _unb64(digest))

    def line(self) -> str:
        fields = (SCHEME, self.n, self.r, self.p, _b64(self.salt), _b64(self.digest))
        return "$".join(map(str, fields))

    def matches(self, password: str) -> bool:
        """Constant-time comparison of `password`'s hash with this one."""
        candidate = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


class PasswordCheck:
    """What the server asks clients for. A password that was right once is remembered as a keyed
    fast hash (a random key of this process, in memory only), so a crowd joining with it costs
    one scrypt; every wrong guess pays the full scrypt and WRONG_PASSWORD_DELAY_S."""

    def __init__(self, stored: PasswordHash) -> None:
        self.stored = stored
        self._key = os.urandom(32)
        self._known: bytes | None = None
        self._lock = threading.Lock()

    def matches(self, password: str) -> bool:
        quick = hmac.digest(self._key, password.encode(), "sha256")
        known = self._known
        if known is not None and hmac.compare_digest(quick, known):
            return True
        if not self.stored.matches(password):
            return False
        with self._lock:
            self._known = quick
        return True


def load_password_file(path: str) -> PasswordCheck:
    """The check for `--password-file PATH`; PasswordFileError (one line) when unusable."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PasswordFileError(f"cannot read the password file {path}: {reason}") from None
    try:
        return PasswordCheck(PasswordHash.parse(text))
    except ValueError:
        raise PasswordFileError(
            f"{path} is not a password hash: write it with `python -m chat.server hash-password`"
        ) from None


def hash_password_main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """`python -m chat.server hash-password`: the hash line on stdout; exit status."""
    if stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("chat-server: the passwords differ, nothing written", file=sys.stderr)
            return 1
    else:
        password = stdin.readline()
    password = password.strip()  # as the server compares it: `/pass` strips blanks around
    if not password:
        print("chat-server: the password is empty, nothing written", file=sys.stderr)
        return 1
    print(PasswordHash.of(password).line(), file=stdout)
    return 0


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM_BYTES, dklen=size
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
