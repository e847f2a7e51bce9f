"""A release's dm-verity side: the certificate hosts check signed DDIs against (--verity-cert),
which the release publishes beside its key and the Butane config writes to /etc/verity.d, and
what each image's build info says of its verity (root hash, signature, certificate).

With --verity-cert every image must be a DDI signed by that certificate's key, and its
signature partition is checked against it here, as systemd will on the host: a certificate
shipped beside images it does not sign, or --require-signed-images over images a host would
refuse, would leave a fleet without alloy. The certificate is published and provisioned as
its DER re-encoded to PEM, never the file as given, which may hold a private key too."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build.core.errors import BuildError
from build.core.safeio import Malformed, open_regular, refusing_malformed
from build.formats.veritysig import certificate_fingerprint
from build.keys import veritysign
from build.model.ddi import root_hash_uuids
from build.model.names import buildinfo_file
from build.read.gpt import read_gpt
from build.read.veritysig import PARTITION_BYTES, parse_signature_partition

# What a DDI's build info records of its verity (the pack step's fields for a DDI): the root
# hash, whether it is signed, the signing certificate's fingerprint, the data partition's file
# system. Images of other formats record none of them.
ROOT_HASH = "root_hash"
SIGNED = "verity_signed"
FINGERPRINT = "verity_certificate_fingerprint"
FILESYSTEM = "ddi_filesystem"
_HEX64 = re.compile(r"[0-9a-f]{64}")


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
    filesystem: str | None  # the data partition's, as recorded

    def index_fields(self) -> dict[str, Any]:
        """What index.json says of it, under the build info's names."""
        return {
            FILESYSTEM: self.filesystem,
            ROOT_HASH: self.root_hash,
            SIGNED: self.signed,
            FINGERPRINT: self.fingerprint,
        }


def load_certificate(path: Path) -> Certificate:
    """The X.509 certificate in `path` (PEM), read with openssl; one BuildError otherwise."""
    der = veritysign.certificate_der(path)
    return Certificate(path, ssl.DER_cert_to_PEM_cert(der), certificate_fingerprint(der).hex())


def refuse_policy_without_certificate(require_signed: bool, certificate: Path | None) -> None:
    if require_signed and certificate is None:
        raise BuildError(
            "--require-signed-images without --verity-cert: hosts would refuse every "
            "extension, alloy's too, with no certificate in /etc/verity.d to check them against",
            "give --verity-cert=CRT, the certificate the DDIs are signed with; nothing was written",
        )


def verity_of(image: Path, info: dict[str, Any], rebuild: str) -> Verity | None:
    """The verity its build info `info` records, or None where it records none (a plain
    image); BuildError naming the build info where what it says is not a root hash, a yes/no
    and a fingerprint."""
    if ROOT_HASH not in info:
        return None
    root_hash, signed = info[ROOT_HASH], info.get(SIGNED)
    fingerprint, filesystem = info.get(FINGERPRINT), info.get(FILESYSTEM)
    where = buildinfo_file(image)
    if not isinstance(root_hash, str) or not _HEX64.fullmatch(root_hash):
        raise BuildError(f"{ROOT_HASH} in {where} is not a sha256 root hash in hex", rebuild)
    if not isinstance(signed, bool):
        raise BuildError(f"{SIGNED} in {where} is not true or false", rebuild)
    if signed != (fingerprint is not None):
        raise BuildError(
            f"{where} says signed is {str(signed).lower()} with "
            f"{'no ' if fingerprint is None else 'a '}{FINGERPRINT}",
            rebuild,
        )
    if fingerprint is not None and (
        not isinstance(fingerprint, str) or not _HEX64.fullmatch(fingerprint)
    ):
        raise BuildError(f"{FINGERPRINT} in {where} is not a sha256 fingerprint in hex", rebuild)
    if filesystem is not None and (not isinstance(filesystem, str) or len(filesystem) > 40):
        raise BuildError(f"{FILESYSTEM} in {where} is not a file system's name", rebuild)
    return Verity(root_hash, signed, fingerprint, filesystem)


def check_signed_by(image: Path, verity: Verity | None, certificate: Certificate) -> None:
    """Refuses unless `image` is a DDI whose build info and signature partition both name
    `certificate`, and whose signature of the root hash verifies against it as systemd checks
    it on a host (the hash tree under that root hash is verify's, run again by release)."""
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
    signature = _signature_partition(image, verity)
    veritysign.check_signature(bytes.fromhex(verity.root_hash), signature, certificate.path)


def _signature_partition(image: Path, verity: Verity) -> bytes:
    """The DER signature in `image`'s signature partition, which must name the root hash and
    certificate its build info records, and whose data and hash partitions carry that root
    hash's halves as UUIDs (what systemd compares before it sets up dm-verity)."""
    with refusing_malformed(image, "sysext DDI", "alloy-sysext or systemd-repart"):
        table = read_gpt(image, 3)
        data, hashes, partition = table.partitions
        root_hash = bytes.fromhex(verity.root_hash)
        if (data.uuid, hashes.uuid) != root_hash_uuids(root_hash):
            raise Malformed(f"its partition UUIDs are not root hash {verity.root_hash}'s halves")
        if partition.size > PARTITION_BYTES:
            raise Malformed(f"its signature partition is over {PARTITION_BYTES} bytes")
        with open_regular(image, "rebuild it") as stream:
            stream.seek(partition.offset)
            content = stream.read(partition.size)
        found = parse_signature_partition(content)
        if found.root_hash != root_hash:
            raise Malformed(f"its signature is of root hash {found.root_hash.hex()}, not its own")
        if found.certificate_fingerprint.hex() != verity.fingerprint:
            raise Malformed(
                f"its signature partition names certificate {found.certificate_fingerprint.hex()}"
                f", not {verity.fingerprint} as its build info says"
            )
        return found.signature
    raise AssertionError("unreachable")  # refusing_malformed re-raises
