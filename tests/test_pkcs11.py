"""--verity-key=pkcs11:URI: a DDI signed by a key that never leaves its token (SoftHSM2 here, in a
throwaway SOFTHSM2_CONF), through openssl's pkcs11 engine: it verifies against the certificate,
two builds are the same bytes (RSA), and the PIN never reaches a command line or a file. A wrong
PIN, a key not on the token, a key that is not the certificate's, a missing engine and a URI
holding its PIN are each refused in one line before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from build.keys.veritycert import load_certificate
from build.keys.veritysign import VERITY_PASSPHRASE_ENV as PASSPHRASE_ENV
from build.keys.veritysign import check_signature, sign_root_hash
from build.model.keysource import TokenKey
from tests.conftest import VERSION, Invoke
from tests.needs import unavailable
from tests.results import error_line, ok

pytestmark = pytest.mark.needs("softhsm2-util", "pkcs11-tool", "openssl", "mkfs.erofs")
IMAGE = f"alloy-{VERSION}-amd64.raw"
PIN, SO_PIN = "271828", "31415926"
LABEL = "alloy-test"
# Where Debian and Ubuntu put SoftHSM2's PKCS#11 module (pkcs11-tool needs it named).
SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class Token:
    conf: Path  # SOFTHSM2_CONF
    uri: str  # the key the certificate is of
    other_uri: str  # another key on the token
    cert: Path
    pin_file: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf), PASSPHRASE_ENV: PIN}


def key_uri(label: str) -> str:
    return f"pkcs11:token={LABEL};object={label};type=private"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    """A SoftHSM2 token with two RSA keys made on it, and a certificate of the first made
    through openssl's engine, as a user with a real token would."""
    if subprocess.run(["openssl", "engine", "-t", "pkcs11"], capture_output=True).returncode:
        unavailable("openssl has no pkcs11 engine (apt-get install libengine-pkcs11-openssl)")
    module = next((path for path in SOFTHSM_MODULES if Path(path).exists()), None)
    if module is None:
        unavailable(f"no SoftHSM2 module at {' or '.join(SOFTHSM_MODULES)}")
    where = tmp_path_factory.mktemp("token")
    (where / "tokens").mkdir()
    conf = where / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {where / 'tokens'}\nobjectstore.backend = file\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), PASSPHRASE_ENV: PIN}
    pin_file = where / "pin"
    pin_file.write_text(PIN)

    def run(*argv: str) -> None:
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)

    run(
        "softhsm2-util",
        "--init-token",
        "--free",
        "--label",
        LABEL,
        "--pin",
        PIN,
        "--so-pin",
        SO_PIN,
    )
    for number, label in enumerate(("verity", "other"), 1):
        login = ("--module", module, "--token-label", LABEL, "--login", "--pin", PIN)
        run("pkcs11-tool", *login, "--keypairgen", "--key-type", "rsa:2048", "--label", label,
            "--id", f"{number:02x}")  # fmt: skip
    cert = where / "verity.crt"
    run("openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine",
        "-key", key_uri("verity"), "-passin", f"env:{PASSPHRASE_ENV}", "-subj", "/CN=token",
        "-days", "3650", "-out", str(cert))  # fmt: skip
    return Token(conf, key_uri("verity"), key_uri("other"), cert, pin_file)


def nothing_written(tmp_path: Path) -> None:
    """No output, no build cache ($XDG_CACHE_HOME/alloy-sysext). $XDG_CACHE_HOME itself may
    appear, empty: a PKCS#11 module that p11-kit's proxy loads for the engine beside SoftHSM2's
    (OpenSC's, which the tests' pkcs11-tool brings) makes it when openssl fails on a wrong PIN."""
    assert not (tmp_path / "output").exists()
    assert not (tmp_path / "cache" / "alloy-sysext").exists()
    assert not any((tmp_path / "cache").glob("**/*"))


def argv_logging_openssl(where: Path) -> tuple[Path, dict[str, str]]:
    """An openssl on PATH that logs its argv, then runs the real one; (log, environment)."""
    real = shutil.which("openssl")
    assert real
    log = where / "argv.log"
    wrapper = where / "bin" / "openssl"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    return log, {"PATH": f"{wrapper.parent}:{os.environ['PATH']}"}


