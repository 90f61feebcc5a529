"""What the TLS and password tests share: certificates made by trustme (an ECDSA P-256 CA and a
server certificate for 127.0.0.1 and localhost, in PEM files), a client context that trusts them,
and password files written by `python -m chat.server hash-password` itself.

The fixtures here are registered by tests/conftest.py.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate it issued, as the files a user would have."""

    ca: trustme.CA
    cert: Path  # the server's certificate chain
    key: Path  # its private key
    ca_cert: Path  # the CA's certificate, for clients' --ca

    def server_args(self) -> tuple[str, ...]:
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key))

    def server_options(self) -> dict[str, str]:
        """The same as Config fields, for an in-process server."""
        return {"tls_cert": str(self.cert), "tls_key": str(self.key)}

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    issued = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.ECDSA)
    files = TlsFiles(ca, folder / "server.pem", folder / "server.key", folder / "ca.pem")
    files.cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca_cert))
    return files


def hash_password(password: str) -> str:
    """What `python -m chat.server hash-password` writes for `password` piped in."""
    done = subprocess.run(
        [sys.executable, "-m", "chat.server", "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="session")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A password file for PASSWORD, written as a user would."""
    path = tmp_path_factory.mktemp("password") / "chat.pass"
    path.write_text(hash_password(PASSWORD))
    return path
