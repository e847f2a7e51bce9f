"""Throwaway verity signing keys and self-signed certificates (PEM), as mkosi genkey makes them:
RSA, whose PKCS#1 v1.5 signatures are deterministic (the same DDI bytes twice)."""

from __future__ import annotations

import subprocess
from pathlib import Path

PASSPHRASE = "correct horse battery staple"


def make_key(where: Path, name: str, passphrase: str | None = None) -> tuple[Path, Path]:
    """(key, certificate) in `where`, the key protected by `passphrase` if given."""
    key, cert = where / f"{name}.key", where / f"{name}.crt"
    protect = ["-passout", f"pass:{passphrase}"] if passphrase else ["-nodes"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert),
         "-days", "3650", "-subj", f"/CN={name}", *protect],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def key_set(where: Path) -> dict[str, tuple[Path, Path]]:
    """The tests' keys: "ours", "other" (another key and certificate), and "locked" (ours'
    kind, protected by PASSPHRASE)."""
    return {
        "ours": make_key(where, "ours"),
        "other": make_key(where, "other"),
        "locked": make_key(where, "locked", PASSPHRASE),
    }
