"""verify of a DDI (a wrapping format): its own checks first, each one line, then its data
partition copied into a private scratch file, which every other check reads as an image of its
own format (superblock, entries, owners, extension-release, architecture, kernel view, merges).

- verity: the GPT (both headers, CRCs, no overlapping or extra partitions), the partition types,
  labels and flags of its architecture, the data and hash partition UUIDs against the root hash,
  the verity superblock and the whole hash tree recomputed from the data partition
  (build/read/ddi.py check_ddi()).
- signature: the signature partition's JSON (build/read/veritysig.py), its rootHash the tree's,
  its certificate fingerprint the given certificate's, and the PKCS#7 signature checked as
  systemd checks it against that certificate (build/keys/veritysign.py check_signature()).

A signed DDI is never taken without a certificate to check it against: refused in one line.
The data partition is copied only once both passed: the other checks read bytes whose every
block the signed root hash vouches for.
"""

from __future__ import annotations

import io
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from build.core.errors import BuildError
from build.core.safeio import copy_at_most, refusing_malformed
from build.formats.table import FORMATS, image_format
from build.keys.veritycert import Certificate, load_certificate
from build.keys.veritysign import check_signature
from build.model.check import Check
from build.read.ddi import CheckedDdi, check_ddi
from build.read.gpt import read_gpt
from build.read.veritycheck import Region
from build.read.veritysig import PARTITION_BYTES, VeritySignature, parse_signature_partition


@dataclass(frozen=True)
class VerityExpectations:
    """What a DDI must be: signed by `certificate` (PEM) where given; `signed` True: signed,
    False: unsigned (built with --no-verity-signature), None: as it is, but a signed one needs
    `certificate`. `arch`: the architecture its partition types must name (None: either)."""

    certificate: Path | None = None
    signed: bool | None = None
    arch: str | None = None
    expect_format: str | None = None  # --expect-format


def is_wrapped(path: Path) -> bool:
    """Whether `path` is of a wrapping format (a DDI), by its magic."""
    return bool(FORMATS[image_format(path)].inner)


class _Range(io.RawIOBase):
    """`size` bytes of `stream` from `offset`: a partition, for copy_at_most."""

    def __init__(self, stream: io.BufferedReader, offset: int, size: int) -> None:
        super().__init__()
        self._stream, self._left = stream, size
        stream.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")[: self._left]
        got = self._stream.readinto(view)
        self._left -= got
        return got


def _copy_partition(path: Path, region: Region, target: Path) -> None:
    with path.open("rb") as stream, target.open("xb") as out:
        source = io.BufferedReader(_Range(stream, region.offset, region.size), 1 << 20)
        copied = copy_at_most(source, out, region.size)
    if copied != region.size:
        raise BuildError(
            f"cannot copy the data partition of {path}: {copied} of {region.size} bytes read",
            "the image changed while it was checked: check it again",
        )


def _signed_fingerprint(path: Path) -> str:
    """The certificate fingerprint a signed DDI's signature partition names, for the refusal
    that asks for its certificate ("unreadable" where it holds none)."""
    try:
        part = read_gpt(path, 3).partitions[2]
        return _read_signature(path, Region(part.offset, part.size)).certificate_fingerprint.hex()
    except BuildError:
        return "unreadable"


def _partition_count(path: Path) -> int | None:
    try:
        return len(read_gpt(path, (2, 3)).partitions)
    except BuildError:
        return None  # check_ddi says what is wrong


def plain_with_certificate(path: Path, expect: VerityExpectations) -> Check | None:
    """The failure of an image of a plain format (no signature) checked against a certificate,
    which asks for one signed by it; None where no certificate was given."""
    if expect.certificate is None:
        return None
    fmt = image_format(path)
    # A file no format's magic claims falls to squashfs: its reader says what is wrong with it
    # (as verify without --verity-cert does) before this calls it a squashfs image.
    FORMATS[fmt].read(path)
    return Check(
        "signature",
        "FAIL",
        f"a {fmt} image, not a signed DDI, but --verity-cert "
        f"{expect.certificate} was given: hosts that require signed images refuse it",
    )


def refuse_signed_without_certificate(path: Path, expect: VerityExpectations) -> None:
    if expect.certificate is None and _partition_count(path) == 3:
        raise BuildError(
            f"{path} is a signed DDI (certificate fingerprint {_signed_fingerprint(path)}) and "
            "no --verity-cert was given to check its signature against; nothing was checked",
            "give --verity-cert=CRT (PEM), the certificate it was signed with (or set "
            "verity_cert in invoke.yaml)",
        )


