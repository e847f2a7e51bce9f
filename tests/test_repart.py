"""The systemd-repart path of a DDI (build/formats/repart.py, the chooser in build/formats/ddi.py)
with a stand-in systemd-repart first on PATH: which path builds the DDI and the one line that
says so, the invocation and the definitions repart is given, and its failures in one line with
nothing written. tests/e2e/test_repart.py runs the real repart 257 and compares the bytes."""

from __future__ import annotations

import os
import shlex
import shutil
import uuid
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.formats import ddipack
from build.formats.ddi import assemble, assemble_in_python
from build.formats.recipe import Recipe
from build.formats.repart import WITHOUT_REPART_ENV, definitions, repart_version
from build.formats.table import FORMATS
from build.model.arch import ARCHES
from build.model.ddi import build_seed
from build.read.ddi import check_ddi
from tests.erofs_images import alloy_tree, mkfs
from tests.fakes import fake_tool
from tests.results import refused

pytestmark = pytest.mark.needs("mkfs.erofs")

SEED = uuid.UUID("0123456789abcdef0123456789abcdef")
SIGNATURE = b'{"rootHash":"00"}'.ljust(16 * 1024, b"\0")


def erofs_image(where: Path, binary_size: int = 64 << 10) -> Path:
    tree = alloy_tree(where / "tree", binary_size=binary_size)
    return mkfs(tree, where / "data.erofs", "--all-root", "-T0", f"-U{SEED}")


