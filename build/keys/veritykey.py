"""The verity key and certificate of a signed DDI build (--verity-key, --verity-cert), checked
before anything is downloaded or written: the certificate readable, the key opening with the
passphrase from $ALLOY_VERITY_KEY_PASSPHRASE, and the key the certificate's. Each failure is one
line naming the file(s) at fault, not openssl's words about PKCS#12 ciphers."""

from __future__ import annotations

from pathlib import Path

from build.core.errors import BuildError
from build.core.run import run_bytes
from build.keys.veritysign import (
    OPENSSL_TIMEOUT,
    VERITY_PASSPHRASE_ENV,
    certificate_der,
    passphrase_source,
)

NOTHING_WRITTEN = "nothing was written"
_ENCRYPTED = (b"ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED")


MAX_KEY_BYTES = 1 << 20  # a PEM private key is a few KiB; /dev/zero is endless


def _key_text(key: Path) -> bytes:
    try:
        with key.open("rb") as stream:
            text = stream.read(MAX_KEY_BYTES + 1)
    except OSError as error:
        raise BuildError(
            f"cannot read the verity key {key} (--verity-key): {error.strerror}; {NOTHING_WRITTEN}",
            "give --verity-key a readable PEM private key",
        ) from None
    if len(text) > MAX_KEY_BYTES:
        raise BuildError(
            f"the verity key {key} (--verity-key) is over {MAX_KEY_BYTES >> 20} MiB: not a PEM "
            f"private key; {NOTHING_WRITTEN}",
            "give --verity-key the PEM private key of --verity-cert",
        )
    return text


def _public_key_of_key(key: Path) -> bytes:
    passin, environment = passphrase_source()
    protected = any(marker in _key_text(key) for marker in _ENCRYPTED)
    try:
        return run_bytes(
            ["openssl", "pkey", "-in", str(key), *passin, "-pubout", "-outform", "DER"],
            env=environment,
            timeout=OPENSSL_TIMEOUT,
        )
    except BuildError:
        if protected:
            given = "a wrong" if environment.get(VERITY_PASSPHRASE_ENV) else "no"
            raise BuildError(
                f"cannot open the verity key {key} (--verity-key): {given} passphrase in "
                f"${VERITY_PASSPHRASE_ENV}; {NOTHING_WRITTEN}",
                f"set ${VERITY_PASSPHRASE_ENV} to the key's passphrase (never on the command line)",
            ) from None
        raise BuildError(
            f"cannot read the verity key {key} (--verity-key): not a PEM private key; "
            f"{NOTHING_WRITTEN}",
            "give --verity-key the PEM private key of --verity-cert",
        ) from None


def _public_key_of_certificate(certificate: Path, der: bytes) -> bytes:
    pem = run_bytes(
        ["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"],
        stdin=der,
        timeout=OPENSSL_TIMEOUT,
    )
    return run_bytes(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], stdin=pem, timeout=OPENSSL_TIMEOUT
    )


def check_signer(key: Path, certificate: Path) -> bytes:
    """The certificate's DER bytes, once `key` opens and is the private key of `certificate`;
    one BuildError naming the file(s) otherwise."""
    der = certificate_der(certificate)
    if _public_key_of_key(key) != _public_key_of_certificate(certificate, der):
        raise BuildError(
            f"the verity key {key} (--verity-key) is not the private key of the certificate "
            f"{certificate} (--verity-cert); {NOTHING_WRITTEN}",
            "give the key and the certificate made together (openssl req -x509 -newkey ...)",
        )
    return der
