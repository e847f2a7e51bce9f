"""invoke release for signed dm-verity DDIs (build/release/verity.py, publish.py, host.py): the
certificate a host gets in /etc/verity.d, the systemd-sysext.service drop-in that requires
signatures, the same policy on every merge of the activate script, the refusals that keep a
fleet from a certificate or a policy its images do not meet, and clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from build.core.errors import BuildError
from build.formats.ddi import assemble
from build.formats.veritysig import signature_partition
from build.keys.veritycert import load_certificate
from build.keys.veritysign import sign_root_hash
from build.model import manifest
from build.model.ddi import SIGNED_IMAGE_POLICY
from build.model.names import VERITY_CERT_FILE
from build.pipeline.clean import clean_outputs, output_kind
from build.read.gpt import read_gpt
from build.release import butane, publish
from build.release import host as layout
from build.release.sysupdate import transfer
from build.release.verity import Verity, check_signed_by
from tests.conftest import AMD64, VERSION, Invoke, Prebuilt, copy_output
from tests.erofs_images import alloy_tree, mkfs
from tests.needs import need
from tests.noxfile_module import load_noxfile
from tests.release_files import PUBLISH_URL, snapshot
from tests.results import error_line, ok

pytestmark = pytest.mark.needs("openssl")

SEED = uuid.UUID("0123456789abcdef0123456789abcdef")
DROPIN_UNIT = "systemd-sysext.service"


def make_cert(where: Path, name: str) -> tuple[Path, Path]:
    key, cert = where / f"{name}.key", where / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "3650", "-subj", f"/CN={name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    where = tmp_path_factory.mktemp("verity-keys")
    return {name: make_cert(where, name) for name in ("a", "b")}


def ddi(tmp_path: Path, key: Path | None, cert: Path, fingerprint_of: Path | None = None) -> Path:
    """A small DDI for amd64, signed with `key` (None: unsigned) as `cert`, its signature
    partition naming `fingerprint_of`'s certificate (default: `cert`)."""
    need("mkfs.erofs")
    data = mkfs(alloy_tree(tmp_path / "tree", binary_size=64 << 10), tmp_path / "data.erofs")
    named = load_certificate(fingerprint_of or cert).der

    def sign(root_hash: bytes) -> bytes:
        assert key is not None
        return signature_partition(
            root_hash, sign_root_hash(root_hash, key, load_certificate(cert)), named
        )

    image = tmp_path / "alloy-1.10.2-amd64.raw"
    assemble(data, image, "amd64", SEED, sign if key else None)
    return image


def verity(image: Path, fingerprint: str | None) -> Verity:
    """What the image's build info would say: its root hash (the partition UUIDs' halves)."""
    table = read_gpt(image, 3 if fingerprint else 2)
    root = (table.partitions[0].uuid.bytes + table.partitions[1].uuid.bytes).hex()
    return Verity(root, fingerprint is not None, fingerprint, "erofs")


# The trust check: what a host does with the certificate, done before anything is published


def test_a_ddi_signed_by_the_certificate_passes(tmp_path: Path, certs: Any) -> None:
    key, cert = certs["a"]
    image = ddi(tmp_path, key, cert)
    certificate = load_certificate(cert)
    check_signed_by(image, verity(image, certificate.fingerprint), certificate)


def test_another_certificate_is_refused_naming_both(tmp_path: Path, certs: Any) -> None:
    key, cert = certs["a"]
    image = ddi(tmp_path, key, cert)
    signed_by, other = load_certificate(cert), load_certificate(certs["b"][1])
    with pytest.raises(BuildError) as refused:
        check_signed_by(image, verity(image, signed_by.fingerprint), other)
    assert f"signed by the certificate with sha256 {signed_by.fingerprint}" in refused.value.message
    assert f"not --verity-cert {other.path} ({other.fingerprint})" in refused.value.message


