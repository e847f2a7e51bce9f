"""The issue's byte-for-byte proof: the DDI build/formats/ddi.py assembles in Python (all this
machine's systemd-repart 252 allows) is the DDI systemd-repart 257 builds from the same data
image, signed (RSA) and unsigned, for amd64 and arm64, on a disk of 4 MiB or less (where repart
grows the partitions) and a larger one, EROFS and squashfs. repart 257 is the cached Debian 13
root's (tests/e2e/make-root.sh --suite=trixie), run in a private mount namespace by
tests/e2e/repart-in-root.sh behind a `systemd-repart` first on PATH, so the build's own repart
path (build/formats/repart.py: its definitions and invocation) is what runs. Also: repart's own
signing (Verity=signature with --private-key/--certificate) writes our signature partition."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.formats.ddi import assemble, assemble_in_python
from build.formats.gpt import SMALL_DISK
from build.formats.repart import WITHOUT_REPART_ENV, build_with_repart, definitions
from build.formats.veritysig import signature_partition
from build.keys.veritycert import load_certificate
from build.keys.veritysign import check_signature, sign_root_hash
from build.model.ddi import build_seed
from build.read.ddi import check_ddi
from build.read.gpt import read_gpt
from tests.e2e.conftest import HERE
from tests.erofs_images import alloy_tree, mkfs
from tests.fakes import fake_tool

pytestmark = [
    pytest.mark.root,
    pytest.mark.needs(
        "unshare", "mkfs.erofs", "mksquashfs", "openssl", root="mounting the Debian 13 root"
    ),
    pytest.mark.skipif(
        platform.machine() != "x86_64", reason="the Debian 13 root's systemd-repart is x86-64"
    ),
]

REPART_IN_ROOT = HERE / "repart-in-root.sh"
TINY = 300 << 10  # the stand-in binary: a disk of 4 MiB or less
LARGER = 5 << 20  # more than 4 MiB

Signer = Callable[[bytes], bytes]


@pytest.fixture
def repart_257(trixie_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`systemd-repart` first on PATH: the Debian 13 root's, seeing `tmp_path` (where every
    file of the test is) at the same path. Returns the directory to work in."""
    if not (trixie_root / "usr/bin/systemd-repart").exists():
        pytest.fail(
            f"{trixie_root} has no systemd-repart: rebuild it (tests/e2e/make-root.sh "
            "--suite=trixie into a new directory, or nox -s e2e)",
            pytrace=False,
        )
    fake_tool(
        tmp_path / "bin",
        "systemd-repart",
        f'exec "{REPART_IN_ROOT}" "{trixie_root}" "{tmp_path}" "$@"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(WITHOUT_REPART_ENV, raising=False)
    said = subprocess.run(
        ["systemd-repart", "--version"], capture_output=True, text=True, timeout=60
    )
    assert said.stdout.startswith("systemd 257 "), said.stdout + said.stderr
    return tmp_path / "work"


@pytest.fixture(scope="module")
def rsa_signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Signer]:
    """An RSA key (deterministic PKCS#1 v1.5 signatures), its certificate, and the signer the
    build gives assemble: root hash -> the signature partition's JSON."""
    where = tmp_path_factory.mktemp("veritykey")
    key, cert = where / "verity.key", where / "verity.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert),
         "-days", "3650", "-subj", "/CN=alloy-sysext repart proof", "-nodes"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    der = load_certificate(cert).der

    def sign(root_hash: bytes) -> bytes:
        return signature_partition(
            root_hash, sign_root_hash(root_hash, key, load_certificate(cert)), der
        )

    return key, cert, sign


def data_image(where: Path, binary_size: int, filesystem: str) -> Path:
    tree = alloy_tree(where / "tree", binary_size=binary_size)
    if filesystem == "erofs":
        return mkfs(tree, where / "data.erofs", "--all-root", "-T0", f"-U{uuid.UUID(int=7)}")
    image = where / "data.squashfs"
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-all-root", "-noappend", "-quiet", "-no-progress",
         "-noI", "-noD", "-noF"],  # uncompressed: the image stays as large as the tree
        check=True, capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": "0"}, timeout=120,
    )  # fmt: skip
    return image


