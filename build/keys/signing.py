"""Signing SHA256SUMS with gpg, for systemd-sysupdate's Verify=yes.

systemd-sysupdate (through systemd-pull) fetches SHA256SUMS.gpg beside SHA256SUMS and checks it
with the host's gpg against one keyring file (/etc/systemd/import-pubring.gpg and friends). So a
signed release is: SHA256SUMS, SHA256SUMS.gpg (a detached signature of exactly those bytes), and
the public key, binary (what a host's keyring holds) and armored (for people).

gpg runs in a throwaway copy of the user's home (gpghome), never in the home itself, and the key
must be able to sign (keylisting). Nothing under the output directory is written until the
signature is made and checked with gpgv against the exported public key."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from build.core.errors import BuildError
from build.core.run import run_bytes
from build.keys.gpghome import (
    GPG_TIMEOUT,
    PASSPHRASE_ENV,
    copy_key,
    default_home,
    run_gpg,
    throwaway_home,
)
from build.keys.keylisting import keys, primary_fingerprints, signing_problem
from build.model.names import PUBLIC_KEY_ARMORED, PUBLIC_KEY_FILE, SIGNATURE_FILE, SUMS_FILE

SIGNED_FILES = (SIGNATURE_FILE, PUBLIC_KEY_FILE, PUBLIC_KEY_ARMORED)


@dataclass(frozen=True)
class Signer:
    key: str  # as given: an id or fingerprint
    gnupg_home: Path | None
    fingerprint: str
    public_key: bytes  # gpg --export
    public_key_armored: str  # gpg --armor --export


def signer(key: str, gnupg_home: Path | None = None) -> Signer:
    """The secret key `key` in `gnupg_home` (default: the user's), with its public key exported;
    refused in one line when gpg or gpgv is missing, or the key is unknown, ambiguous, or
    cannot sign (revoked, expired, no usable signing subkey). gpg runs in a throwaway copy of
    the home (gpghome): nothing of ours talks to the user's agent or outlives this call."""
    missing = [tool for tool in ("gpg", "gpgv") if shutil.which(tool) is None]
    if missing:
        raise BuildError(
            f"--sign-key needs {' and '.join(missing)}, which is not on PATH; nothing was written",
            "install GnuPG (apt-get install gnupg gpgv), or release unsigned without --sign-key",
        )
    if not key.strip() or key.startswith("-"):
        raise BuildError(f"invalid --sign-key {key!r}", "give a gpg key id or fingerprint")
    if gnupg_home is not None and not gnupg_home.is_dir():
        raise BuildError(
            f"no gpg home directory {gnupg_home} (--gnupg-home); nothing was written",
            "give the directory that holds the signing key, or leave --gnupg-home out",
        )
    hint = (
        "give the id or fingerprint of a secret key that gpg --list-secret-keys shows"
        + (f" with --homedir={gnupg_home}" if gnupg_home else "")
        + "; nothing was written"
    )
    what = f"no secret key {key} to sign with"
    with throwaway_home() as home:
        copy_key(gnupg_home or default_home(), home, key, what=what, hint=hint)
        listing = run_gpg(
            home, "--with-colons", "--list-secret-keys", "--", key, what=what, hint=hint
        ).decode("utf-8", "replace")
        fingerprints = primary_fingerprints(listing, "sec")
        if len(fingerprints) != 1:
            raise BuildError(
                f"--sign-key {key} names {len(fingerprints)} secret keys, not one; "
                "nothing was written",
                "give the full fingerprint of the key to sign with",
            )
        [fingerprint] = fingerprints
        [found] = keys(listing)
        problem = signing_problem(found)
        if problem is not None:
            given = "" if key.upper() == fingerprint else f" {key}:"
            raise BuildError(
                f"--sign-key{given} key {fingerprint} {problem}; nothing was written",
                "sign with a key gpg --list-secret-keys shows with an 'S' (add a signing subkey: "
                "gpg --quick-add-key; a new expiry date: gpg --quick-set-expire)",
            )
        export = ("--export-options=export-minimal", "--export", fingerprint)
        cannot = f"cannot export the public key {fingerprint}"
        public = run_gpg(home, *export, what=cannot, hint=hint)
        armored = run_gpg(home, "--armor", *export, what=cannot, hint=hint)
    if not public:
        raise BuildError(f"gpg exported no public key for {fingerprint}", hint)
    return Signer(key, gnupg_home, fingerprint, public, armored.decode("ascii"))


def sign(signer: Signer, data: bytes) -> bytes:
    """A binary detached signature of `data`, checked with gpgv against the exported public key
    before it is returned. A passphrase-protected key reads its passphrase from
    $ALLOY_SIGN_PASSPHRASE (gpg's loopback pinentry: no prompt, batch mode), handed to gpg on a
    pipe, in a throwaway copy of the home whose agent is stopped before this returns: no
    process keeps the passphrase, in its environment or its cache."""
    passphrase = os.environ.get(PASSPHRASE_ENV) or None  # CI's unset secret is empty
    hint = (
        f"check the key can sign; for a passphrase-protected key set {PASSPHRASE_ENV} to its "
        "passphrase; nothing was written"
    )
    what = f"gpg could not sign with {signer.key}"
    with tempfile.TemporaryDirectory(prefix="alloy-sign.") as scratch, throwaway_home() as home:
        copy_key(
            signer.gnupg_home or default_home(), home, signer.fingerprint, what=what, hint=hint
        )
        folder = Path(scratch)
        sums = folder / SUMS_FILE
        sums.write_bytes(data)
        command = ["--pinentry-mode=loopback"]
        if passphrase is not None:
            command.append("--passphrase-fd=0")
        command += [f"--local-user={signer.fingerprint}", "--detach-sign", "--output=-"]
        signature = run_gpg(
            home,
            *command,
            str(sums),
            what=what,
            hint=hint,
            stdin=None if passphrase is None else passphrase.encode() + b"\n",
        )
        check(signer.public_key, signature, data, folder)
    return signature


def check(public_key: bytes, signature: bytes, data: bytes, folder: Path) -> None:
    """gpgv's verdict on `signature` over `data`, with `public_key` as its only keyring (files in
    `folder`, an existing scratch directory). gpgv takes a relative --keyring from its home, so
    every path is absolute."""
    paths = {name: folder / name for name in ("check-key.gpg", "check.sig", "check.data")}
    paths["check-key.gpg"].write_bytes(public_key)
    paths["check.sig"].write_bytes(signature)
    paths["check.data"].write_bytes(data)
    home = folder / "gpgv-home"
    home.mkdir(mode=0o700, exist_ok=True)
    run_bytes(
        [
            "gpgv",
            f"--homedir={home}",
            f"--keyring={paths['check-key.gpg'].resolve()}",
            str(paths["check.sig"]),
            str(paths["check.data"]),
        ],
        what="the new signature of SHA256SUMS does not verify against the exported public key",
        hint="check the key (gpg --check-signatures); nothing was written",
        timeout=GPG_TIMEOUT,
    )
