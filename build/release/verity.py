"""A release's dm-verity side: the certificate hosts check signed DDIs against (--verity-cert),
which the release publishes beside its key and the Butane config writes to /etc/verity.d, and
what each image's build info says of its verity (root hash, signature, certificate).

With --verity-cert every image must be a DDI signed by that certificate's key (its build info
says so here; verify's static checks, run again by release with the certificate, check the
signature itself as systemd will on the host): a certificate shipped beside images it does not
sign, or --require-signed-images over images a host would refuse, would leave a fleet without
alloy. The certificate is published and provisioned as
its DER re-encoded to PEM, never the file as given.

The file is hostile input (load_certificate): read once, bounded, and only if it is a regular
file (a symlink the user names is followed: it is their argument); one certificate, PEM or DER
(openssl reads both; hosts get PEM). Refused: several certificates (systemd reads only the
first of a file in /etc/verity.d, so a bundle would ship one of them silently) and a private
key in it (the file is the public one, installed on hosts by hand too). An expired certificate
is accepted: systemd checks the signature with PKCS7_NOVERIFY, which checks no dates."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build.core.errors import BuildError
from build.core.run import run_bytes
from build.core.safeio import read_regular
from build.formats.veritysig import certificate_fingerprint
from build.keys import veritysign
from build.read.gpt import read_gpt

# What a DDI's build info records of its verity (build/formats/ddipack.py fields() and pack()):
# the root hash, whether it is signed, the signing certificate's fingerprint, the data
# partition's file system.
ROOT_HASH = "root_hash"
SIGNED = "verity_signed"
FINGERPRINT = "verity_certificate_fingerprint"
FILESYSTEM = "ddi_filesystem"

# A certificate is 1 to 2 KiB; a file far larger is no certificate.
MAX_CERTIFICATE_BYTES = 64 << 10
_PEM_BEGIN = b"-----BEGIN "
_PEM_CERTIFICATES = (b"-----BEGIN CERTIFICATE-----", b"-----BEGIN X509 CERTIFICATE-----")
_PEM_PRIVATE_KEY = b"PRIVATE KEY-----"  # PKCS#8, RSA, EC, encrypted
CERT_HINT = "give --verity-cert one X.509 certificate, PEM (openssl req -x509 makes one)"


@dataclass(frozen=True)
class Certificate:
    path: Path  # as given (--verity-cert)
    pem: str  # the certificate alone: its DER as PEM
    fingerprint: str  # sha256 of its DER, lowercase hex: what a signature partition names


@dataclass(frozen=True)
class Verity:
    root_hash: str  # lowercase hex
    signed: bool
    fingerprint: str | None  # of the signing certificate; None unsigned
    filesystem: str  # the data partition's

    def index_fields(self) -> dict[str, Any]:
        """What index.json says of it, under the build info's names."""
        return {
            FILESYSTEM: self.filesystem,
            ROOT_HASH: self.root_hash,
            SIGNED: self.signed,
            FINGERPRINT: self.fingerprint,
        }


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
        timeout=veritysign.OPENSSL_TIMEOUT,
    )
    return Certificate(path, ssl.DER_cert_to_PEM_cert(der), certificate_fingerprint(der).hex())


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


def refuse_policy_without_certificate(require_signed: bool, certificate: Path | None) -> None:
    if require_signed and certificate is None:
        raise BuildError(
            "--require-signed-images without --verity-cert: hosts would refuse every "
            "extension, alloy's too, with no certificate in /etc/verity.d to check them against",
            "give --verity-cert=CRT, the certificate the DDIs are signed with; nothing was written",
        )


def verity_of(info: Mapping[str, Any]) -> Verity:
    """A DDI's verity as its build info `info` records it (its fields checked by
    build/image/buildinfo.py parse_fields)."""
    return Verity(info[ROOT_HASH], info[SIGNED], info.get(FINGERPRINT), info[FILESYSTEM])


def check_signed_by(image: Path, verity: Verity | None, certificate: Certificate) -> None:
    """Refuses unless `image`'s build info says it is a DDI signed by `certificate`. Its
    signature partition, the signature of the root hash against the certificate (as systemd
    checks it on a host) and the hash tree under it are verify's static checks, which release
    runs again with the certificate."""
    hint = (
        f"build the images with --format=ddi --verity-key=KEY --verity-cert={certificate.path}, "
        "or release without --verity-cert; nothing was written"
    )
    if verity is None:
        raise BuildError(
            f"{image.name} is no dm-verity DDI, so hosts cannot check it against "
            f"--verity-cert {certificate.path}",
            hint,
        )
    if not verity.signed:
        raise BuildError(
            f"{image.name} is an unsigned verity DDI, which hosts that check signatures against "
            f"--verity-cert {certificate.path} refuse",
            hint,
        )
    if verity.fingerprint != certificate.fingerprint:
        raise BuildError(
            f"{image.name} is signed by the certificate with sha256 {verity.fingerprint}, not "
            f"--verity-cert {certificate.path} ({certificate.fingerprint})",
            hint,
        )


def check_recorded(image: Path, verity: Verity) -> None:
    """Refuses unless `image` is what its build info says of its verity, which index.json
    publishes: its root hash (the partition UUIDs' halves, which verify's static checks, run
    first, matched to the recomputed hash tree) and whether it is signed."""
    table = read_gpt(image, (2, 3))
    root_hash = (table.partitions[0].uuid.bytes + table.partitions[1].uuid.bytes).hex()
    signed = len(table.partitions) == 3
    hint = "rebuild it (invoke all) or put back the build info it was built with"
    if root_hash != verity.root_hash:
        raise BuildError(
            f"{image.name}: its build info says root hash {verity.root_hash}, the image's is "
            f"{root_hash}; nothing was written",
            hint,
        )
    if signed != verity.signed:
        said, found = ("signed", "unsigned") if verity.signed else ("unsigned", "signed")
        raise BuildError(
            f"{image.name}: its build info says it is {said}, the image is {found}; nothing "
            "was written",
            hint,
        )
