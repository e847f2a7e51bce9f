"""Signed releases: invoke release --sign-key writes SHA256SUMS.gpg and the public key, the
transfers say Verify=yes, and the Ignition config carries the key inline and the unit that adds
it to systemd-sysupdate's keyring. Keys are throwaway ones, made in a short GNUPGHOME under /tmp
(a long path breaks gpg-agent's socket), whose agent is stopped afterwards."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from build.keys.signing import PASSPHRASE_ENV
from build.release import host as layout
from tests.conftest import (
    BOTH_ARCHES,
    INVOKE_CLI,
    REPO,
    VERSION,
    Prebuilt,
    Release,
    copy_output,
    nox_sessions,
)
from tests.gpgkeys import PASSPHRASE, Keys, export, gpg, gpgv
from tests.needs import need
from tests.noxfile_module import load_noxfile
from tests.release_files import (
    HOST_KEY,
    PUBLISH_URL,
    PUBRING_UNIT,
    SYSUPDATE,
    host_transfer,
    ignition,
    snapshot,
    unit_script,
)
from tests.results import error_line, ok

pytestmark = pytest.mark.needs("gpg", "gpgv")

SIGNED = ("SHA256SUMS.gpg", "alloy-release-key.gpg", "alloy-release-key.asc")


# One amd64 and one arm64 image, built once; each test releases a copy.
@pytest.fixture
def built(prebuilt: Prebuilt) -> Path:
    return prebuilt(*BOTH_ARCHES)


Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def output(built: Path, tmp_path: Path) -> Path:
    return copy_output(built, tmp_path)


@pytest.fixture
def run(tmp_path: Path, keys: Keys) -> Run:
    """The real CLI in tmp_path, with the test keys' home as --gnupg-home (INVOKE_GNUPG_HOME)."""

    def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
        return subprocess.run(
            [*INVOKE_CLI, *args],
            cwd=tmp_path,
            env={**base, "INVOKE_GNUPG_HOME": str(keys.home), **(env or {})},
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )

    return cli


def transfer_verify(output: Path, arch: str = "amd64") -> list[str]:
    return [
        line
        for name in ("alloy.transfer", "alloy.conf")
        for line in (output / f"sysupdate/{arch}/{name}").read_text().splitlines()
        if line.startswith("Verify=")
    ]


def release(run: Run, *args: str, env: dict[str, str] | None = None):
    return run("release", f"--publish-url={PUBLISH_URL}", *args, env=env)


