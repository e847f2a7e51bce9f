"""Throwaway gpg keys for tests: a short GNUPGHOME under /tmp (gpg-agent's socket path must stay
short), whose agent is stopped and whose files are removed afterwards (after the whole run for
the keys every worker shares: tests/shared.py)."""

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


def export(home: Path, fingerprint: str) -> bytes:
    command = ["gpg", "--batch", f"--homedir={home}", "--export", fingerprint]
    return subprocess.run(command, capture_output=True, check=True).stdout


def gpgv(keyring: Path, signature: Path, data: Path) -> subprocess.CompletedProcess:
    home = Path(tempfile.mkdtemp(prefix="agv.", dir="/tmp"))
    try:
        return subprocess.run(
            [
                "gpgv",
                f"--homedir={home}",
                f"--keyring={keyring.resolve()}",
                str(signature),
                str(data),
            ],
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def make_keys(home: Path) -> Keys:
    return Keys(
        home,
        new_key(home, "Plain"),
        new_key(home, "Protected", PASSPHRASE),
        new_key(home, "Vendor"),
        new_key(home, "Next"),
    )


def new_home(prefix: str = "ag.") -> Path:
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o700)
    return home


def remove_home(home: Path) -> None:
    """Stop the daemons gpg started for `home` (gpg-agent, keyboxd), then remove it."""
    if shutil.which("gpgconf") is not None:
        subprocess.run(["gpgconf", f"--homedir={home}", "--kill", "all"], check=False)
    shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def throwaway_home(prefix: str = "ag.") -> Iterator[Path]:
    home = new_home(prefix)
    try:
        yield home
    finally:
        remove_home(home)


# Keys that cannot sign, made once a run (make_unusable_keys): the primary revoked or expired, the
# only signing subkey revoked or expired, an encrypt-only key (its primary only certifies), and
# a key whose signing subkey's secret is not in the home. Expired ones are made with a faked
# clock in the past, so their expiry dates are fixed.
PAST = "20200101T000000!"  # gpg's --faked-system-time, frozen
EXPIRED_ON = "2020-06-01"


@dataclass(frozen=True)
class UnusableKeys:
    home: Path
    revoked: str
    expired: str
    subkey_revoked: str
    subkey_expired: str
    encrypt_only: str
    secret_elsewhere: str


def fingerprints(home: Path, key: str) -> list[str]:
    """The primary's fingerprint, then each subkey's, of `key` (one key)."""
    listing = gpg(home, "--with-colons", "--list-keys", key).stdout.decode()
    return re.findall(r"^fpr:(?:[^:]*:){8}([0-9A-F]{40}):", listing, re.M)


def quick_key(home: Path, name: str, usage: str, expiry: str, *, faked: bool = False) -> str:
    """A new ed25519 key without a passphrase (made at PAST if `faked`); its fingerprint."""
    clock = [f"--faked-system-time={PAST}"] if faked else []
    gpg(home, *clock, "--pinentry-mode=loopback", "--passphrase=", "--quick-gen-key",
        f"{name} <{name.lower()}@example.com>", "ed25519", usage, expiry)  # fmt: skip
    return fingerprints(home, f"<{name.lower()}@example.com>")[0]  # that address exactly


def add_subkey(
    home: Path, primary: str, algo: str, usage: str, expiry: str, *, faked: bool = False
) -> str:
    """A new subkey of `primary` (made at PAST if `faked`); its fingerprint."""
    clock = [f"--faked-system-time={PAST}"] if faked else []
    gpg(home, *clock, "--pinentry-mode=loopback", "--passphrase=", "--quick-add-key", primary,
        algo, usage, expiry)  # fmt: skip
    return fingerprints(home, primary)[-1]


def revoke_key(home: Path, fingerprint: str) -> None:
    """Import the revocation certificate gpg made with the key (its armor line is escaped with
    a colon against an accidental import)."""
    certificate = (home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    revocation = home / "revocation.asc"
    revocation.write_text(certificate.replace(":-----BEGIN", "-----BEGIN"))
    gpg(home, "--import", str(revocation))


def revoke_subkey(home: Path, primary: str) -> None:
    """Revoke the first subkey of `primary` (gpg has no quick command for it: --edit-key,
    answered on stdin)."""
    answers = b"key 1\nrevkey\ny\n0\n\ny\nsave\n"
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--no-tty",
            f"--homedir={home}",
            "--pinentry-mode=loopback",
            "--passphrase=",
            "--command-fd=0",
            "--edit-key",
            primary,
        ],
        input=answers,
        capture_output=True,
        timeout=120,
        check=True,
    )


def make_unusable_keys(home: Path) -> UnusableKeys:
    revoked = quick_key(home, "Revoked", "sign", "never")
    revoke_key(home, revoked)
    subkey_revoked = quick_key(home, "SubkeyRevoked", "cert", "never")
    add_subkey(home, subkey_revoked, "ed25519", "sign", "never")
    revoke_subkey(home, subkey_revoked)
    subkey_expired = quick_key(home, "SubkeyExpired", "cert", "never", faked=True)
    add_subkey(home, subkey_expired, "ed25519", "sign", EXPIRED_ON, faked=True)
    encrypt_only = quick_key(home, "EncryptOnly", "cert", "never")
    add_subkey(home, encrypt_only, "cv25519", "encr", "never")
    elsewhere = quick_key(home, "Elsewhere", "cert", "never")
    signing = add_subkey(home, elsewhere, "ed25519", "sign", "never")
    gpg(home, "--yes", "--delete-secret-keys", f"{signing}!")
    return UnusableKeys(
        home,
        revoked,
        quick_key(home, "Expired", "sign", EXPIRED_ON, faked=True),
        subkey_revoked,
        subkey_expired,
        encrypt_only,
        elsewhere,
    )