def fake_repart(
    where: Path, version: str = "257", ddi: Path | None = None, fail: str | None = None
) -> Path:
    """systemd-repart VERSION: it records its argv, environment, definitions and the signature
    it copies in `where`/record, then fails saying `fail`, or writes a copy of `ddi` as the
    image it was asked for. Returns the record directory."""
    record = where / "record"
    copy = f'cp {shlex.quote(str(ddi))} "$last"' if ddi else ': > "$last"'
    failing = f"printf '%s\\n' {shlex.quote(fail)} >&2; exit 1" if fail else ""
    fake_tool(
        where / "bin",
        "systemd-repart",
        f"""if [ "$1" = --version ]; then
    echo "systemd {version} ({version}.13-1~deb13u1)"; echo "+PAM +AUDIT"; exit 0
fi
record={shlex.quote(str(record))}
mkdir -p "$record"
printf '%s\\n' "$@" > "$record/argv"
env > "$record/env"
for arg; do
    case $arg in --definitions=*) defs=${{arg#--definitions=}};; esac
    last=$arg
done
cp -r "$defs" "$record/definitions"
sig=$(sed -n 's/^CopyBlocks=//p' "$defs/30-root-verity-sig.conf" 2>/dev/null)
[ -z "$sig" ] || cp "$sig" "$record/signature"
{failing}
{copy}
""",
    )
    return record


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory of the stand-in tools, first on PATH; no WITHOUT_REPART_ENV."""
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(WITHOUT_REPART_ENV, raising=False)
    return tmp_path


def said(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


# --- the definitions ---


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_signed_amd64_definitions_copy_our_image_and_our_signature(tmp_path: Path) -> None:
    files = definitions("amd64", tmp_path / "data.erofs", tmp_path / "signature")
    assert {name: settings(text) for name, text in files.items()} == {
        "10-root.conf": [
            "[Partition]",
            "Type=root-x86-64",
            f"CopyBlocks={tmp_path}/data.erofs",
            "Verity=data",
            "VerityMatchKey=root",
        ],
        "20-root-verity.conf": [
            "[Partition]",
            "Type=root-x86-64-verity",
            "Verity=hash",
            "VerityMatchKey=root",
            "Minimize=best",
            "VerityDataBlockSizeBytes=4096",
            "VerityHashBlockSizeBytes=4096",
        ],
        "30-root-verity-sig.conf": [
            "[Partition]",
            "Type=root-x86-64-verity-sig",
            f"CopyBlocks={tmp_path}/signature",
            "SizeMinBytes=16384",
            "SizeMaxBytes=16384",
        ],
    }
    assert "CopyBlocks= makes both unnecessary" in files["10-root.conf"]  # the why, kept


def test_unsigned_arm64_definitions_have_no_signature_partition(tmp_path: Path) -> None:
    files = definitions("arm64", tmp_path / "data.erofs", None)
    assert sorted(files) == ["10-root.conf", "20-root-verity.conf"]
    assert "Type=root-arm64\n" in files["10-root.conf"]
    assert "Type=root-arm64-verity\n" in files["20-root-verity.conf"]


def test_a_percent_in_a_path_is_escaped_and_a_line_break_refused(tmp_path: Path) -> None:
    files = definitions("amd64", tmp_path / "100%" / "data.erofs", None)
    assert f"CopyBlocks={tmp_path}/100%%/data.erofs\n" in files["10-root.conf"]
    with pytest.raises(BuildError) as caught:
        definitions("amd64", tmp_path / "a\nVerity=off" / "data.erofs", None)
    assert "\n" not in str(caught.value)
    assert "its path has a line break" in str(caught.value)


def test_a_relative_image_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    files = definitions("amd64", Path("data.erofs"), None)
    assert f"CopyBlocks={tmp_path}/data.erofs\n" in files["10-root.conf"]


# --- which path builds the DDI ---


@pytest.mark.parametrize(
    ("said_version", "version"),
    [("257", 257), ("255", 255), ("252", 252)],
)
def test_the_version_on_path(on_path: Path, said_version: str, version: int) -> None:
    fake_repart(on_path, said_version)
    assert repart_version() == version


def test_no_repart_on_path_has_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert repart_version() is None


def test_repart_257_builds_the_ddi_with_the_invocation_of_the_issue(
    on_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_image = erofs_image(on_path)
    made = on_path / "python.raw"
    root_hash = assemble_in_python(data_image, made, "amd64", SEED, None)
    record = fake_repart(on_path, "257", ddi=made)
    target = on_path / "out" / "alloy.raw"
    said(capsys)
    assert assemble(data_image, target, "amd64", SEED, None) == root_hash
    assert said(capsys) == ["pack     alloy.raw: DDI built with systemd-repart 257"]
    assert target.read_bytes() == made.read_bytes()
    argv = (record / "argv").read_text().splitlines()
    assert argv[:4] == ["--offline=yes", "--empty=create", "--size=auto", f"--seed={SEED}"]
    assert argv[4].startswith("--definitions=") and argv[5:7] == ["--dry-run=no", "--pretty=no"]
    assert len(argv) == 8
    assert Path(argv[-1]).parent.parent == target.parent  # written beside it, then renamed
    assert sorted(p.name for p in (record / "definitions").iterdir()) == [
        "10-root.conf",
        "20-root-verity.conf",
    ]
    env = dict(line.split("=", 1) for line in (record / "env").read_text().splitlines())
    assert env["SYSTEMD_LOG_LEVEL"] == "warning" and "SYSTEMD_REPART_MKFS_OPTIONS_EROFS" not in env
    assert sorted(p.name for p in target.parent.iterdir()) == ["alloy.raw"]  # no scratch left


def test_a_signed_ddi_copies_in_what_the_signer_made_of_our_root_hash(on_path: Path) -> None:
    data_image = erofs_image(on_path)
    made = on_path / "python.raw"
    root_hash = assemble_in_python(data_image, made, "arm64", SEED, lambda _: SIGNATURE)
    record = fake_repart(on_path, "257", ddi=made)
    asked: list[bytes] = []

    def sign(root: bytes) -> bytes:
        asked.append(root)
        return SIGNATURE

    target = on_path / "alloy.raw"
    assert assemble(data_image, target, "arm64", SEED, sign) == root_hash
    assert asked == [root_hash]
    assert (record / "signature").read_bytes() == SIGNATURE
    assert check_ddi(target, "arm64", signed=True, root_hash=root_hash).root_hash == root_hash


@pytest.mark.parametrize(
    ("version", "environment", "reason"),
    [
        (None, {}, "no systemd-repart on PATH"),
        ("x", {}, "the systemd-repart on PATH does not say which version it is"),
        ("252", {}, "systemd-repart 252 is older than 255"),
        ("257", {WITHOUT_REPART_ENV: "1"}, f"{WITHOUT_REPART_ENV} is set"),
    ],
    ids=["absent", "unsaid", "repart-252", "forced"],
)
def test_otherwise_the_ddi_is_assembled_in_python_and_says_why(
    on_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    version: str | None,
    environment: dict[str, str],
    reason: str,
) -> None:
    data_image = erofs_image(on_path)
    record = on_path / "record"
    if version is None:
        monkeypatch.setenv("PATH", os.pathsep.join(_without_repart()))
    else:
        record = fake_repart(on_path, version)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    said(capsys)
    root_hash = assemble(data_image, on_path / "alloy.raw", "amd64", SEED, None)
    lines = said(capsys)
    assert len(lines) == 1 and lines[0].startswith("pack     alloy.raw: DDI assembled in Python: ")
    assert reason in lines[0]
    assert check_ddi(on_path / "alloy.raw", "amd64", signed=False).root_hash == root_hash
    assert not record.exists()  # repart was asked its version at most


def _without_repart() -> list[str]:
    """PATH's directories that hold no systemd-repart."""
    return [
        part
        for part in os.environ["PATH"].split(os.pathsep)
        if part and not (Path(part) / "systemd-repart").exists()
    ]