def _verity(path: Path, expect: VerityExpectations) -> tuple[Check, CheckedDdi | None]:
    fmt = FORMATS[image_format(path)]
    if expect.expect_format not in (None, fmt.name):
        why = f"a {fmt.name}, not {expect.expect_format} (--expect-format)"
        return Check("verity", "FAIL", why), None
    try:
        checked = check_ddi(path, expect.arch, None)
    except BuildError as error:  # the failure line names the image once
        return Check("verity", "FAIL", error.message.replace(f"{path} is", "the image is")), None
    blocks = checked.superblock.data_blocks
    return (
        Check(
            "verity",
            "ok",
            f"{fmt.name} for {checked.arch}: GPT, partition types, labels and flags, the hash "
            f"tree of {blocks} data blocks recomputed, root hash {checked.root_hash.hex()}",
        ),
        checked,
    )


def _read_signature(path: Path, region: Region) -> VeritySignature:
    """The signature partition's JSON, read within its 16 KiB; one BuildError naming `path`."""
    maker = "alloy-sysext or systemd-repart"
    with refusing_malformed(path, "sysext DDI", maker), path.open("rb") as stream:
        stream.seek(region.offset)
        return parse_signature_partition(stream.read(min(region.size, PARTITION_BYTES + 1)))
    raise AssertionError("unreachable")  # refusing_malformed re-raises


def _signature_problem(path: Path, checked: CheckedDdi, certificate: Certificate) -> str | None:
    """What is wrong with a signed DDI's signature against `certificate`, or None."""
    region = checked.signature
    if region is None:
        return None
    signed = _read_signature(path, region)
    if signed.root_hash != checked.root_hash:
        return (
            f"its signature JSON's rootHash {signed.root_hash.hex()} is not the hash tree's root "
            f"hash {checked.root_hash.hex()}"
        )
    if signed.certificate_fingerprint.hex() != certificate.fingerprint:
        return (
            f"its signature names the certificate fingerprint "
            f"{signed.certificate_fingerprint.hex()}, not {certificate.path}'s "
            f"{certificate.fingerprint} (--verity-cert)"
        )
    check_signature(checked.root_hash, signed.signature, certificate)
    return None


def _signature(path: Path, checked: CheckedDdi, expect: VerityExpectations) -> Check:
    certificate = expect.certificate
    if checked.signature is None:
        if certificate is not None or expect.signed:
            given = f"--verity-cert {certificate}" if certificate else "a signature"
            return Check(
                "signature",
                "FAIL",
                f"an unsigned verity DDI (no signature partition), but {given} was asked for: "
                "hosts that require signed images refuse it",
            )
        return Check(
            "signature",
            "ok",
            "none: an unsigned verity DDI (--no-verity-signature; hosts that require signed "
            "images refuse it)",
        )
    if expect.signed is False:
        return Check("signature", "FAIL", "signed, but built with --no-verity-signature")
    if certificate is None:  # refuse_signed_without_certificate() came first
        raise AssertionError("a signed DDI checked without a certificate")
    try:
        loaded = load_certificate(certificate)
        problem = _signature_problem(path, checked, loaded)
    except BuildError as error:
        problem = error.message
    if problem is not None:
        return Check("signature", "FAIL", problem)
    return Check(
        "signature",
        "ok",
        f"the root hash is signed by {certificate} (--verity-cert, fingerprint "
        f"{loaded.fingerprint}), as systemd checks it",
    )


@dataclass(frozen=True)
class Unwrapped:
    data: Path  # the data partition, copied
    arch: str  # the architecture its partition types name (amd64, arm64)


def unwrapped(
    path: Path, expect: VerityExpectations, scratch: Path
) -> Generator[Check, None, Unwrapped | None]:
    """Yields the DDI's own checks; returns its data partition copied into `scratch` under
    `path`'s name (for the other checks, and merges under that name) with the architecture of
    its partition types, or None where a check failed (nothing in it is to be read then)."""
    refuse_signed_without_certificate(path, expect)
    verity, checked = _verity(path, expect)
    yield verity
    if checked is None:
        return None
    signature = _signature(path, checked, expect)
    yield signature
    if signature.status == "FAIL":
        return None
    data = scratch / path.name
    _copy_partition(path, checked.data, data)
    if is_wrapped(data):
        raise BuildError(
            f"the data partition of {path} is a DDI itself, not an EROFS or squashfs image",
            "a sysext DDI wraps one file system image: do not install it",
        )
    return Unwrapped(data, checked.arch)
