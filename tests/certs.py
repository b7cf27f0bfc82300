"""Certificates for tests, made with the openssl command."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(directory: Path, name: str, *extensions: str) -> tuple[Path, Path]:
    """A certificate that is its own CA: (certificate, key), made with the openssl command."""
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    extra = [arg for extension in extensions for arg in ("-addext", extension)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         *extra, "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key