def test_signed_release_verifies_with_the_published_key(run: Run, keys: Keys, output: Path):
    result = ok(release(run, f"--sign-key={keys.plain}"))
    assert f"signed SHA256SUMS with {keys.plain}" in result.stdout
    assert "unsigned" not in result.stdout
    for name in SIGNED:
        assert (output / name).is_file(), name
    verdict = gpgv(output / SIGNED[1], output / "SHA256SUMS.gpg", output / "SHA256SUMS")
    assert verdict.returncode == 0, verdict.stderr
    assert (output / SIGNED[2]).read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    for arch in ("amd64", "arm64"):
        assert transfer_verify(output, arch) == ["Verify=yes", "Verify=yes"]
    index = json.loads((output / "index.json").read_text())
    assert index["signature"]["fingerprint"] == keys.plain
    assert index["signature"]["file"] == "SHA256SUMS.gpg"
    # Known to the manifest, so clean and a later release may remove them.
    recorded = json.loads((output / ".staging/manifest.json").read_text())["files"]
    assert set(SIGNED) <= set(recorded)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_ignition_carries_the_key_inline_and_the_keyring_unit(
    run: Run, keys: Keys, output: Path, arch: str
) -> None:
    ok(release(run, f"--sign-key={keys.plain}"))
    config = ignition(output, arch)
    files = {file["path"]: file for file in config["storage"]["files"]}
    source = files[HOST_KEY]["contents"]["source"]
    assert source.startswith("data:;base64,"), "the key is inline, never fetched"
    assert base64.b64decode(source.split(",", 1)[1]) == (output / SIGNED[1]).read_bytes()
    assert PUBLISH_URL not in json.dumps(files[HOST_KEY])
    units = {unit["name"]: unit for unit in config["systemd"]["units"]}
    unit = units[PUBRING_UNIT]
    assert unit["enabled"] is True
    assert "Before=systemd-sysupdate.service" in unit["contents"]
    assert "WantedBy=systemd-sysupdate.service" in unit["contents"]
    bu = (output / f"flatcar/alloy-{arch}.bu").read_text()
    assert source in bu and PUBRING_UNIT in bu
    need("ignition-validate")
    path = output / f"flatcar/alloy-{arch}.ign"
    result = subprocess.run(["ignition-validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("vendor_name", ["import-pubring.gpg", "import-pubring.pgp", None])
def test_keyring_unit_keeps_the_vendor_keys_and_adds_ours(
    run: Run, keys: Keys, output: Path, tmp_path: Path, vendor_name: str | None
) -> None:
    """The unit's script, run on a stand-in root: both /etc keyrings verify our signature and
    one of the vendor's with gpgv (which reads concatenated binary keyrings)."""
    ok(release(run, f"--sign-key={keys.plain}"))
    units = {unit["name"]: unit for unit in ignition(output)["systemd"]["units"]}
    host = tmp_path / "host"
    for directory in ("usr/lib/systemd", "etc/systemd", "etc/alloy-sysext"):
        (host / directory).mkdir(parents=True)
    vendor_key = export(keys.home, keys.vendor)
    if vendor_name:
        (host / "usr/lib/systemd" / vendor_name).write_bytes(vendor_key)
    # The key to trust next, as a merged image may carry it (a key rotation).
    next_keys = host / layout.NEXT_KEYS_DIR.strip("/")
    next_keys.mkdir(parents=True)
    (next_keys / "next.gpg").write_bytes(export(keys.home, keys.next))
    (next_keys / "empty.gpg").write_bytes(b"")
    shutil.copy(output / SIGNED[1], host / HOST_KEY.lstrip("/"))
    script = unit_script(units[PUBRING_UNIT]["contents"])
    script = script.replace("/usr/lib/", f"{host}/usr/lib/").replace("/etc/", f"{host}/etc/")
    result = subprocess.run(["sh", "-ec", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "data"
    data.write_text("vendor-signed\n")
    gpg(keys.home, f"--local-user={keys.vendor}", "--detach-sign", str(data))
    later = tmp_path / "later"
    later.write_text("signed with the next key\n")
    gpg(keys.home, f"--local-user={keys.next}", "--detach-sign", str(later))
    for keyring in ("import-pubring.gpg", "import-pubring.pgp"):
        path = host / "etc/systemd" / keyring
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        ours = gpgv(path, output / "SHA256SUMS.gpg", output / "SHA256SUMS")
        assert ours.returncode == 0, ours.stderr
        theirs = gpgv(path, Path(f"{data}.sig"), data)
        assert (theirs.returncode == 0) == (vendor_name is not None), theirs.stderr
        upcoming = gpgv(path, Path(f"{later}.sig"), later)
        assert upcoming.returncode == 0, upcoming.stderr
    assert sorted(p.name for p in (host / "etc/systemd").iterdir()) == [
        "import-pubring.gpg",
        "import-pubring.pgp",
    ]


@pytest.mark.needs("systemd-analyze")
def test_keyring_unit_passes_systemd_analyze(run: Run, keys: Keys, output: Path, tmp_path: Path):
    ok(release(run, f"--sign-key={keys.plain}"))
    units = {unit["name"]: unit for unit in ignition(output)["systemd"]["units"]}
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / PUBRING_UNIT).write_text(units[PUBRING_UNIT]["contents"])
    (unit_dir / "systemd-sysupdate.service").write_text("[Service]\nExecStart=/usr/bin/true\n")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / PUBRING_UNIT)],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_unsigned_release_says_so_and_removes_an_earlier_signature(
    run: Run, keys: Keys, output: Path, built: Path, tmp_path: Path
) -> None:
    ok(release(run, f"--sign-key={keys.plain}"))
    result = ok(release(run))
    notes = [line for line in result.stdout.splitlines() if "unsigned" in line]
    assert len(notes) == 1 and "Verify=false" in notes[0], result.stdout
    for name in SIGNED:
        assert not (output / name).exists(), name
        assert f"removed output/{name} (from an earlier signed release)" in result.stdout
    assert transfer_verify(output) == ["Verify=false", "Verify=false"]
    assert "signature" not in json.loads((output / "index.json").read_text())
    assert PUBRING_UNIT not in (output / "flatcar/alloy-amd64.ign").read_text()
    # Exactly what a release that never was signed writes.
    fresh = tmp_path / "fresh"
    shutil.copytree(built, fresh, symlinks=True)
    ok(release(run, f"--output-dir={fresh}"))
    for path in output.rglob("*"):
        if path.is_file() and ".staging" not in path.parts and not path.name.endswith(".raw"):
            assert path.read_bytes() == (fresh / path.relative_to(output)).read_bytes(), path


def test_unsigned_release_keeps_a_signature_it_did_not_write(run: Run, output: Path) -> None:
    (output / "SHA256SUMS.gpg").write_bytes(b"someone else's")
    result = ok(release(run))
    assert "kept output/SHA256SUMS.gpg: this tool did not write it" in result.stdout
    assert (output / "SHA256SUMS.gpg").read_bytes() == b"someone else's"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("--sign-key=0123456789ABCDEF0123456789ABCDEF01234567",), {}, "no secret key"),
        (("--sign-key=Plain",), {"PATH": "/nonexistent"}, "--sign-key needs gpg and gpgv"),
        (("--sign-key=Plain", "--gnupg-home=/nonexistent/gnupg"), {}, "no gpg home directory"),
        (("--sign-key=example.com",), {}, "secret keys, not one"),
        (("--sign-key=Protected",), {}, PASSPHRASE_ENV),
        (("--sign-key=Protected",), {PASSPHRASE_ENV: "wrong"}, "gpg could not sign"),
    ],
    ids=["unknown-key", "no-gpg", "no-home", "ambiguous", "no-passphrase", "wrong-passphrase"],
)
def test_signing_refusals_write_nothing(
    run: Run, keys: Keys, output: Path, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    # No agent remembers a passphrase another test gave: each signing has an agent of its own.
    ok(release(run))  # an unsigned release already there: it stays as it is
    before = snapshot(output)
    line = error_line(release(run, *args, env=env))
    assert expected in line, line
    assert snapshot(output) == before


def test_passphrase_from_the_environment_signs_in_batch_mode(
    run: Run, keys: Keys, output: Path
) -> None:
    ok(release(run, "--sign-key=Protected", env={PASSPHRASE_ENV: PASSPHRASE}))
    verdict = gpgv(output / SIGNED[1], output / "SHA256SUMS.gpg", output / "SHA256SUMS")
    assert verdict.returncode == 0, verdict.stderr
    assert json.loads((output / "index.json").read_text())["signature"]["fingerprint"] == (
        keys.protected
    )


def test_sign_key_from_the_environment(run: Run, keys: Keys, output: Path) -> None:
    ok(release(run, env={"INVOKE_SIGN_KEY": keys.plain}))
    assert (output / "SHA256SUMS.gpg").is_file()


def test_sums_keeps_a_matching_signature_removes_a_stale_one_or_signs_again(
    run: Run, keys: Keys, output: Path
) -> None:
    ok(release(run, f"--sign-key={keys.plain}"))
    signature = (output / "SHA256SUMS.gpg").read_bytes()
    ok(run("sums"))  # the same images: the same SHA256SUMS, which the signature still signs
    assert (output / "SHA256SUMS.gpg").read_bytes() == signature

    for path in output.glob(f"alloy-{VERSION}-arm64.raw*"):
        path.unlink()  # fewer images: the signature would not match the new SHA256SUMS
    result = ok(run("sums"))
    assert "unsigned now" in result.stdout
    for name in SIGNED:
        assert not (output / name).exists(), name

    result = ok(run("sums", f"--sign-key={keys.plain}"))
    assert f"signed output/SHA256SUMS with {keys.plain}" in result.stdout
    for name in SIGNED:
        assert (output / name).is_file(), name
    verdict = gpgv(output / SIGNED[1], output / "SHA256SUMS.gpg", output / "SHA256SUMS")
    assert verdict.returncode == 0, verdict.stderr
    assert "arm64" not in (output / "SHA256SUMS").read_text()


def test_sums_in_a_missing_directory_makes_none(run: Run, tmp_path: Path) -> None:
    line = error_line(run("sums", "--output-dir=nowhere"))
    assert "no images in nowhere" in line
    assert not (tmp_path / "nowhere").exists()


def test_clean_removes_the_signature_and_keys(run: Run, keys: Keys, output: Path) -> None:
    ok(release(run, f"--sign-key={keys.plain}"))
    ok(run("clean"))
    for name in SIGNED:
        assert not (output / name).exists(), name


def test_nox_release_routes_signing_flags_to_the_release_only() -> None:
    noxfile = load_noxfile()
    args = [
        "--publish-url=https://x/",
        "--sign-key",
        "ABCD",
        "--gnupg-home=/tmp/g",
        "--output-dir=o",
        "--force",
    ]
    assert noxfile._flags(args, noxfile.RELEASE_FLAGS, keep=True) == [
        "--publish-url=https://x/",
        "--sign-key",
        "ABCD",
        "--gnupg-home=/tmp/g",
        "--output-dir=o",
    ]
    assert noxfile._flags(args, noxfile.RELEASE_ONLY_FLAGS, keep=False) == [
        "--output-dir=o",
        "--force",
    ]


# A real systemd-sysupdate (254, from tests/fetch-sysupdate.sh) with Verify=yes. Its systemd-pull
# reads the keyring at fixed paths (/etc/systemd/import-pubring.gpg, then the vendor's), never
# under --root, so each run gets its own mount namespace with a directory holding the keyring
# the unit wrote bound over /etc/systemd.


def serve_signed(httpserver: HTTPServer, directory: Path, tampered: dict[str, bytes]) -> str:
    """Serve the images, SHA256SUMS and SHA256SUMS.gpg of `directory`; `tampered` overrides a
    file's bytes (an attacker's answer)."""

    def respond(request: Request) -> Response:
        name = request.path.removeprefix("/pub/")
        path = directory / name
        if name in tampered and not tampered[name]:
            return Response("not found", status=404)
        if name in tampered:
            return Response(tampered[name], content_type="application/octet-stream")
        wanted = name in ("SHA256SUMS", "SHA256SUMS.gpg") or name.endswith(".raw")
        if "/" in name or not wanted or not path.is_file():
            return Response("not found", status=404)
        return Response(path.read_bytes(), content_type="application/octet-stream")

    httpserver.expect_request(re.compile("^/pub/")).respond_with_handler(respond)
    return httpserver.url_for("/pub/")


BIND_AND_RUN = 'mount --bind "$0" /etc/systemd; exec "$@"'


def host_keyring(unit: str, host: Path, release_key: Path) -> Path:
    """What alloy-import-pubring.service leaves in /etc/systemd on a host whose vendor keyring
    is this machine's /usr/lib/systemd/import-pubring.gpg (when it has one)."""
    for directory in ("usr/lib/systemd", "etc/systemd", "etc/alloy-sysext"):
        (host / directory).mkdir(parents=True, exist_ok=True)
    vendor = Path("/usr/lib/systemd/import-pubring.gpg")
    if vendor.is_file():
        shutil.copy(vendor, host / "usr/lib/systemd")
    shutil.copy(release_key, host / HOST_KEY.lstrip("/"))
    script = unit_script(unit)
    script = script.replace("/usr/lib/", f"{host}/usr/lib/").replace("/etc/", f"{host}/etc/")
    subprocess.run(["sh", "-ec", script], check=True)
    return host / "etc/systemd"


@pytest.mark.needs("unshare", "mount", root="a mount namespace with our keyring as the host's")
@pytest.mark.usefixtures("needs_sysupdate")
def test_real_sysupdate_verifies_the_signature_and_refuses_tampering(
    run: Run, keys: Keys, output: Path, tmp_path: Path, httpserver: HTTPServer
) -> None:
    assert SYSUPDATE is not None
    tampered: dict[str, bytes] = {}
    url = serve_signed(httpserver, output, tampered)
    ok(run("release", f"--publish-url={url}", f"--sign-key={keys.plain}"))
    host = tmp_path / "host"
    definitions = host_transfer(output, "amd64", host)
    assert "Verify=yes" in (definitions / "alloy.conf").read_text()
    units = {unit["name"]: unit for unit in ignition(output)["systemd"]["units"]}
    etc_systemd = host_keyring(
        units[PUBRING_UNIT]["contents"], tmp_path / "keyhost", output / SIGNED[1]
    )
    binary, env = SYSUPDATE

    def sysupdate(*args: str) -> subprocess.CompletedProcess:
        command = [str(binary), f"--definitions={definitions}", "--no-pager", *args]
        return subprocess.run(
            ["unshare", "-m", "sh", "-ec", BIND_AND_RUN, str(etc_systemd), *command],
            env={**os.environ, **env, "SYSTEMD_COLORS": "0"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    # Signed: the version is offered, and installed.
    assert ok(sysupdate("check-new")).stdout.strip() == VERSION
    # Tampered SHA256SUMS (another image's hash), a missing signature, a stranger's signature:
    # each refused before any image is downloaded.
    sums_text = (output / "SHA256SUMS").read_bytes()
    data = tmp_path / "stranger"
    data.write_bytes(sums_text)
    gpg(keys.home, f"--local-user={keys.vendor}", "--detach-sign", str(data))
    forged = sums_text.replace(b"a", b"b", 1) if b"a" in sums_text else b"0" + sums_text
    attacks = [
        ({"SHA256SUMS": forged}, "BAD signature"),
        ({"SHA256SUMS.gpg": b""}, "Failed to retrieve signature file"),  # not found
        ({"SHA256SUMS.gpg": Path(f"{data}.sig").read_bytes()}, "No public key"),
    ]
    for attack, why in attacks:
        tampered.clear()
        tampered.update(attack)
        refused = sysupdate("check-new")
        assert refused.returncode != 0 and refused.stdout.strip() != VERSION, refused.stderr
        assert why in refused.stderr, refused.stderr
        assert not list((host / layout.EXTENSIONS_DIR.lstrip("/")).iterdir())
    tampered.clear()
    ok(sysupdate("update"))
    link = host / layout.CURRENT_SYMLINK.lstrip("/")
    assert link.resolve().name == f"alloy-{VERSION}-amd64.raw"


def test_ci_publishes_every_file_a_signed_release_adds() -> None:
    workflow = (REPO / ".github/workflows/ci.yml").read_text()
    publish = workflow.split("- name: Publish", 1)[1]
    for name in SIGNED:
        assert name in publish, name
    assert "secrets.RELEASE_SIGNING_KEY" in workflow and "INVOKE_SIGN_KEY" in workflow


def test_nox_release_signs_and_the_builds_never_see_the_key(
    release: Release, cli_env: dict[str, str], keys: Keys, tmp_path: Path
) -> None:
    """The real session: a build cell given --sign-key would stop at an unknown flag."""
    args = ["-s", "release", "--", f"--publish-url={PUBLISH_URL}"]
    args += [f"--sign-key={keys.plain}", f"--gnupg-home={keys.home}"]
    sessions = nox_sessions(args, cli_env, tmp_path / "output", VERSION)
    assert sessions == [f"build-matrix({VERSION}-amd64)", "release"]
    output = tmp_path / "output"
    verdict = gpgv(output / SIGNED[1], output / "SHA256SUMS.gpg", output / "SHA256SUMS")
    assert verdict.returncode == 0, verdict.stderr
    feed = output / "streams" / ".".join(VERSION.split(".")[:2])  # its line's stream: signed
    verdict = gpgv(feed / SIGNED[1], feed / "SHA256SUMS.gpg", feed / "SHA256SUMS")
    assert verdict.returncode == 0, verdict.stderr
