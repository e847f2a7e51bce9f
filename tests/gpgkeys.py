"""Throwaway gpg keys for tests: a short GNUPGHOME under /tmp (gpg-agent's socket path must stay
short), whose agent is stopped and whose files are removed afterwards."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PASSPHRASE = "open sesame"


@dataclass(frozen=True)
class Keys:
    """The tests' throwaway keys (the `keys` fixture): their home and fingerprints."""

    home: Path
    plain: str  # fingerprint of a key without a passphrase
    protected: str  # fingerprint of a key with PASSPHRASE
    vendor: str  # another key, standing for the OS vendor's
    next: str  # and one an image names as the key to trust next


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--batch", "--no-tty", f"--homedir={home}", *args],
        capture_output=True,
        timeout=120,
        check=True,
    )


def new_key(home: Path, name: str, passphrase: str = "") -> str:
    """A new ed25519 signing key named `name`; its fingerprint."""
    gpg(home, "--pinentry-mode=loopback", f"--passphrase={passphrase}", "--quick-gen-key",
        f"{name} <{name.lower()}@example.com>", "ed25519", "sign", "never")  # fmt: skip
    listing = gpg(home, "--with-colons", "--list-secret-keys", name).stdout.decode()
    return re.findall(r"^fpr:(?:[^:]*:){8}([0-9A-F]{40}):", listing, re.M)[0]


@contextlib.contextmanager
def throwaway_keys() -> Iterator[Keys]:
    with throwaway_home() as home:
        yield Keys(
            home,
            new_key(home, "Plain"),
            new_key(home, "Protected", PASSPHRASE),
            new_key(home, "Vendor"),
            new_key(home, "Next"),
        )


@contextlib.contextmanager
def throwaway_home(prefix: str = "ag.") -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o700)
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", f"--homedir={home}", "--kill", "all"], check=False)
        shutil.rmtree(home, ignore_errors=True)
