"""Certificates for trying TLS: an ECDSA P-256 CA and a server certificate for 127.0.0.1 and
localhost, made by trustme (a dev dependency) and written as the PEM files a user would have.
Shared by tests/ and bench/; never imported by chat/."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate it issued, as files."""

    ca: trustme.CA
    cert: Path  # the server's certificate chain
    key: Path  # its private key
    ca_cert: Path  # the CA's certificate, for clients' --ca

    def server_args(self) -> tuple[str, ...]:
        """The server's command-line options that serve TLS with these files."""
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key))

    def server_options(self) -> dict[str, str]:
        """The same as Config fields, for an in-process server."""
        return {"tls_cert": str(self.cert), "tls_key": str(self.key)}

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def make_tls_files(folder: Path) -> TlsFiles:
    """A fresh CA and server certificate (ECDSA P-256) written into `folder`."""
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    issued = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.ECDSA)
    files = TlsFiles(ca, folder / "server.pem", folder / "server.key", folder / "ca.pem")
    files.cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca_cert))
    return files
