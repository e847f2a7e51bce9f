"""Key rotation: `invoke all --trust-keys=K2.pub` puts the keys hosts trust next in the image
(usr/lib/alloy-sysext/release-keys.d/next.gpg), and a host's alloy-import-pubring.service adds
them to sysupdate's keyring once that image is merged. So a host that trusts K1 takes a release
signed by K1 that carries K2, and then one signed only by K2. A hostile --trust-keys file
(secret keys, garbage, a FIFO, a symlink, too large) is refused before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.image.content import IMAGE_TRUST_KEYS
from build.verify.checks import Expectations
from build.verify.checks import verify as run_verify
from tests.conftest import VERSION, Invoke, Prebuilt, copy_output
from tests.gpgkeys import Keys, gpg
from tests.image import EXPECTED_LISTING, extract, listing
from tests.results import error_line, ok
from tests.test_publish import PUBLISH_URL
from tests.test_signing import HOST_KEY, UNIT, export, gpgv, ignition, unit_script
from tests.test_verify import fails_because, repack, verify

pytestmark = pytest.mark.needs("gpg", "gpgv", "unsquashfs")

NEXT_KEYS = IMAGE_TRUST_KEYS
ROTATION_ENTRIES = {
    "usr/lib/alloy-sysext": ("drwxr-xr-x", "0/0"),
    "usr/lib/alloy-sysext/release-keys.d": ("drwxr-xr-x", "0/0"),
    NEXT_KEYS: ("-rw-r--r--", "0/0"),
}
IMAGE = f"alloy-{VERSION}-amd64.raw"


def public_key(keys: Keys, fingerprint: str, where: Path, armored: bool = False) -> Path:
    if armored:
        where.write_bytes(gpg(keys.home, "--armor", "--export", fingerprint).stdout)
    else:
        where.write_bytes(export(keys.home, fingerprint))
    return where


def signing_env(keys: Keys) -> dict[str, str]:
    return {"INVOKE_GNUPG_HOME": str(keys.home)}


def build_with(invoke: Invoke, keyring: Path, *args: str) -> subprocess.CompletedProcess:
    return ok(invoke("all", f"--trust-keys={keyring}", *args))


def host_keyring(tmp_path: Path, unit: str, host_key: Path, merged: Path | None) -> Path:
    """Run the keyring unit's script on a stand-in root that trusts `host_key` (as provisioning
    left it) with the image tree `merged` (its /usr/lib/alloy-sysext) merged, or none; return
    the keyring sysupdate reads."""
    host = tmp_path / "host"
    shutil.rmtree(host, ignore_errors=True)
    for directory in ("usr/lib/systemd", "etc/systemd", "etc/alloy-sysext"):
        (host / directory).mkdir(parents=True)
    shutil.copy(host_key, host / HOST_KEY.lstrip("/"))
    if merged is not None:
        shutil.copytree(merged / "usr/lib/alloy-sysext", host / "usr/lib/alloy-sysext")
    script = unit_script(unit)
    script = script.replace("/usr/lib/", f"{host}/usr/lib/").replace("/etc/", f"{host}/etc/")
    result = subprocess.run(["sh", "-ec", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return host / "etc/systemd/import-pubring.gpg"


def test_a_host_trusting_k1_takes_k1_carrying_k2_then_k2_only(
    invoke: Invoke, keys: Keys, tmp_path: Path
) -> None:
    k1, k2 = keys.plain, keys.next
    output = tmp_path / "output"
    build_with(invoke, public_key(keys, k2, tmp_path / "K2.asc", armored=True))
    image = output / IMAGE
    assert listing(image) == {**EXPECTED_LISTING, **ROTATION_ENTRIES}
    info = json.loads((output / f"{IMAGE}.buildinfo.json").read_text())
    assert info["trust_keys"] == [k2]

    # Release 1: signed with K1, the image carries K2.
    env = signing_env(keys)
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", f"--sign-key={k1}", env=env))
    index = json.loads((output / "index.json").read_text())
    assert {image["file"]: image["trust_keys"] for image in index["images"]} == {
        IMAGE: [k2],
        f"alloy-{VERSION}.raw": [k2],
    }
    k1_public = tmp_path / "K1.gpg"
    shutil.copy(output / "alloy-release-key.gpg", k1_public)
    unit = {u["name"]: u for u in ignition(output)["systemd"]["units"]}[UNIT]["contents"]
    before = host_keyring(tmp_path, unit, k1_public, merged=None)
    assert gpgv(before, output / "SHA256SUMS.gpg", output / "SHA256SUMS").returncode == 0
    merged = extract(image, tmp_path / "merged")
    assert (merged / NEXT_KEYS).read_bytes() == export(keys.home, k2)

    # Release 2: the same images, SHA256SUMS signed only with K2.
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", f"--sign-key={k2}", env=env))
    signature, sums = output / "SHA256SUMS.gpg", output / "SHA256SUMS"
    refused = gpgv(before, signature, sums)
    assert refused.returncode != 0, "a host without the K2 image must not trust K2 yet"
    after = host_keyring(tmp_path, unit, k1_public, merged=merged)
    verdict = gpgv(after, signature, sums)
    assert verdict.returncode == 0, verdict.stderr
    assert gpgv(after.with_suffix(".pgp"), signature, sums).returncode == 0


def test_trust_keys_from_invoke_yaml_or_the_environment(
    invoke: Invoke, keys: Keys, tmp_path: Path
) -> None:
    keyring = public_key(keys, keys.next, tmp_path / "K2.gpg")
    ok(invoke("all", env={"INVOKE_TRUST_KEYS": str(keyring)}))
    assert listing(tmp_path / "output" / IMAGE)[NEXT_KEYS] == ("-rw-r--r--", "0/0")


def test_other_keys_restage_and_repack(invoke: Invoke, keys: Keys, tmp_path: Path) -> None:
    keyring = public_key(keys, keys.next, tmp_path / "next.gpg")
    build_with(invoke, keyring)
    public_key(keys, keys.vendor, keyring)  # the same file name, other keys
    again = build_with(invoke, keyring)
    assert "staged" in again.stdout and "packed" in again.stdout, again.stdout
    tree = extract(tmp_path / "output" / IMAGE, tmp_path / "tree")
    assert (tree / NEXT_KEYS).read_bytes() == export(keys.home, keys.vendor)
    info = json.loads((tmp_path / "output" / f"{IMAGE}.buildinfo.json").read_text())
    assert info["trust_keys"] == [keys.vendor]


def _secret(keys: Keys, path: Path) -> None:
    secret = gpg(keys.home, "--pinentry-mode=loopback", "--passphrase=", "--armor",
                  "--export-secret-keys", keys.next).stdout  # fmt: skip
    path.write_bytes(secret)


def _public_and_secret(keys: Keys, path: Path) -> None:
    """A binary keyring with a public key first, then a secret one."""
    command = ["gpg", "--batch", f"--homedir={keys.home}", "--pinentry-mode=loopback"]
    command += ["--passphrase=", "--export-secret-keys", keys.next]
    secret = subprocess.run(command, capture_output=True, check=True).stdout
    path.write_bytes(export(keys.home, keys.vendor) + secret)


def _signature(keys: Keys, path: Path) -> None:
    data = path.with_name("data")
    data.write_text("signed\n")
    gpg(keys.home, f"--local-user={keys.next}", "--output", str(path), "--detach-sign", str(data))


def _symlink(keys: Keys, path: Path) -> None:
    path.symlink_to(public_key(keys, keys.next, path.with_name("real.gpg")))


BAD_KEYRINGS = {
    "secret key": (_secret, "holds a secret key"),
    "public and secret keys": (_public_and_secret, "holds a secret key"),
    "garbage": (lambda keys, path: path.write_bytes(b"not a key\n" * 10), "not an OpenPGP"),
    "a truncated key": (
        lambda keys, path: path.write_bytes(export(keys.home, keys.next)[:40]),
        "not an OpenPGP",
    ),
    "a signature": (_signature, "holds no public key"),
    "empty": (lambda keys, path: path.write_bytes(b""), "is empty"),
    "too large": (lambda keys, path: path.write_bytes(b"\x00" * ((1 << 20) + 1)), "larger than"),
    "a FIFO": (lambda keys, path: os.mkfifo(path), "it is a FIFO"),
    "a directory": (lambda keys, path: path.mkdir(), "it is a directory"),
    "a symlink": (_symlink, "it is a symlink"),
    "missing": (lambda keys, path: None, "no --trust-keys file"),
}


@pytest.mark.parametrize("bad", list(BAD_KEYRINGS))
def test_a_bad_keyring_is_refused_before_anything_is_written(
    invoke: Invoke, keys: Keys, tmp_path: Path, bad: str
) -> None:
    make, words = BAD_KEYRINGS[bad]
    keyring = tmp_path / "keys" / "K2.pub"
    keyring.parent.mkdir()
    make(keys, keyring)
    line = error_line(invoke("all", f"--trust-keys={keyring}"))
    assert words in line and str(keyring) in line, line
    assert "BEGIN PGP PRIVATE" not in line
    assert not (tmp_path / "output").exists()


def test_an_empty_option_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    line = error_line(invoke("all", env={"INVOKE_TRUST_KEYS": " "}))
    assert "empty --trust-keys" in line, line
    assert not (tmp_path / "output").exists()


@pytest.fixture(scope="module")
def next_keyring(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """K2's public key, as a build's --trust-keys file (shared by the module: read it only)."""
    return public_key(keys, keys.next, tmp_path_factory.mktemp("keys") / "K2.gpg")


@pytest.fixture
def rotation_tree(prebuilt: Prebuilt, next_keyring: Path, tmp_path: Path) -> Path:
    output = prebuilt(("--no-verify", f"--trust-keys={next_keyring}"))
    return extract(output / IMAGE, tmp_path / "tree")


def test_verify_image_accepts_the_keys_as_optional(
    invoke: Invoke, rotation_tree: Path, tmp_path: Path
) -> None:
    ok(verify(invoke, repack(rotation_tree, tmp_path / "check" / IMAGE)))


def test_verify_without_the_option_refuses_the_keys(rotation_tree: Path, tmp_path: Path) -> None:
    """A build without --trust-keys checks its image exactly: a keyring there is extra."""
    image = repack(rotation_tree, tmp_path / "check" / IMAGE)
    expect = Expectations(compression="xz", names=[IMAGE], checksums=[])
    with pytest.raises(BuildError, match=f"/{NEXT_KEYS} is an extra file"):
        run_verify(image, expect)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda path: path.chmod(0o600), "has mode -rw-------, not -rw-r--r--"),
        (lambda path: path.chmod(0o755), "has mode -rwxr-xr-x, not -rw-r--r--"),
        (
            lambda path: path.with_name("other.gpg").write_bytes(path.read_bytes()),
            "other.gpg is an extra file",
        ),
        (lambda path: (path.unlink(), path.symlink_to("/etc/shadow")), "is a symlink"),
        (lambda path: (path.unlink(), path.mkdir()), "is a directory, not a regular file"),
    ],
    ids=["0600", "0755", "another keyring", "symlink", "directory"],
)
def test_verify_checks_the_keyring_entry(
    invoke: Invoke, rotation_tree: Path, tmp_path: Path, change, fragment: str
) -> None:
    change(rotation_tree / NEXT_KEYS)
    image = repack(rotation_tree, tmp_path / "check" / IMAGE)
    fails_because(verify(invoke, image), "entries", fragment)


def test_keyring_unit_runs_again_before_every_update(
    invoke: Invoke, keys: Keys, tmp_path: Path
) -> None:
    """The image carrying K2 is merged after the update that installed it (activate's refresh),
    so the keyring holds K2 only from the next update on: that needs the unit to run before
    every start of systemd-sysupdate.service, i.e. a oneshot that does not stay active."""
    ok(invoke("all"))
    env = signing_env(keys)
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", f"--sign-key={keys.plain}", env=env))
    unit = {u["name"]: u for u in ignition(tmp_path / "output")["systemd"]["units"]}[UNIT]
    lines = unit["contents"].splitlines()
    assert "Type=oneshot" in lines and not any(
        line.startswith("RemainAfterExit=") for line in lines
    )
    assert "WantedBy=systemd-sysupdate.service multi-user.target" in lines
    assert "Before=systemd-sysupdate.service" in lines
    assert unit["enabled"] is True


def test_without_gpg_the_option_is_refused(invoke: Invoke, keys: Keys, tmp_path: Path) -> None:
    keyring = public_key(keys, keys.next, tmp_path / "K2.gpg")
    tools = tmp_path / "tools"  # every tool of a build, but no gpg
    tools.mkdir()
    for tool in ("mksquashfs", "unsquashfs"):
        (tools / tool).symlink_to(shutil.which(tool) or tool)
    line = error_line(invoke("all", f"--trust-keys={keyring}", env={"PATH": str(tools)}))
    assert "--trust-keys needs gpg" in line, line
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize("recorded", ["not a list", ["f00"], [1], {"a": "b"}])
def test_release_refuses_a_build_info_with_bad_trust_keys(
    invoke: Invoke, prebuilt: Prebuilt, next_keyring: Path, tmp_path: Path, recorded: object
) -> None:
    output = copy_output(prebuilt((f"--trust-keys={next_keyring}",)), tmp_path)
    info_path = output / f"{IMAGE}.buildinfo.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "trust_keys": recorded}))
    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert "trust_keys" in line and info_path.name in line, line
    assert not (tmp_path / "output" / "index.json").exists()
