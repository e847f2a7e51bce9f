"""invoke verify --image X.raw --verity-cert C on a DDI: its verity and signature lines first,
then every check of its data partition as an image of its own format; each kind of tampering,
and a signed DDI without a certificate to check it against, refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from build.formats import ddipack
from build.formats.ddi import assemble_in_python
from build.formats.recipe import Recipe, Signing
from build.formats.table import FORMATS
from build.formats.veritysig import signature_partition
from build.image.signer import signer
from build.keys.veritycert import load_certificate
from build.keys.veritysign import sign_root_hash
from build.model.arch import ARCHES
from build.model.ddi import build_seed
from build.read.ddi import check_ddi
from build.read.gpt import read_gpt
from build.verify import unwrap
from tests.conftest import VERSION, Invoke
from tests.erofs_images import mkfs
from tests.results import error_line, ok, refused
from tests.trees import alloy_tree
from tests.veritykeys import make_key

pytestmark = pytest.mark.needs("mkfs.erofs", "mksquashfs", "openssl")
NAME = f"alloy-{VERSION}-amd64.raw"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    where = tmp_path_factory.mktemp("veritykeys")
    return {name: make_key(where, name) for name in ("ours", "other")}


def recipe(signing: Signing | None, filesystem: str = "erofs") -> Recipe:
    compression = FORMATS[filesystem].default_compression
    return Recipe("alloy", VERSION, ARCHES["amd64"], compression, filesystem, signing)


def build_ddi(
    where: Path,
    signing: Signing | None,
    filesystem: str = "erofs",
    inner: Callable[[Recipe, Path, Path], object] | None = None,
) -> Path:
    tree = alloy_tree(where / "tree")
    image = where / NAME
    if inner is None:
        FORMATS["ddi"].pack(recipe(signing, filesystem), tree, image)
    else:
        ddipack.pack(inner, recipe(signing, filesystem), tree, image)
    return image


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, keys: dict) -> Path:
    return build_ddi(tmp_path_factory.mktemp("signed"), signer(*keys["ours"]))


def copied(image: Path, where: Path) -> Path:
    where.mkdir(exist_ok=True)
    return Path(shutil.copyfile(image, where / image.name))


def verify(invoke: Invoke, image: Path, cert: Path | None) -> subprocess.CompletedProcess:
    flags = [f"--verity-cert={cert}"] if cert else []
    return invoke("verify", f"--image={image}", *flags)


def rewrite_signature(image: Path, payload: bytes) -> None:
    part = read_gpt(image, 3).partitions[2]
    with image.open("r+b") as file:
        file.seek(part.offset)
        file.write(payload)


def test_a_signed_ddi_passes_with_its_lines_first(
    invoke: Invoke, signed: Path, keys: dict, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    out = ok(verify(invoke, image, keys["ours"][1])).stdout
    lines = [line.split()[1:3] for line in out.splitlines() if line.startswith("verify   ")]
    names = [name.rstrip(":") for status, name in lines if status in ("ok", "FAIL", "skip")]
    assert names[:2] == ["verity", "signature"]
    assert {"superblock", "entries", "extension-release", "architecture"} <= set(names)
    assert "FAIL" not in out and "checks passed" in out
    if os.geteuid() == 0:
        assert "ok   kernel view" in out and f"ok   merge: as {NAME}" in out
    assert "EROFS, lz4 compression" in out  # the data partition's superblock, as its own


def test_a_squashfs_ddi_unsigned_passes_without_a_certificate(
    invoke: Invoke, tmp_path: Path
) -> None:
    image = build_ddi(tmp_path, None, "squashfs")
    out = ok(verify(invoke, image, None)).stdout
    assert "ok   signature: none: an unsigned verity DDI" in out
    assert "squashfs, xz compression" in out


def test_a_signed_ddi_without_a_certificate_is_refused_naming_the_flag(
    invoke: Invoke, signed: Path, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    line = error_line(verify(invoke, image, None), "is a signed DDI", "--verity-cert")
    assert "nothing was checked" in line


def test_an_unsigned_ddi_fails_when_a_certificate_is_given(
    invoke: Invoke, keys: dict, tmp_path: Path
) -> None:
    image = build_ddi(tmp_path, None)
    error_line(
        verify(invoke, image, keys["ours"][1]),
        "failed verification: signature: an unsigned verity DDI",
        "--verity-cert",
    )


def test_a_flipped_data_byte_fails(
    invoke: Invoke, signed: Path, keys: dict, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    data = check_ddi(image, "amd64", True).data
    with image.open("r+b") as file:
        file.seek(data.offset + 4096 * 3 + 100)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0x01]))
    error_line(
        verify(invoke, image, keys["ours"][1]),
        "failed verification: verity:",
        "block 3 of the data partition",
    )


def test_another_certificate_fails(
    invoke: Invoke, signed: Path, keys: dict, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    line = error_line(verify(invoke, image, keys["other"][1]), "failed verification: signature")
    assert str(keys["other"][1]) in line and "certificate fingerprint" in line


def test_a_signature_naming_another_certificate_fails(
    invoke: Invoke, signed: Path, keys: dict, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    root_hash = check_ddi(image, "amd64", True).root_hash
    ours, other = keys["ours"], keys["other"]
    # Signed by our key, but naming the other certificate.
    signature = sign_root_hash(root_hash, ours[0], load_certificate(ours[1]))
    rewrite_signature(
        image, signature_partition(root_hash, signature, load_certificate(other[1]).der)
    )
    line = error_line(verify(invoke, image, ours[1]), "failed verification: signature")
    assert "names the certificate fingerprint" in line
    # Signed by the other key, naming ours: the fingerprint matches, the signature does not.
    forged = sign_root_hash(root_hash, other[0], load_certificate(other[1]))
    rewrite_signature(image, signature_partition(root_hash, forged, load_certificate(ours[1]).der))
    error_line(verify(invoke, image, ours[1]), "signature:", "does not verify against")


def test_a_signature_of_another_root_hash_fails(
    invoke: Invoke, signed: Path, keys: dict, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    ours = keys["ours"]
    elsewhere = bytes(range(32))
    signature = sign_root_hash(elsewhere, ours[0], load_certificate(ours[1]))
    rewrite_signature(
        image, signature_partition(elsewhere, signature, load_certificate(ours[1]).der)
    )
    line = error_line(verify(invoke, image, ours[1]), "failed verification: signature")
    assert f"rootHash {elsewhere.hex()} is not the hash tree's root hash" in line


def test_a_truncated_ddi_fails(invoke: Invoke, signed: Path, keys: dict, tmp_path: Path) -> None:
    image = copied(signed, tmp_path / "in")
    with image.open("r+b") as file:
        file.truncate(image.stat().st_size - 4096)
    error_line(verify(invoke, image, keys["ours"][1]), "failed verification: verity:", "GPT")


def test_a_lying_verity_superblock_fails(
    invoke: Invoke, signed: Path, keys: dict, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    hashes = check_ddi(image, "amd64", True).hashes
    with image.open("r+b") as file:
        file.seek(hashes.offset + 72)  # data_blocks (u64) after signature, version, type, uuid,
        (blocks,) = struct.unpack("<Q", file.read(8))  # algorithm, block sizes
        file.seek(hashes.offset + 72)
        file.write(struct.pack("<Q", blocks + (1 << 20)))  # more than the partition holds
    error_line(
        verify(invoke, image, keys["ours"][1]),
        "failed verification: verity:",
        f"says {blocks + (1 << 20)} data blocks",
    )


@pytest.mark.needs(root="giving a file to another owner")
def test_a_non_root_owner_inside_the_data_partition_fails(
    invoke: Invoke, keys: dict, tmp_path: Path
) -> None:
    def without_all_root(recipe: Recipe, tree: Path, image: Path) -> None:
        os.chown(tree / "usr/local/bin/alloy", 1000, 1000)
        mkfs(tree, image, "-T0", "-zlz4hc")

    image = build_ddi(tmp_path, signer(*keys["ours"]), inner=without_all_root)
    error_line(
        verify(invoke, image, keys["ours"][1]),
        "failed verification:",
        "owned by 1000/1000, not root",
    )


def test_expect_format_pins_the_ddi_not_its_data_partition(
    invoke: Invoke, signed: Path, keys: dict, tmp_path: Path
) -> None:
    image = copied(signed, tmp_path / "in")
    cert = f"--verity-cert={keys['ours'][1]}"
    ok(invoke("verify", f"--image={image}", cert, "--expect-format=ddi"))
    error_line(
        invoke("verify", f"--image={image}", cert, "--expect-format=erofs"),
        "verity: a ddi, not erofs (--expect-format)",
    )


def test_the_signature_json_is_what_systemd_repart_writes(signed: Path, keys: dict) -> None:
    part = read_gpt(signed, 3).partitions[2]
    with signed.open("rb") as file:
        file.seek(part.offset)
        raw = file.read(part.size)
    text = raw.rstrip(b"\0")
    assert list(json.loads(text)) == ["rootHash", "certificateFingerprint", "signature"]


def test_partition_types_of_another_architecture_than_the_binary_fail(
    invoke: Invoke, tmp_path: Path
) -> None:
    """An x86-64 image in a DDI whose partition types say arm64: no host merges it (an arm64
    host's systemd-sysext refuses ARCHITECTURE=x86-64, an x86-64 host finds no root partition
    of its own), so verify --image, which pins no architecture, fails it too."""
    amd64 = build_ddi(tmp_path / "amd64", None)
    data = check_ddi(amd64, "amd64", False).data
    inner = tmp_path / "data.erofs"
    with amd64.open("rb") as file:
        file.seek(data.offset)
        inner.write_bytes(file.read(data.size))
    image = tmp_path / f"alloy-{VERSION}-arm64.raw"
    seed = build_seed("alloy", VERSION, "arm64")
    assemble_in_python(inner, image, "arm64", seed, None)
    assert check_ddi(image, None, False).arch == "arm64"
    line = error_line(verify(invoke, image, None), "failed verification: architecture:")
    assert "arm64" in line and "x86-64" in line


def wrapped_around(content: Path, where: Path) -> Path:
    """An unsigned DDI whose verity holds over `content`, whatever it is."""
    image = where / NAME
    assemble_in_python(content, image, "amd64", build_seed("alloy", VERSION, "amd64"), None)
    return image


def test_a_data_partition_that_is_no_file_system_names_the_ddi_not_a_scratch_copy(
    invoke: Invoke, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(bytes(range(256)) * 256)
    image = wrapped_around(garbage, tmp_path)
    line = error_line(verify(invoke, image, None), f"the data partition of {image}", "squashfs")
    assert "alloy-sysext-ddi-" not in line


def test_a_ddi_in_a_ddi_is_refused_naming_it(invoke: Invoke, tmp_path: Path) -> None:
    inner = build_ddi(tmp_path / "inner", None)
    image = wrapped_around(inner, tmp_path)
    line = error_line(verify(invoke, image, None), f"the data partition of {image} is a DDI itself")
    assert "alloy-sysext-ddi-" not in line


def test_a_data_partition_cut_short_after_its_check_is_not_copied_in_part(tmp_path: Path) -> None:
    """Between the tree check and the copy the image cannot change (verify reads a private
    copy), but a copy that comes short is refused, never handed on in part."""
    image = build_ddi(tmp_path, None)
    data = check_ddi(image, "amd64", False).data
    with image.open("r+b") as file:
        file.truncate(data.offset + data.size // 2)
    refused(
        lambda: unwrap._copy_partition(image, data, tmp_path / "copy"),
        f"cannot copy the data partition of {image}: {data.size // 2} of {data.size} bytes",
    )


def test_a_plain_image_fails_when_a_certificate_is_given(
    invoke: Invoke, keys: dict, tmp_path: Path
) -> None:
    """--verity-cert asks for an image signed by it: a plain squashfs or EROFS image has no
    signature, and a host that requires signed images refuses it. (A certificate configured
    for DDI builds leaves the as-built verify of another format alone.)"""
    cert = keys["ours"][1]
    ok(invoke("all", env={"INVOKE_VERITY_CERT": str(cert)}))
    image = tmp_path / "output" / NAME
    error_line(
        verify(invoke, image, cert),
        "failed verification: signature: a squashfs image, not a signed DDI, but --verity-cert",
    )


def test_a_file_that_is_no_image_is_not_called_one_when_a_certificate_is_given(
    invoke: Invoke, keys: dict, tmp_path: Path
) -> None:
    """A file no format's magic claims is read as squashfs, whose reader refuses it: verify
    says that, as it does without --verity-cert, not "a squashfs image, not a signed DDI"."""
    junk = tmp_path / "alloy-1.10.2-amd64.raw"
    junk.write_bytes(bytes(range(256)) * 32)
    line = error_line(
        verify(invoke, junk, keys["ours"][1]), f"{junk} is not a valid squashfs image"
    )
    assert "not a signed DDI" not in line