def test_unsigned_and_plain_images_are_refused_with_a_certificate(
    tmp_path: Path, certs: Any
) -> None:
    certificate = load_certificate(certs["a"][1])
    unsigned = ddi(tmp_path, None, certs["a"][1])
    with pytest.raises(BuildError) as refused:
        check_signed_by(unsigned, verity(unsigned, None), certificate)
    assert "is an unsigned verity DDI" in refused.value.message
    with pytest.raises(BuildError) as refused:
        check_signed_by(unsigned, None, certificate)
    assert "is no dm-verity DDI" in refused.value.message


def test_the_published_certificate_is_the_certificate_alone(tmp_path: Path, certs: Any) -> None:
    """Its DER re-encoded as PEM, never the file as given (one with a private key in it is
    refused: test_a_certificate_file_holding_a_private_key_is_refused)."""
    cert = certs["a"][1]
    certificate = load_certificate(cert)
    x509 = subprocess.run(
        ["openssl", "x509", "-in", str(cert)], check=True, capture_output=True, text=True
    )
    assert certificate.pem == x509.stdout


# The host's files, rendered


def image_of(tmp_path: Path, fingerprint: str | None = None) -> publish.Image:
    path = tmp_path / "alloy-1.10.2-amd64.raw"
    info = {"autostart": False, "config_path": "/etc/alloy/config.alloy", "trust_keys": []}
    root = "ab" * 32
    found = Verity(root, fingerprint is not None, fingerprint, "erofs")
    return publish.Image(path, "1.10.2", "amd64", None, "00" * 32, 1, info, found)