# --- refusals: one line, nothing written ---


def test_a_failing_repart_is_one_line_ending_in_what_it_said_last(on_path: Path) -> None:
    data_image = erofs_image(on_path)
    fake_repart(
        on_path,
        fail="Sized '/tmp/x.raw' to 1.3M.\nFailed to copy in '/tmp/data.erofs': No space left",
    )
    target = on_path / "out" / "alloy.raw"
    message = refused(
        lambda: assemble(data_image, target, "amd64", SEED, None),
        "cannot build the DDI alloy.raw with systemd-repart: systemd-repart says: ",
        "Failed to copy in '/tmp/data.erofs': No space left",
        f"set {WITHOUT_REPART_ENV}=1",
    )
    assert message.index("No space left") > message.index("Sized")  # its last line, last
    assert list(target.parent.iterdir()) == []


def test_a_repart_tree_other_than_the_signed_one_writes_nothing(on_path: Path) -> None:
    data_image = erofs_image(on_path)
    other = erofs_image(on_path / "other", binary_size=96 << 10)
    made = on_path / "other.raw"
    assemble_in_python(other, made, "amd64", SEED, lambda _: SIGNATURE)
    fake_repart(on_path, "257", ddi=made)
    target = on_path / "out" / "alloy.raw"
    refused(
        lambda: assemble(data_image, target, "amd64", SEED, lambda _: SIGNATURE),
        "systemd-repart built alloy.raw with the root hash ",
        "but its signature is for ",
        "nothing was written",
    )
    assert list(target.parent.iterdir()) == []


def test_the_build_info_records_what_wrote_the_ddi_but_a_change_of_it_repacks_nothing(
    on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_image = erofs_image(on_path)
    made = on_path / "python.raw"
    assemble_in_python(data_image, made, "amd64", build_seed("alloy", "1.10.2", "amd64"), None)
    recipe = Recipe("alloy", "1.10.2", ARCHES["amd64"], "lz4hc", "erofs", None)

    def inner(_: Recipe, __: Path, image: Path) -> None:
        shutil.copyfile(data_image, image)

    target = on_path / "alloy.raw"
    fake_repart(on_path, "257", ddi=made)
    by_repart = ddipack.pack(inner, recipe, on_path, target)
    monkeypatch.setenv(WITHOUT_REPART_ENV, "1")
    by_python = ddipack.pack(inner, recipe, on_path, target)
    assert by_repart["ddi_assembler"] == "systemd-repart 257"
    assert by_python["ddi_assembler"] == "python"
    assert by_repart["root_hash"] == by_python["root_hash"]
    assert "ddi_assembler" not in FORMATS["ddi"].args(recipe)  # what triggers a repack
