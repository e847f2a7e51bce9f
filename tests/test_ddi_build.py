"""invoke all --format=ddi: a signed (or, asked, unsigned) dm-verity DDI of the EROFS or squashfs
image, verified as built; every wrong option, key, certificate or passphrase refused in one line
before anything is written; reproducible; the size the issue allows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from build.core.fileio import sweep_temps
from build.formats import gpt
from build.formats.recipe import Recipe
from build.formats.table import FORMATS, image_format
from build.formats.veritysig import certificate_fingerprint
from build.keys.veritycert import load_certificate
from build.keys.veritysign import VERITY_PASSPHRASE_ENV as PASSPHRASE_ENV
from build.model.arch import ARCHES
from build.read.ddi import check_ddi
from tests.conftest import VERSION, Invoke
from tests.results import error_line, ok
from tests.trees import alloy_tree
from tests.veritykeys import PASSPHRASE, key_set

pytestmark = pytest.mark.needs("mkfs.erofs", "mksquashfs", "openssl")
IMAGE = f"alloy-{VERSION}-amd64.raw"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return key_set(tmp_path_factory.mktemp("veritykeys"))


def signed_by(pair: tuple[Path, Path]) -> tuple[str, str]:
    return f"--verity-key={pair[0]}", f"--verity-cert={pair[1]}"


def buildinfo(tmp_path: Path, directory: str = "output") -> dict:
    return json.loads((tmp_path / directory / f"{IMAGE}.buildinfo.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_signed_erofs_ddi_is_built_verified_and_recorded(
    invoke: Invoke, tmp_path: Path, keys: dict
) -> None:
    ours = keys["ours"]
    out = ok(invoke("all", "--format=ddi", *signed_by(ours))).stdout
    image = tmp_path / "output" / IMAGE
    assert image_format(image) == "ddi"
    assert "ok   verity:" in out and "ok   signature:" in out and "FAIL" not in out
    info = buildinfo(tmp_path)
    checked = check_ddi(image, "amd64", signed=True)
    fingerprint = certificate_fingerprint(load_certificate(ours[1]).der).hex()
    assert info["format"] == "ddi" and info["ddi_filesystem"] == "erofs"
    assert info["compression"] == "lz4hc" and info["root_hash"] == checked.root_hash.hex()
    assert info["verity_signed"] is True
    assert info["verity_certificate_fingerprint"] == fingerprint
    assert info["openssl"] and info["mkfs.erofs"] and info["verify"]["result"] == "passed"
    assert str(ours[0]) not in json.dumps(info)  # the key's path is nobody's business
    # The names as for every format: the compat alias and the checksums.
    output = tmp_path / "output"
    assert (output / f"alloy-{VERSION}.raw").read_bytes() == image.read_bytes()
    assert (output / f"{IMAGE}.sha256").read_text().split()[0] == sha256(image)
    # Plain invoke verify, as built: the certificate is needed, and named when missing.
    line = error_line(invoke("verify"), "is a signed DDI", fingerprint, "--verity-cert")
    assert "nothing was checked" in line
    checked_again = ok(invoke("verify", f"--verity-cert={ours[1]}")).stdout
    assert "as built: --format=ddi --ddi-filesystem=erofs --compression=lz4hc" in checked_again
    assert "ok   signature:" in checked_again
    error_line(
        invoke("verify", f"--verity-cert={keys['other'][1]}"),
        "failed verification: signature",
    )
    # From anywhere, with the certificate.
    ok(invoke("verify", f"--image={image}", f"--verity-cert={ours[1]}"))


# none: every block stored, for hosts without EROFS sent the DDI with invoke release --transport.
@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_an_unsigned_squashfs_ddi_only_when_asked(
    invoke: Invoke, tmp_path: Path, compression: str
) -> None:
    flags = (
        *("--format=ddi", "--ddi-filesystem=squashfs"),
        *(f"--compression={compression}", "--arch=arm64"),
    )
    out = ok(invoke("all", *flags, "--no-verity-signature")).stdout
    assert "ok   signature: none: an unsigned verity DDI" in out
    image = tmp_path / "output" / f"alloy-{VERSION}-arm64.raw"
    info = json.loads(image.with_name(image.name + ".buildinfo.json").read_text())
    assert (info["ddi_filesystem"], info["compression"]) == ("squashfs", compression)
    assert info["verity_signed"] is False and info["verity_certificate_fingerprint"] is None
    assert info["openssl"] is None and info["mksquashfs"] and info["mkfs.erofs"] is None
    assert check_ddi(image, "arm64", signed=False).root_hash.hex() == info["root_hash"]
    # What wrote it, for the record (Debian 12's repart 252 cannot: python)
    assert info["ddi_assembler"] == "python" or info["ddi_assembler"].startswith("systemd-repart ")
    ok(invoke("verify", "--arch=arm64"))
    # A DDI's own fields of its build info, each refused as a build would never write it.
    path = image.with_name(image.name + ".buildinfo.json")
    written = path.read_text()
    for field, value, why in (
        ("root_hash", "AB" * 32, "not a sha256 root hash in lowercase hex"),
        ("verity_signed", "no", "not true or false"),
        ("verity_certificate_fingerprint", "ab" * 32, "set for an unsigned DDI"),
        ("ddi_assembler", "python\nrelease  wrote SHA256SUMS", "not python or systemd-repart"),
    ):
        path.write_text(json.dumps({**json.loads(written), field: value}))
        line = error_line(invoke("verify", "--arch=arm64"), f"{path.name} has a bad {field}: {why}")
        assert "nothing was written" in line


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (("--format=ddi",), ("--format=ddi needs --verity-key and --verity-cert",
                             "--no-verity-signature")),
        (("--format=ddi", "--verity-key=K"), ("--verity-key (from --verity-key) without "
                                              "--verity-cert",)),
        (("--format=ddi", "--verity-key=K", "--verity-cert=C", "--no-verity-signature"),
         ("--verity-key (from --verity-key) and --no-verity-signature",)),
        (("--format=erofs", "--verity-key=K", "--verity-cert=C"),
         ("--verity-key is for --format=ddi, not --format=erofs",)),
        (("--ddi-filesystem=squashfs",),
         ("--ddi-filesystem is for --format=ddi, not --format=squashfs",)),
        (("--format=ddi", "--ddi-filesystem=squashfs", "--compression=lz4hc",
          "--no-verity-signature"), ("compression 'lz4hc'", "--ddi-filesystem 'squashfs'")),
    ],
    ids=["neither", "key-without-cert", "key-and-no-signature", "key-other-format",
         "filesystem-other-format", "compression-of-the-other-filesystem"],
)  # fmt: skip
def test_contradicting_options_are_refused_before_anything_is_written(
    invoke: Invoke, tmp_path: Path, flags: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    error_line(invoke("all", *flags), *fragments)
    assert not (tmp_path / "output").exists() and not (tmp_path / "cache").exists()


def test_bad_keys_are_refused_before_anything_is_written(
    invoke: Invoke, tmp_path: Path, keys: dict
) -> None:
    ours, other, locked = keys["ours"], keys["other"], keys["locked"]
    huge = tmp_path / "huge.key"  # read whole before (/dev/zero: until memory ran out)
    huge.write_bytes(ours[0].read_bytes() * (2 * 1024 * 1024 // ours[0].stat().st_size + 1))
    cases = [
        ((tmp_path / "absent.key", ours[1]), {}, ("cannot read the verity key", "absent.key")),
        ((tmp_path, ours[1]), {}, ("cannot read the verity key",)),
        ((ours[1], ours[1]), {}, ("not a PEM private key",)),
        ((ours[0], tmp_path / "absent.crt"), {}, ("cannot read the verity certificate",)),
        ((ours[0], other[1]), {}, (f"{ours[0]} (--verity-key) is not the private key of the "
                                   f"certificate {other[1]}",)),
        (locked, {}, ("no passphrase in $ALLOY_VERITY_KEY_PASSPHRASE",)),
        (locked, {PASSPHRASE_ENV: "wrong"}, ("a wrong passphrase",)),
        ((huge, ours[1]), {}, (f"the verity key {huge} (--verity-key) is over 1 MiB",)),
    ]  # fmt: skip
    for pair, env, fragments in cases:
        error_line(invoke("all", "--format=ddi", *signed_by(pair), env=env), *fragments)
        assert not (tmp_path / "output").exists() and not (tmp_path / "cache").exists()


def test_the_passphrase_comes_from_the_environment_never_argv(
    invoke: Invoke, tmp_path: Path, keys: dict
) -> None:
    real = shutil.which("openssl")
    assert real
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "bin" / "openssl"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    env = {PASSPHRASE_ENV: PASSPHRASE, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    ok(invoke("all", "--format=ddi", *signed_by(keys["locked"]), env=env))
    logged = log.read_text()
    assert f"env:{PASSPHRASE_ENV}" in logged and "smime -sign" in logged
    assert PASSPHRASE not in logged and "pass:correct" not in logged


def test_two_directories_give_the_same_bytes_and_options_repack(
    invoke: Invoke, tmp_path: Path, keys: dict
) -> None:
    signed = ("--format=ddi", *signed_by(keys["ours"]))
    ok(invoke("all", *signed, "--output-dir=one"))
    ok(invoke("all", *signed, "--output-dir=two", umask=0o077))
    one, two = tmp_path / "one" / IMAGE, tmp_path / "two" / IMAGE
    assert one.read_bytes() == two.read_bytes()  # RSA: the signature too
    assert buildinfo(tmp_path, "one")["root_hash"] == buildinfo(tmp_path, "two")["root_hash"]
    assert (
        "pack     " + str(Path("one") / IMAGE) + ": up to date"
        in ok(invoke("all", *signed, "--output-dir=one")).stdout
    )
    # Another certificate, unsigned, another file system: each repacks, and says why.
    changes = [
        ("--format=ddi", *signed_by(keys["other"])),
        ("--format=ddi", "--no-verity-signature"),
        ("--format=ddi", "--no-verity-signature", "--ddi-filesystem=squashfs"),
    ]
    roots = {buildinfo(tmp_path, "one")["root_hash"]}
    for flags in changes:
        out = ok(invoke("all", *flags, "--output-dir=one")).stdout
        assert "packed" in out, out
        roots.add(buildinfo(tmp_path, "one")["root_hash"])
    # The signature is not in the tree: the same file system, signed or not, one root hash.
    assert len(roots) == 2


def test_the_ddi_adds_at_most_1_percent_and_1_1_mib_to_the_bare_image(
    invoke: Invoke, tmp_path: Path, keys: dict
) -> None:
    ok(invoke("all", "--format=erofs", "--output-dir=bare", "--no-verify"))
    ok(invoke("all", "--format=ddi", *signed_by(keys["ours"]), "--output-dir=ddi", "--no-verify"))
    bare = (tmp_path / "bare" / IMAGE).stat().st_size
    ddi = (tmp_path / "ddi" / IMAGE).stat().st_size
    print(f"bare EROFS {bare} bytes, signed DDI {ddi} bytes (+{ddi - bare})")
    assert ddi <= bare + bare // 100 + int(1.1 * (1 << 20))
    # The same EROFS image is the data partition, byte for byte.
    data = check_ddi(tmp_path / "ddi" / IMAGE, "amd64", signed=True).data
    with (tmp_path / "ddi" / IMAGE).open("rb") as file:
        file.seek(data.offset)
        assert file.read(bare) == (tmp_path / "bare" / IMAGE).read_bytes()


def test_no_verity_signature_on_the_command_line_leaves_a_configured_key_unused(
    invoke: Invoke, tmp_path: Path, keys: dict
) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text(f"verity_key: {keys['ours'][0]}\nverity_cert: {keys['ours'][1]}\n")
    ok(invoke("-f", str(config), "all", "--format=ddi", "--no-verity-signature", "--no-verify"))
    assert buildinfo(tmp_path)["verity_signed"] is False
    # A configured key is for DDI builds: another format ignores it.
    ok(invoke("-f", str(config), "all", "--format=erofs", "--no-verify"))


def test_what_a_killed_ddi_pack_leaves_is_swept_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pack step writes the DDI at a temporary beside the image (.NAME.xxxx.tmp); every
    scratch file and directory the DDI's packing makes beside it meanwhile (the inner image,
    the tree and signature, the GPT image being written) is named so that the runner's sweep of
    the image's temporaries (sweep_temps) removes what a SIGKILL left."""
    output = tmp_path / "output"
    output.mkdir()
    final = output / IMAGE
    target = output / f".{IMAGE}.k2j4.tmp"  # as Runner.output() names it
    seen: list[tuple[str, bool]] = []
    copy_payload = gpt._copy_payload

    def snapshot(*args: object) -> None:  # mid-write: what a SIGKILL now would leave
        seen.extend((path.name, path.is_dir()) for path in output.iterdir())
        copy_payload(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(gpt, "_copy_payload", snapshot)
    recipe = Recipe("alloy", VERSION, ARCHES["amd64"], "lz4hc", "erofs", None)
    FORMATS["ddi"].pack(recipe, alloy_tree(tmp_path / "tree"), target)
    target.unlink()
    left = sorted(set(seen))
    assert len(left) >= 2, left  # the inner image and the DDI's scratch at least
    for name, is_dir in left:
        (output / name).mkdir() if is_dir else (output / name).write_bytes(b"killed")
    sweep_temps(final)
    assert sorted(path.name for path in output.iterdir()) == []