def test_a_token_key_signs_a_ddi_that_verifies_and_builds_the_same_bytes_twice(
    invoke: Invoke, tmp_path: Path, token: Token
) -> None:
    log, logging = argv_logging_openssl(tmp_path)
    signed = ("--format=ddi", f"--verity-key={token.uri}", f"--verity-cert={token.cert}")
    out = ok(invoke("all", *signed, "--output-dir=one", env={**token.env, **logging})).stdout
    assert "ok   signature:" in out and "FAIL" not in out
    one, two = tmp_path / "one" / IMAGE, tmp_path / "two" / IMAGE
    checked = ok(invoke("verify", f"--image={one}", f"--verity-cert={token.cert}")).stdout
    assert "ok   signature:" in checked
    # The same key, another directory: RSA signs deterministically, so the same bytes.
    ok(invoke("all", *signed, "--output-dir=two", env=token.env))
    assert one.read_bytes() == two.read_bytes()
    # The key went to openssl through its engine; the PIN through the environment only.
    logged = log.read_text()
    assert f"-engine pkcs11 -keyform engine -inkey {token.uri}" in logged
    assert f"-passin env:{PASSPHRASE_ENV}" in logged and PIN not in logged
    info = json.loads((tmp_path / "one" / f"{IMAGE}.buildinfo.json").read_text())
    assert info["verity_signed"] is True
    # Nothing the builds wrote (outputs, stamps, cache) names the key or holds the PIN.
    for written in (tmp_path / "one", tmp_path / "two", tmp_path / "cache"):
        for path in (path for path in written.rglob("*") if path.is_file()):
            data = path.read_bytes()
            assert token.uri.encode() not in data and PIN.encode() not in data, path


def test_the_pin_can_come_from_the_uris_pin_source(
    token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    root_hash = bytes(range(32))
    key = TokenKey(f"{token.uri}?pin-source=file:{token.pin_file}")
    signature = sign_root_hash(root_hash, key, load_certificate(token.cert))
    check_signature(root_hash, signature, load_certificate(token.cert))
    assert sign_root_hash(root_hash, key, load_certificate(token.cert)) == signature


@pytest.mark.parametrize(
    ("key", "env", "fragments"),
    [
        ("verity", {PASSPHRASE_ENV: "000000"},
         ("cannot open the verity key", "a wrong PIN in $ALLOY_VERITY_KEY_PASSPHRASE")),
        ("verity", {PASSPHRASE_ENV: ""}, ("no PIN in $ALLOY_VERITY_KEY_PASSPHRASE",)),
        ("absent", {}, (f"cannot open the verity key {key_uri('absent')} (--verity-key): no "
                        "such private key on any token",)),
        ("other", {}, (f"the verity key {key_uri('other')} (--verity-key) is not the private "
                       "key of the certificate",)),
        ("verity", {"OPENSSL_ENGINES": "/nonexistent"},
         ("openssl cannot load its pkcs11 engine", "apt-get install libengine-pkcs11-openssl")),
    ],
    ids=["wrong-pin", "no-pin", "no-such-key", "not-the-certificates", "no-engine"],
)  # fmt: skip
def test_a_token_key_that_cannot_sign_is_refused_before_anything_is_written(
    invoke: Invoke,
    tmp_path: Path,
    token: Token,
    key: str,
    env: dict[str, str],
    fragments: tuple[str, ...],
) -> None:
    flags = ("--format=ddi", f"--verity-key={key_uri(key)}", f"--verity-cert={token.cert}")
    line = error_line(invoke("all", *flags, env={**token.env, **env}), *fragments)
    assert "nothing was written" in line
    nothing_written(tmp_path)


def test_a_uri_holding_its_pin_is_refused_without_repeating_it(
    invoke: Invoke, tmp_path: Path, token: Token
) -> None:
    for uri in (f"{token.uri}?pin-value={PIN}", f"{token.uri};PIN-Value={PIN}"):
        result = invoke("all", "--format=ddi", f"--verity-key={uri}", f"--verity-cert={token.cert}",
                        env=token.env)  # fmt: skip
        error_line(result, "the PKCS#11 URI of --verity-key holds its PIN", "pin-source")
        assert PIN not in result.stderr + result.stdout
        nothing_written(tmp_path)
