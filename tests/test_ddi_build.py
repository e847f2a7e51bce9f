"""invoke all --format=ddi: a signed (or, asked, unsigned) dm-verity DDI of the EROFS or squashfs
image, verified as built; every wrong option, key, certificate or passphrase refused in one line
before anything is written; reproducible; the size the issue allows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from build.formats.table import image_format
from build.read.ddi import check_ddi
from tests.conftest import VERSION, Invoke
from tests.results import error_line, ok

pytestmark = pytest.mark.needs("mkfs.erofs", "mksquashfs", "openssl")
IMAGE = f"alloy-{VERSION}-amd64.raw"
PASSPHRASE = "correct horse battery staple"


def make_key(where: Path, name: str, passphrase: str | None = None) -> tuple[Path, Path]:
    key, cert = where / f"{name}.key", where / f"{name}.crt"
    protect = ["-passout", f"pass:{passphrase}"] if passphrase else ["-nodes"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert),
         "-days", "3650", "-subj", f"/CN={name}", *protect],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    where = tmp_path_factory.mktemp("veritykeys")
    return {
        "ours": make_key(where, "ours"),
        "other": make_key(where, "other"),
        "locked": make_key(where, "locked", PASSPHRASE),
    }


def signed_by(pair: tuple[Path, Path]) -> tuple[str, str]:
    return f"--verity-key={pair[0]}", f"--verity-cert={pair[1]}"


def buildinfo(tmp_path: Path, directory: str = "output") -> dict:
    return json.loads((tmp_path / directory / f"{IMAGE}.buildinfo.json").read_text())


def test_a_signed_erofs_ddi_is_built_verified_and_recorded(
    invoke: Invoke, tmp_path: Path, keys: dict
) -> None:
    out = ok(invoke("all", "--format=ddi", *signed_by(keys["ours"]))).stdout
    print(out)
    image = tmp_path / "output" / IMAGE
    assert image_format(image) == "ddi"
    info = buildinfo(tmp_path)
    print(json.dumps(info, indent=1))
    checked = check_ddi(image, "amd64", signed=True)
    assert info["root_hash"] == checked.root_hash.hex()