def configs(
    tmp_path: Path, trust: publish.HostTrust
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(Ignition with its text decoded, its files by path, its units by name); the Butane
    config checked to say the same."""
    image = image_of(tmp_path, trust.certificate.fingerprint if trust.certificate else None)
    config = publish.flatcar_config(image, PUBLISH_URL, "transfer\n", trust)
    ign = json.loads(butane.to_ignition(config))
    bu = yaml.safe_load(butane.to_butane(config, "c"))
    files = {}
    for file in ign["storage"]["files"]:
        source = file["contents"]["source"]
        if source.startswith("data:,"):
            file["contents"] = {"inline": unquote(source.removeprefix("data:,"))}
        files[file["path"]] = file
    for file in bu["storage"]["files"]:
        assert files[file["path"]]["contents"] == file["contents"], file["path"]
        assert files[file["path"]]["mode"] == file["mode"]
    assert bu["systemd"] == ign["systemd"]
    units = {unit["name"]: unit for unit in ign["systemd"]["units"]}
    return ign, files, units


def sysext_calls(script: str) -> list[str]:
    return [
        line.strip()
        for line in script.splitlines()
        if "systemd-sysext " in line and not line.lstrip().startswith(("#", "log "))
    ]


def test_required_signatures_give_the_certificate_the_dropin_and_the_policy_everywhere(
    tmp_path: Path, certs: Any
) -> None:
    certificate = load_certificate(certs["a"][1])
    trust = publish.HostTrust(None, certificate, require_signed=True)
    _, files, units = configs(tmp_path, trust)
    crt = files["/etc/verity.d/alloy-sysext.crt"]
    assert layout.VERITY_CERT == "/etc/verity.d/alloy-sysext.crt"  # *.crt: what systemd reads
    assert crt["mode"] == 0o644 and crt["contents"] == {"inline": certificate.pem}
    assert crt["contents"]["inline"].startswith("-----BEGIN CERTIFICATE-----\n")
    [dropin] = units[DROPIN_UNIT]["dropins"]
    assert dropin["name"] == "alloy-image-policy.conf"
    policy = f"systemd-sysext refresh --image-policy={SIGNED_IMAGE_POLICY}"
    assert SIGNED_IMAGE_POLICY == "root=signed+absent:usr=signed+absent"
    service = dropin["contents"].split("[Service]\n", 1)[1]
    assert service == f"ExecStart=\nExecStart={policy}\nExecReload=\nExecReload={policy}\n"
    script = files[layout.ACTIVATE_SCRIPT]["contents"]["inline"]
    assert sysext_calls(script) and all(policy in call for call in sysext_calls(script))
    assert len(sysext_calls(script)) == 2  # the update's merge and the rollback's


def test_a_certificate_alone_is_shipped_without_the_policy(tmp_path: Path, certs: Any) -> None:
    trust = publish.HostTrust(None, load_certificate(certs["a"][1]), require_signed=False)
    _, files, units = configs(tmp_path, trust)
    assert layout.VERITY_CERT in files and DROPIN_UNIT not in units
    script = files[layout.ACTIVATE_SCRIPT]["contents"]["inline"]
    assert sysext_calls(script) and not any("--image-policy" in c for c in sysext_calls(script))


def test_no_certificate_no_verity_files(tmp_path: Path) -> None:
    _, files, units = configs(tmp_path, publish.HostTrust())
    assert layout.VERITY_CERT not in files and DROPIN_UNIT not in units


def test_the_dropin_passes_systemd_analyze_on_the_host_s_sysext_unit(
    tmp_path: Path, certs: Any
) -> None:
    need("systemd-analyze")
    stock = Path("/usr/lib/systemd/system/systemd-sysext.service")
    if not stock.exists():
        pytest.skip("no systemd-sysext.service on this machine")
    trust = publish.HostTrust(None, load_certificate(certs["a"][1]), require_signed=True)
    _, _, units = configs(tmp_path / "config", trust)
    [dropin] = units[DROPIN_UNIT]["dropins"]
    unit_dir = tmp_path / "units"
    (unit_dir / f"{DROPIN_UNIT}.d").mkdir(parents=True)
    shutil.copy(stock, unit_dir / DROPIN_UNIT)
    (unit_dir / f"{DROPIN_UNIT}.d" / dropin["name"]).write_text(dropin["contents"])
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / DROPIN_UNIT)],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_ignition_with_the_certificate_passes_ignition_validate(tmp_path: Path, certs: Any) -> None:
    need("ignition-validate")
    certificate = load_certificate(certs["a"][1])
    trust = publish.HostTrust(None, certificate, require_signed=True)
    image = image_of(tmp_path, certificate.fingerprint)
    config = publish.flatcar_config(image, PUBLISH_URL, "t\n", trust)
    path = tmp_path / "alloy.ign"
    path.write_text(butane.to_ignition(config))
    result = subprocess.run(["ignition-validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# index.json, one format per directory


def test_index_says_the_format_whether_signed_and_the_certificate(
    tmp_path: Path, certs: Any
) -> None:
    certificate = load_certificate(certs["a"][1])
    image = image_of(tmp_path, certificate.fingerprint)
    image = publish.Image(
        image.path, image.version, image.arch, None, image.sha256, 1,
        {**image.buildinfo, "format": "erofs", "compression": "lz4hc", "mkfs.erofs": "1.5"},
        image.verity,
    )  # fmt: skip
    trust = publish.HostTrust(None, certificate, require_signed=True)
    index = json.loads(publish.index_json([image], {"amd64": image}, PUBLISH_URL, trust))
    [entry] = index["images"]
    assert (
        entry["verity_signed"] is True
        and entry["verity_certificate_fingerprint"] == certificate.fingerprint
    )
    assert entry["root_hash"] == "ab" * 32 and entry["ddi_filesystem"] == "erofs"
    assert index["verity_certificate"] == {
        "file": VERITY_CERT_FILE,
        "fingerprint": certificate.fingerprint,
        "host_path": layout.VERITY_CERT,
        "require_signed_images": True,
    }


def test_ddis_with_different_file_systems_count_as_two_formats(tmp_path: Path) -> None:
    info = {"format": "ddi"}
    images = [
        publish.Image(tmp_path / f"alloy-1.10.2-{arch}.raw", "1.10.2", arch, None, "", 1, info,
                      Verity("ab" * 32, False, None, filesystem))
        for arch, filesystem in (("amd64", "erofs"), ("arm64", "squashfs"))
    ]  # fmt: skip
    with pytest.raises(BuildError) as refused:
        publish.refuse_mixed_formats(tmp_path, images)
    assert "ddi (erofs): alloy-1.10.2-amd64.raw" in refused.value.message
    assert "ddi (squashfs): alloy-1.10.2-arm64.raw" in refused.value.message


# The refusals, through the CLI: one line, nothing written


def test_require_signed_images_without_a_certificate_is_refused(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)
    before = snapshot(output)
    result = invoke("release", f"--publish-url={PUBLISH_URL}", "--require-signed-images")
    error_line(result, "--require-signed-images without --verity-cert", "give --verity-cert=")
    assert snapshot(output) == before


def test_a_certificate_for_images_that_are_no_ddis_is_refused(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path, certs: Any
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)
    before = snapshot(output)
    for policy in ((), ("--require-signed-images",)):
        result = invoke(
            "release", f"--publish-url={PUBLISH_URL}", f"--verity-cert={certs['a'][1]}", *policy
        )
        error_line(result, "alloy-1.10.2-amd64.raw is no dm-verity DDI", "--format=ddi")
        assert snapshot(output) == before


def test_a_file_that_is_no_certificate_is_refused(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path, certs: Any
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)
    before = snapshot(output)
    text = tmp_path / "notes.crt"
    text.write_text("no certificate here\n")
    result = invoke("release", f"--publish-url={PUBLISH_URL}", f"--verity-cert={text}")
    error_line(result, "cannot read the verity certificate")
    assert snapshot(output) == before


def test_a_certificate_bundle_is_refused_naming_how_many(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path, certs: Any
) -> None:
    """systemd reads only the first certificate of a file in /etc/verity.d: a bundle given for
    a rotation would ship one of the two silently."""
    output = copy_output(prebuilt(*AMD64), tmp_path)
    bundle = tmp_path / "both.crt"
    bundle.write_bytes(certs["a"][1].read_bytes() + certs["b"][1].read_bytes())
    before = snapshot(output)
    result = invoke("release", f"--publish-url={PUBLISH_URL}", f"--verity-cert={bundle}")
    error_line(result, f"{bundle} (--verity-cert) holds 2 certificates", "one certificate")
    assert snapshot(output) == before


@pytest.mark.parametrize("key_first", [True, False], ids=["key-then-cert", "cert-then-key"])
def test_a_certificate_file_holding_a_private_key_is_refused(
    tmp_path: Path, certs: Any, key_first: bool
) -> None:
    """The certificate file is the public one (hosts get it, README installs it by hand): a
    private key in it would go with it."""
    key, cert = certs["a"]
    both = tmp_path / "keyed.crt"
    parts = [key.read_bytes(), cert.read_bytes()]
    both.write_bytes(b"".join(parts if key_first else parts[::-1]))
    with pytest.raises(BuildError, match="holds a private key") as raised:
        load_certificate(both)
    assert "--verity-key" in raised.value.hint


def test_a_certificate_that_is_no_regular_file_or_too_big_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.crt"
    os.mkfifo(fifo)  # never opened blocking: no writer would ever come
    with pytest.raises(BuildError, match="it is a FIFO") as raised:
        load_certificate(fifo)
    assert "--verity-cert" in raised.value.hint
    big = tmp_path / "big.crt"
    big.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (1 << 20))
    with pytest.raises(BuildError, match="larger than"):
        load_certificate(big)


def test_a_der_certificate_or_a_symlink_to_one_is_published_as_pem(
    tmp_path: Path, certs: Any
) -> None:
    """Decided: DER is read as openssl reads it and re-encoded; a symlink the user names is
    followed (it is their argument, not a file someone put in our place)."""
    pem = load_certificate(certs["a"][1])
    der = tmp_path / "a.der"
    der.write_bytes(load_certificate(certs["a"][1]).der)
    link = tmp_path / "current.crt"
    link.symlink_to(der)
    for given in (der, link):
        loaded = load_certificate(given)
        assert (loaded.pem, loaded.fingerprint) == (pem.pem, pem.fingerprint)
        assert loaded.path == given


# clean


def test_clean_removes_a_published_certificate_as_a_certificate(tmp_path: Path) -> None:
    assert output_kind(Path(VERITY_CERT_FILE)) == "certificate"
    output = tmp_path / "output"
    output.mkdir()
    (output / VERITY_CERT_FILE).write_text("-----BEGIN CERTIFICATE-----\n")
    manifest.own_subdir(output, ".staging")
    with manifest.output_dir_lock(output):
        manifest.record(output, [output / VERITY_CERT_FILE])
    cleaned = clean_outputs(output, None, None, "amd64")
    assert cleaned.kinds == Counter({"certificate": 1})
    assert not (output / VERITY_CERT_FILE).exists()
    assert publish.release_files(output) == []


def test_clean_keeps_a_certificate_it_did_not_write(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    (output / VERITY_CERT_FILE).write_text("mine\n")
    cleaned = clean_outputs(output, None, None, "amd64")
    assert (output / VERITY_CERT_FILE).exists() and not cleaned.removed


def test_an_earlier_certificate_goes_when_released_without_one(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    """A certificate beside images it no longer signs would mislead: removed where it is the
    tool's, kept and named where it is not."""
    output = copy_output(prebuilt(*AMD64), tmp_path)
    (output / VERITY_CERT_FILE).write_text("-----BEGIN CERTIFICATE-----\n")
    with manifest.output_dir_lock(output):
        manifest.record(output, [output / VERITY_CERT_FILE])
    result = ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert f"removed output/{VERITY_CERT_FILE} (from an earlier release with --verity-cert)" in (
        result.stdout + result.stderr
    )
    assert not (output / VERITY_CERT_FILE).exists()
    (output / VERITY_CERT_FILE).write_text("someone else's\n")
    result = ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert f"kept output/{VERITY_CERT_FILE}: this tool did not write it" in (
        result.stdout + result.stderr
    )


def test_nox_release_hands_the_certificate_to_builds_and_the_policy_to_release_only() -> None:
    noxfile = load_noxfile()
    args = ["--verity-cert=c.crt", "--require-signed-images", "--publish-url=https://x/"]
    assert noxfile._flags(args, noxfile.RELEASE_FLAGS, keep=True) == args
    assert noxfile._flags(args, noxfile.RELEASE_ONLY_FLAGS, keep=False) == ["--verity-cert=c.crt"]
    # A switch: the argument after it is not swallowed as its value.
    args = ["--require-signed-images", "--verity-key", "k.pem"]
    assert noxfile._flags(args, noxfile.RELEASE_ONLY_FLAGS, keep=False) == ["--verity-key", "k.pem"]


# Release of a directory of DDIs, built by the real CLI


def build_ddi(invoke: Invoke, output: str, *flags: str) -> None:
    ok(invoke("all", f"--version={VERSION}", "--format=ddi", f"--output-dir={output}", *flags))


def test_release_publishes_signed_ddis_with_their_certificate(
    invoke: Invoke, tmp_path: Path, certs: Any
) -> None:
    need("mkfs.erofs")
    (key_a, cert_a), (_, cert_b) = certs["a"], certs["b"]
    build_ddi(invoke, "output", f"--verity-key={key_a}", f"--verity-cert={cert_a}")
    output = tmp_path / "output"
    release = ("release", f"--publish-url={PUBLISH_URL}", f"--verity-cert={cert_a}")
    said = ok(invoke(*release, "--require-signed-images")).stdout
    certificate = load_certificate(cert_a)
    assert f"every image is signed by {cert_a} (sha256 {certificate.fingerprint})" in said
    assert "every extension on them, not only alloy" in said
    # The certificate beside the images, alone; SHA256SUMS lists the images, as before.
    assert (output / VERITY_CERT_FILE).read_text() == certificate.pem
    listed = [line.split("  ")[1] for line in (output / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == [f"alloy-{VERSION}-amd64.raw", f"alloy-{VERSION}.raw"]
    index = json.loads((output / "index.json").read_text())
    for entry in index["images"]:
        assert (entry["format"], entry["verity_signed"]) == ("ddi", True), entry
        assert entry["verity_certificate_fingerprint"] == certificate.fingerprint
    assert index["verity_certificate"]["require_signed_images"] is True
    # The transfer is the one every format gets; the host gets the certificate and the policy.
    text = (output / "sysupdate/amd64/alloy.transfer").read_text()
    assert text == transfer("amd64", PUBLISH_URL)
    ign = json.loads((output / "flatcar/alloy-amd64.ign").read_text())
    paths = [file["path"] for file in ign["storage"]["files"]]
    assert layout.VERITY_CERT in paths
    assert DROPIN_UNIT in [unit["name"] for unit in ign["systemd"]["units"]]
    bu = (output / "flatcar/alloy-amd64.bu").read_text()
    assert "EVERY extension on this host, not only alloy" in bu

    # Another certificate: refused, naming both, nothing changed.
    cert_b_fingerprint = load_certificate(cert_b).fingerprint
    before = snapshot(output)
    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}", f"--verity-cert={cert_b}"))
    assert f"signed by the certificate with sha256 {certificate.fingerprint}" in line
    assert str(cert_b) in line
    assert snapshot(output) == before

    # A build info that names B for A's image: the signature itself is checked, and fails.
    info_path = output / f"alloy-{VERSION}-amd64.raw.buildinfo.json"
    original = info_path.read_text()
    info = {**json.loads(original), "verity_certificate_fingerprint": cert_b_fingerprint}
    info_path.write_text(json.dumps(info))
    before = snapshot(output)
    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}", f"--verity-cert={cert_b}"))
    assert "failed verification: signature" in line
    assert snapshot(output) == before
    info_path.write_text(original)

    # A build info whose root hash is not the image's: index.json would publish it.
    info = {**json.loads(original), "root_hash": "ab" * 32}
    info_path.write_text(json.dumps(info))
    before = snapshot(output)
    line = error_line(invoke(*release))
    assert f"its build info says root hash {'ab' * 32}" in line
    assert snapshot(output) == before
    # ... or another file system inside: hosts without EROFS would be offered this feed.
    squashfs = {"ddi_filesystem": "squashfs", "compression": "zstd"}
    info_path.write_text(json.dumps({**json.loads(original), **squashfs}))
    lied = snapshot(output)
    line = error_line(invoke(*release))
    assert "failed verification: superblock: EROFS" in line
    assert snapshot(output) == lied
    info_path.write_text(original)

    # Signed DDIs without a certificate: refused, as verify refuses them.
    before = snapshot(output)
    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert "is a signed DDI" in line and "no --verity-cert was given" in line
    assert snapshot(output) == before

    # clean knows the certificate.
    cleaned = ok(invoke("clean")).stdout
    assert "1 certificate" in cleaned and not (output / VERITY_CERT_FILE).exists()


def test_unsigned_ddis_are_refused_with_a_certificate_and_mixed_formats_refused(
    invoke: Invoke, tmp_path: Path, certs: Any
) -> None:
    need("mkfs.erofs")
    build_ddi(invoke, "unsigned", "--no-verity-signature")
    before = snapshot(tmp_path / "unsigned")
    flags = (f"--publish-url={PUBLISH_URL}", "--output-dir=unsigned")
    line = error_line(invoke("release", *flags, f"--verity-cert={certs['a'][1]}"))
    assert "is an unsigned verity DDI" in line
    assert snapshot(tmp_path / "unsigned") == before
    # A build info that calls the unsigned DDI signed: index.json would say so.
    info_path = tmp_path / f"unsigned/alloy-{VERSION}-amd64.raw.buildinfo.json"
    original = info_path.read_text()
    lie = {"verity_signed": True, "verity_certificate_fingerprint": "cd" * 32}
    info_path.write_text(json.dumps({**json.loads(original), **lie}))
    lied = snapshot(tmp_path / "unsigned")
    line = error_line(invoke("release", *flags))
    assert "its build info says it is signed, the image is unsigned" in line
    assert snapshot(tmp_path / "unsigned") == lied
    info_path.write_text(original)
    ok(invoke("release", *flags))  # without a certificate: published, unsigned
    entry = json.loads((tmp_path / "unsigned/index.json").read_text())["images"][0]
    assert (entry["format"], entry["verity_signed"]) == ("ddi", False)
    # A squashfs image beside them: two formats in one directory.
    ok(invoke("all", f"--version={VERSION}", "--arch=arm64", "--output-dir=unsigned"))
    line = error_line(invoke("release", *flags))
    assert "mixes image formats" in line and "ddi (erofs): " in line and "squashfs: " in line