def first_difference(ours: Path, theirs: Path, signed: bool) -> str:
    """Where two DDIs differ, for the failure message: the byte and the partition holding it."""
    a, b = ours.read_bytes(), theirs.read_bytes()
    if len(a) != len(b):
        return f"sizes differ: {len(a)} (Python) and {len(b)} (repart)"
    at = next(index for index in range(len(a)) if a[index] != b[index])
    for part in read_gpt(theirs, 3 if signed else 2).partitions:
        if part.offset <= at < part.offset + part.size:
            return f"byte {at}: {part.name} byte {at - part.offset}"
    return f"byte {at}: the GPT (tables, headers)"


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize(
    ("binary_size", "filesystem"),
    [(TINY, "erofs"), (LARGER, "erofs"), (LARGER, "squashfs")],
    ids=["tiny-erofs", "larger-erofs", "larger-squashfs"],
)
def test_repart_257_and_python_write_the_same_bytes(
    repart_257: Path,
    rsa_signer: tuple[Path, Path, Signer],
    capsys: pytest.CaptureFixture[str],
    arch: str,
    signed: bool,
    binary_size: int,
    filesystem: str,
) -> None:
    _, cert, sign = rsa_signer
    image = data_image(repart_257 / "data", binary_size, filesystem)
    seed = build_seed("alloy", "1.10.2", arch)
    signer = sign if signed else None
    python, repart = repart_257 / "python" / "alloy.raw", repart_257 / "repart" / "alloy.raw"
    python_hash = assemble_in_python(image, python, arch, seed, signer)
    capsys.readouterr()
    repart_hash = assemble(image, repart, arch, seed, signer)
    said = capsys.readouterr().out.strip()
    assert said == "pack     alloy.raw: DDI built with systemd-repart 257"
    assert repart_hash == python_hash
    assert python.read_bytes() == repart.read_bytes(), first_difference(python, repart, signed)
    assert python.stat().st_mode == repart.stat().st_mode
    disk = repart.stat().st_size
    assert disk <= SMALL_DISK if binary_size == TINY else disk > SMALL_DISK
    checked = check_ddi(repart, arch, signed, repart_hash if signed else None)
    if checked.signature is not None:
        raw = repart.read_bytes()
        assert raw[checked.signature.offset :].startswith(sign(repart_hash))
        check_signature(
            repart_hash,
            sign_root_hash(repart_hash, rsa_signer[0], load_certificate(cert)),
            load_certificate(cert),
        )


@pytest.mark.parametrize("binary_size", [TINY, LARGER], ids=["tiny", "larger"])
def test_repart_signing_itself_writes_our_signature_partition(
    repart_257: Path, rsa_signer: tuple[Path, Path, Signer], binary_size: int
) -> None:
    key, cert, sign = rsa_signer
    image = data_image(repart_257 / "data", binary_size, "erofs")
    seed = build_seed("alloy", "1.10.2", "amd64")
    ours = repart_257 / "ours.raw"
    assemble_in_python(image, ours, "amd64", seed, sign)
    defs = repart_257 / "definitions"
    defs.mkdir()
    for name, text in definitions("amd64", image, None).items():
        (defs / name).write_text(text)
    (defs / "30-root-verity-sig.conf").write_text(
        "[Partition]\nType=root-x86-64-verity-sig\nVerity=signature\nVerityMatchKey=root\n"
    )
    theirs = repart_257 / "theirs.raw"
    key, cert = Path(shutil.copy(key, repart_257)), Path(shutil.copy(cert, repart_257))  # in view
    built = subprocess.run(
        ["systemd-repart", "--offline=yes", "--empty=create", "--size=auto", f"--seed={seed}",
         f"--definitions={defs}", "--dry-run=no", "--pretty=no", f"--private-key={key}",
         f"--certificate={cert}", str(theirs)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert ours.read_bytes() == theirs.read_bytes(), first_difference(ours, theirs, True)


def test_what_repart_257_says_last_when_it_fails_is_the_one_line(repart_257: Path) -> None:
    odd = repart_257 / "odd.img"  # assemble refuses it first; repart itself refuses it too
    repart_257.mkdir()
    odd.write_bytes(bytes(100))
    with pytest.raises(BuildError) as caught:
        build_with_repart(odd, repart_257 / "x.raw", "amd64", uuid.UUID(int=1), None)
    assert str(caught.value) == (
        "cannot build the DDI x.raw with systemd-repart: systemd-repart says: File to copy bytes "
        f"from '{odd}' has size that is not multiple of 512, refusing.; set {WITHOUT_REPART_ENV}=1 "
        "to assemble the DDI in Python instead (same bytes)"
    )
    assert sorted(path.name for path in repart_257.iterdir()) == ["odd.img", "x.raw.repart.d"]
