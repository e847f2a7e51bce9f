"""The certificate signed DDIs are checked against (--verity-cert): read once, here, by every
step that needs it (pack signs as it, verify checks a signature against it, release publishes it
and checks images are signed by it), so all of them see the same bytes.

The file is hostile input: read once, bounded, and only if it is a regular file (a symlink the
user names is followed: it is their argument); one certificate, PEM or DER (openssl reads both;
hosts get PEM). Refused: several certificates (systemd reads only the first of a file in
/etc/verity.d, so a bundle would ship one of them silently) and a private key in it (the file is
the public one, installed on hosts by hand too). An expired certificate is accepted: systemd
checks the signature with PKCS7_NOVERIFY, which checks no dates."""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from build.core.errors import BuildError
from build.core.run import run_bytes
from build.core.safeio import read_regular
from build.formats.veritysig import certificate_fingerprint

OPENSSL_TIMEOUT = 60.0
# A certificate is 1 to 2 KiB; a file far larger is no certificate.
MAX_CERTIFICATE_BYTES = 64 << 10
_PEM_BEGIN = b"-----BEGIN "
_PEM_CERTIFICATES = (b"-----BEGIN CERTIFICATE-----", b"-----BEGIN X509 CERTIFICATE-----")
_PEM_PRIVATE_KEY = b"PRIVATE KEY-----"  # PKCS#8, RSA, EC, encrypted
CERT_HINT = "give --verity-cert one X.509 certificate, PEM (openssl req -x509 makes one)"


@dataclass(frozen=True)
class Certificate:
    path: Path  # as given (--verity-cert)
    der: bytes
    pem: str  # the certificate alone: its DER as PEM
    fingerprint: str  # sha256 of its DER, lowercase hex: what a signature partition names


@contextmanager
def pem_file(certificate: Certificate) -> Iterator[Path]:
    """The certificate's PEM in a private scratch file, for openssl's -signer and -certfile:
    the bytes read once, never the path as given again."""
    with tempfile.TemporaryDirectory(prefix="alloy-verity-cert-") as scratch:
        path = Path(scratch) / "certificate.pem"
        path.write_text(certificate.pem)
        yield path


def load_certificate(path: Path) -> Certificate:
    """The one X.509 certificate in `path` (PEM or DER), read once and bounded, with openssl;
    one BuildError otherwise (see the module's docstring)."""
    try:
        raw = read_regular(
            path.resolve(), MAX_CERTIFICATE_BYTES, f"{CERT_HINT}; nothing was written"
        )
    except OSError as error:
        raise BuildError(
            f"cannot read the verity certificate {path} (--verity-cert): "
            f"{error.strerror or error}; nothing was written",
            CERT_HINT,
        ) from None
    _refuse_key_or_bundle(path, raw)
    der = run_bytes(
        ["openssl", "x509", "-outform", "DER"],
        stdin=raw,
        what=f"cannot read the verity certificate {path} (--verity-cert)",
        hint=f"{CERT_HINT}; nothing was written",
        timeout=OPENSSL_TIMEOUT,
    )
    pem = ssl.DER_cert_to_PEM_cert(der)
    return Certificate(path, der, pem, certificate_fingerprint(der).hex())


def _refuse_key_or_bundle(path: Path, raw: bytes) -> None:
    if _PEM_PRIVATE_KEY in raw:
        raise BuildError(
            f"{path} (--verity-cert) holds a private key: the certificate file is the public "
            "one, published and installed on hosts; nothing was written",
            "keep the key in its own file (--verity-key, for builds only) and give "
            "--verity-cert the certificate alone",
        )
    blocks = raw.count(_PEM_BEGIN)
    if blocks > 1:
        certificates = sum(raw.count(begin) for begin in _PEM_CERTIFICATES)
        raise BuildError(
            f"{path} (--verity-cert) holds {certificates} certificates"
            + (f" in {blocks} PEM blocks" if blocks != certificates else "")
            + ": systemd reads only the first of a file in /etc/verity.d; nothing was written",
            "give one certificate, the one the images are signed with; for a rotation, put "
            "the new one on hosts as a file of its own (README, Rotate a certificate)",
        )
