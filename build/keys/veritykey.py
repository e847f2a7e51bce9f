"""The verity key and certificate of a signed DDI build (--verity-key, --verity-cert), checked
before anything is downloaded or written: the certificate readable, the key opening with the
passphrase from $ALLOY_VERITY_KEY_PASSPHRASE, and the key the certificate's. Each failure is one
line naming the file(s) at fault, not openssl's words about PKCS#12 ciphers. A key on a PKCS#11
token is checked the same way through openssl's pkcs11 engine: the engine there, the key found,
the PIN right, the key the certificate's; a wrong PIN is refused here, before any signing tries
it again (a token locks after a few)."""

from __future__ import annotations

from pathlib import Path

from build.core.errors import BuildError
from build.core.run import last_words, run_bytes, run_outcome
from build.keys.veritycert import Certificate
from build.keys.veritysign import (
    OPENSSL_TIMEOUT,
    PKCS11_ENGINE,
    PKCS11_ENGINE_PACKAGE,
    VERITY_PASSPHRASE_ENV,
    passphrase_source,
    private_key_arguments,
)
from build.model.keysource import TokenKey, VerityKey

NOTHING_WRITTEN = "nothing was written"
_ENCRYPTED = (b"ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED")


MAX_KEY_BYTES = 1 << 20  # a PEM private key is a few KiB; /dev/zero is endless
# What libp11's engine and the token say (on stderr) when the PIN is refused, and when the URI
# names no key there.
_WRONG_PIN = ("PIN incorrect", "PIN_INCORRECT", "PIN_LEN_RANGE", "You must type in")
_PIN_LOCKED = ("PIN locked", "PIN_LOCKED")
_NO_KEY = ("object not found", "was not found at", "No matching", "token not found")


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


def _require_engine(key: TokenKey) -> None:
    result = run_outcome(["openssl", "engine", "-t", PKCS11_ENGINE], timeout=OPENSSL_TIMEOUT)
    if result.returncode != 0:
        raise BuildError(
            f"openssl cannot load its {PKCS11_ENGINE} engine, which the verity key {key} "
            f"(--verity-key) needs; {NOTHING_WRITTEN}",
            f"install it: apt-get install {PKCS11_ENGINE_PACKAGE} (and OPENSSL_ENGINES, if set, "
            "must name the directory that holds pkcs11.so)",
        )


def _public_key_of_token(key: TokenKey) -> bytes:
    _require_engine(key)
    passin, environment = passphrase_source()
    argv = ["openssl", "pkey", *private_key_arguments(key, "-in", "-inform"), *passin]
    result = run_outcome([*argv, "-pubout", "-outform", "DER"], env=environment,
                         timeout=OPENSSL_TIMEOUT)  # fmt: skip
    if result.returncode == 0 and result.stdout:
        return result.stdout
    said = result.stderr.decode("utf-8", "replace")
    if any(marker in said for marker in _PIN_LOCKED):
        reason, hint = "its PIN is locked", "unlock the token with its SO PIN (its owner's tool)"
    elif any(marker in said for marker in _WRONG_PIN):
        if key.pin_from_uri:
            reason = "a wrong PIN in the file of the URI's pin-source"
        else:
            given = "a wrong" if environment.get(VERITY_PASSPHRASE_ENV) else "no"
            reason = f"{given} PIN in ${VERITY_PASSPHRASE_ENV}"
        hint = (
            f"set ${VERITY_PASSPHRASE_ENV} to the token's user PIN (never on the command line), "
            "or name a file holding it with the URI's pin-source; a token locks after a few "
            "wrong PINs"
        )
    elif any(marker in said for marker in _NO_KEY):
        reason = "no such private key on any token"
        hint = "list the token's keys (pkcs11-tool --list-objects --login) and fix the URI"
    else:
        reason = f"openssl says: {last_words(result.stderr) or 'nothing'}"
        hint = f"check the URI and the token ({PKCS11_ENGINE_PACKAGE}, p11-kit, the token's module)"
    raise BuildError(
        f"cannot open the verity key {key} (--verity-key): {reason}; {NOTHING_WRITTEN}", hint
    )


def _public_key_of_certificate(der: bytes) -> bytes:
    pem = run_bytes(
        ["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"],
        stdin=der,
        timeout=OPENSSL_TIMEOUT,
    )
    return run_bytes(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], stdin=pem, timeout=OPENSSL_TIMEOUT
    )


def check_signer(key: VerityKey, certificate: Certificate) -> None:
    """Refuses, in one BuildError naming the file(s), unless `key` (a PEM file or on a PKCS#11
    token) opens and is the private key of `certificate`."""
    public = _public_key_of_token(key) if isinstance(key, TokenKey) else _public_key_of_key(key)
    if public != _public_key_of_certificate(certificate.der):
        raise BuildError(
            f"the verity key {key} (--verity-key) is not the private key of the certificate "
            f"{certificate.path} (--verity-cert); {NOTHING_WRITTEN}",
            "give the key and the certificate made together (openssl req -x509 -newkey ...)",
        )
