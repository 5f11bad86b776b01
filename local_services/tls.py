"""Throwaway TLS certificates for local servers (tests, demos): a CA and a server certificate signed by it.

Made with the ``openssl`` command (Debian's ``openssl``; ``./dev test`` installs it), valid two days, for
127.0.0.1 and localhost. Clients trust ``ca`` (redis-py's ``ssl_ca_certs``); the server presents ``cert``
and ``key``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # PEM: the CA's certificate, for clients to trust
    cert: Path  # PEM: the server's certificate (subjectAltName IP:127.0.0.1, DNS:localhost)
    key: Path  # PEM: the server's private key


def make_certificates(folder: Path) -> Certificates:
    """A new CA and a server certificate it signed, in ``folder``."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not on PATH: run ./dev setup (installs Debian's openssl)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()[-2000:]}")

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Tandem test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
