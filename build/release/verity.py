"""A release's dm-verity side: the certificate hosts check signed DDIs against (--verity-cert),
which the release publishes beside its key and the Butane config writes to /etc/verity.d, and
what each image's build info says of its verity (root hash, signature, certificate).

With --verity-cert every image must be a DDI signed by that certificate's key (its build info
says so here; verify's static checks, run again by release with the certificate, check the
signature itself as systemd will on the host): a certificate shipped beside images it does not
sign, or --require-signed-images over images a host would refuse, would leave a fleet without
alloy. The certificate is published and provisioned as
its DER re-encoded to PEM, never the file as given.

The certificate is read, once, by build/keys/veritycert.py (its docstring says what is refused)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build.core.errors import BuildError
from build.keys.veritycert import Certificate
from build.read.gpt import read_gpt

# What a DDI's build info records of its verity (build/formats/ddipack.py fields() and pack()):
# the root hash, whether it is signed, the signing certificate's fingerprint, the data
# partition's file system.
ROOT_HASH = "root_hash"
SIGNED = "verity_signed"
FINGERPRINT = "verity_certificate_fingerprint"
FILESYSTEM = "ddi_filesystem"


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
