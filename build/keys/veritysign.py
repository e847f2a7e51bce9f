"""Signing a dm-verity root hash as systemd-repart does, and checking such a signature as
systemd does, with the openssl command (the `cryptography` package is not a dependency and
would add one; openssl is on every builder and host that has systemd).

What repart signs (repart.c sign_verity_roothash()): the root hash in lowercase hex
(hexmem(), no newline), with PKCS7_sign(cert, key, NULL, data,
PKCS7_DETACHED|PKCS7_NOATTR|PKCS7_BINARY), written as DER (i2d_PKCS7). `openssl smime -sign
-binary -noattr -outform DER` makes that same call (detached is smime's default) and so the same
bytes; `openssl cms -sign` does not: CMS writes the digest algorithm without its NULL
parameters (tests/test_veritysign.py compares all three). RSA signatures (PKCS#1 v1.5) are
deterministic, so an RSA key signs one root hash into the same bytes every time; an ECDSA key
does not (OpenSSL draws a random nonce for each signature).

How systemd checks it (dissect-image.c validate_signature_userspace()): d2i_PKCS7() of the
signature, then PKCS7_verify(p7, certs, NULL, bio, NULL, PKCS7_NOINTERN|PKCS7_NOVERIFY) over
hexmem() of the root hash (strlen bytes), with the certificates of /etc/verity.d as the only
candidate signers, not the ones the signature carries (PKCS7_NOINTERN), and no chain check
(PKCS7_NOVERIFY): `openssl smime -verify -nointern -noverify -certfile CERT` asks the same, so a
signature made by any other key fails, and a self-signed certificate (what mkosi genkey makes)
passes.

A key's passphrase reaches openssl only through its environment (`-passin env:NAME`), never
its command line, which any user of the machine can read in /proc.

A key on a PKCS#11 token (build/model/keysource.py) reaches openssl as repart's
--private-key-source=engine:pkcs11 passes it: `-engine pkcs11 -keyform engine -inkey URI`.
Debian 12's OpenSSL 3.0 has the engine (libengine-pkcs11-openssl, libp11 0.4.12) but no
pkcs11-provider (Debian 13 has one); the engine asks its PIN through the same -passin, unless
the URI's pin-source names a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from build.core.errors import BuildError
from build.core.run import run_bytes
from build.keys.veritycert import OPENSSL_TIMEOUT, Certificate, pem_file
from build.model.keysource import TokenKey, VerityKey
from build.read.veritysig import ROOT_HASH_BYTES

# The environment variable that holds the verity key's passphrase, if it has one.
VERITY_PASSPHRASE_ENV = "ALLOY_VERITY_KEY_PASSPHRASE"
# openssl's engine for PKCS#11 tokens, and the Debian package that brings it.
PKCS11_ENGINE = "pkcs11"
PKCS11_ENGINE_PACKAGE = "libengine-pkcs11-openssl"


def signed_text(root_hash: bytes) -> bytes:
    """What repart signs and systemd verifies: the root hash in lowercase hex, nothing else."""
    if len(root_hash) != ROOT_HASH_BYTES:
        raise ValueError(f"a root hash has {ROOT_HASH_BYTES} bytes, not {len(root_hash)}")
    return root_hash.hex().encode("ascii")


def _readable(path: Path, what: str, option: str) -> None:
    try:
        with path.open("rb") as stream:
            stream.read(1)
    except OSError as error:
        reason = error.strerror or str(error)
        raise BuildError(
            f"cannot read the verity {what} {path} ({option}): {reason}; nothing was written",
            f"give {option} a readable PEM file",
        ) from None


def passphrase_source() -> tuple[list[str], dict[str, str]]:
    """openssl's -passin for the verity key, and the environment to run it in: the passphrase
    from VERITY_PASSPHRASE_ENV, else none."""
    environment = dict(os.environ)
    if environment.get(VERITY_PASSPHRASE_ENV):  # CI's unset secret is empty
        return ["-passin", f"env:{VERITY_PASSPHRASE_ENV}"], environment
    environment.pop(VERITY_PASSPHRASE_ENV, None)
    return ["-passin", "pass:"], environment  # a protected key fails, never asks on a terminal


def private_key_arguments(key: VerityKey, flag: str, form: str) -> list[str]:
    """openssl's arguments that load `key` with `flag` (-inkey, -in) and `form` (-keyform,
    -inform): a PEM file (checked readable), or a token's key through the pkcs11 engine."""
    if isinstance(key, TokenKey):
        return ["-engine", PKCS11_ENGINE, form, "engine", flag, key.uri]
    _readable(key, "key", "--verity-key")
    return [flag, str(key)]


def sign_root_hash(root_hash: bytes, key: VerityKey, certificate: Certificate) -> bytes:
    """The DER PKCS#7 signature repart would write for `root_hash` with `key` (PEM, or on a
    PKCS#11 token) and `certificate`, checked against the certificate before it is returned. A
    passphrase or PIN, if the key has one, comes from VERITY_PASSPHRASE_ENV (or a token URI's
    pin-source)."""
    source = private_key_arguments(key, "-inkey", "-keyform")
    passin, environment = passphrase_source()
    with pem_file(certificate) as pem:
        argv = ["openssl", "smime", "-sign", "-binary", "-noattr", "-outform", "DER"]
        argv += ["-signer", str(pem), *source, *passin]
        signature = run_bytes(
            argv,
            env=environment,
            stdin=signed_text(root_hash),
            what=f"cannot sign the verity root hash with {key} and {certificate.path}",
            hint=(
                "check that --verity-key is the private key of --verity-cert (a PEM file or a "
                f"pkcs11: URI), and for a key with a passphrase or PIN set "
                f"{VERITY_PASSPHRASE_ENV}"
            ),
            timeout=OPENSSL_TIMEOUT,
        )
    check_signature(root_hash, signature, certificate)
    return signature


def check_signature(root_hash: bytes, signature: bytes, certificate: Certificate) -> None:
    """Refuses, in one BuildError, unless `signature` (DER PKCS#7) signs `root_hash` as
    systemd checks it and was made with the key of `certificate`."""
    with (
        tempfile.TemporaryDirectory(prefix="alloy-verity-sig-") as scratch,
        pem_file(certificate) as pem,
    ):
        signed = Path(scratch) / "roothash"
        signed.write_bytes(signed_text(root_hash))
        run_bytes(
            [
                "openssl", "smime", "-verify", "-binary", "-inform", "DER",
                "-content", str(signed), "-certfile", str(pem),
                "-nointern", "-noverify", "-out", os.devnull,
            ],
            stdin=signature,
            what=(
                f"the verity signature of root hash {root_hash.hex()} does not verify against "
                f"{certificate.path}"
            ),
            hint="the image was signed by another key, or changed after signing; do not install it",
            timeout=OPENSSL_TIMEOUT,
        )  # fmt: skip
