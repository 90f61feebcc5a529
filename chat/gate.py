"""What a connection passes before it may name itself: the TLS handshake and the password.

Both run in the connection's own thread (chat/session.py), never in the accept loop, and both
are bounded by the server's handshake deadline like the name itself. Each failure is one warning
in the log and, where the client can read it, one error line; the password is never logged.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from chat import protocol
from chat.flood import COMMAND_COST_BYTES
from chat.outbox import SEND_FLAGS
from chat.password import WRONG_PASSWORD_DELAY_S
from chat.protocol import LineTooLong
from chat.tls import HandshakeFailed, NotTls, TlsStream

if TYPE_CHECKING:
    from chat.session import Session

log = logging.getLogger("chat.server")


def secured(session: Session, stream: TlsStream) -> bool:
    """The TLS handshake; False (after one warning) when it failed. The accept loop's handshake
    deadline cuts it by shutting the socket down, like any nameless connection."""
    try:
        stream.handshake()
        return True
    except NotTls as exc:
        why = str(exc)
        line = protocol.encode_line(protocol.error_line(session.server.texts("not_tls")))
        with contextlib.suppress(OSError):  # plain text, for the human at nc
            stream.sock.send(line, SEND_FLAGS)
    except HandshakeFailed as exc:
        why = str(exc)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    if session.reason == "handshake timeout":
        why = f"not done within {session.server.config.handshake_timeout:g} s"
    log.warning("TLS handshake with %s failed: %s", session.peer, why)
    return False


def password_verdict(session: Session, line: bytes | LineTooLong) -> bool | None:
    """A line before the name, where a password may be owed. True: a right `/pass` (or a blank
    line, or a `/pass` nobody asked for); False: wrong or missing, told so and, after a delay
    that keeps guessing slow, to be closed. None: nothing owed and not `/pass`: a name."""
    text = line.decode(protocol.ENCODING, "replace") if isinstance(line, bytes) else ""
    parsed = protocol.parse_client_line(text)
    password = protocol.presented_password(parsed)
    if session.authenticated:
        return None if password is None else True
    if parsed is None:  # blank lines before it are harmless
        return True
    session.cost += COMMAND_COST_BYTES
    check = session.server.password
    if password is not None and check is not None and check.matches(password):
        session.authenticated = True
        return True
    session.error("wrong_password" if password is not None else "password_required")
    why = "wrong password" if password is not None else "no password"
    log.warning("refused %s: %s", session.peer, why)
    session.server.stopping.wait(WRONG_PASSWORD_DELAY_S)
    return False
