"""Signing a verity root hash (build/keys/veritysign.py) into the bytes systemd-repart writes
(PKCS7_sign over the lowercase hex root hash, detached, no attributes, binary, DER), and the
offline check systemd makes: any other key, certificate or root hash fails in one line; a
passphrase reaches openssl through its environment, never its argv."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import build.keys.veritysign as veritysign
from build.core.errors import BuildError
from build.keys.veritycert import load_certificate
from build.keys.veritysign import (
    VERITY_PASSPHRASE_ENV,
    check_signature,
    sign_root_hash,
    signed_text,
)
from build.model.ddi import SEED_NAMESPACE, build_seed
from tests.veritykeys import PASSPHRASE, key_set

pytestmark = pytest.mark.needs("openssl")

ROOT = bytes.fromhex("9f" * 16 + "0a" * 16)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return key_set(tmp_path_factory.mktemp("veritykeys"))


def pkcs7_sign_as_repart(key: Path, cert: Path, text: bytes) -> bytes:
    """repart.c sign_verity_roothash()'s calls, made through libcrypto itself."""
    library = ctypes.util.find_library("crypto")
    assert library, "libcrypto (the openssl package's library) is missing"
    crypto = ctypes.CDLL(library)
    pointer = ctypes.c_void_p
    for name, arguments in {
        "BIO_new_mem_buf": [ctypes.c_char_p, ctypes.c_int],
        "PEM_read_bio_X509": [pointer] * 4,
        "PEM_read_bio_PrivateKey": [pointer] * 4,
        "PKCS7_sign": [pointer] * 4 + [ctypes.c_int],
    }.items():
        getattr(crypto, name).restype = pointer
        getattr(crypto, name).argtypes = arguments
    crypto.i2d_PKCS7.restype = ctypes.c_int
    crypto.i2d_PKCS7.argtypes = [pointer, ctypes.POINTER(pointer)]
    # A memory BIO reads the caller's buffer in place: each buffer stays referenced here.
    cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    x509 = crypto.PEM_read_bio_X509(crypto.BIO_new_mem_buf(cert_pem, -1), None, None, None)
    pkey = crypto.PEM_read_bio_PrivateKey(crypto.BIO_new_mem_buf(key_pem, -1), None, None, None)
    detached, binary, noattr = 0x40, 0x80, 0x100  # <openssl/pkcs7.h>
    data = crypto.BIO_new_mem_buf(text, len(text))
    p7 = crypto.PKCS7_sign(x509, pkey, None, data, detached | noattr | binary)
    assert x509 and pkey and p7
    out = pointer()
    size = crypto.i2d_PKCS7(p7, ctypes.byref(out))
    assert size > 0 and out.value
    return ctypes.string_at(out.value, size)


def test_the_signed_text_is_the_lowercase_hex_root_hash_without_a_newline() -> None:
    assert signed_text(ROOT) == b"9f" * 16 + b"0a" * 16
    with pytest.raises(ValueError, match="32 bytes, not 16"):
        signed_text(ROOT[:16])


def test_the_signature_is_the_bytes_repart_s_pkcs7_sign_writes(keys: Any) -> None:
    key, cert = keys["ours"]
    signature = sign_root_hash(ROOT, key, load_certificate(cert))
    assert signature == pkcs7_sign_as_repart(key, cert, signed_text(ROOT))
    cms = subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-noattr", "-outform", "DER",
         "-signer", str(cert), "-inkey", str(key)],
        input=signed_text(ROOT), check=True, capture_output=True,
    ).stdout  # fmt: skip
    assert cms != signature  # why smime and not cms: CMS drops the digest's NULL parameters


def test_an_rsa_key_signs_one_root_hash_into_the_same_bytes_twice(keys: Any) -> None:
    key, cert = keys["ours"]
    assert sign_root_hash(ROOT, key, load_certificate(cert)) == sign_root_hash(
        ROOT, key, load_certificate(cert)
    )
    assert sign_root_hash(ROOT, key, load_certificate(cert)) != sign_root_hash(
        ROOT[::-1], key, load_certificate(cert)
    )


def test_a_signature_verifies_against_its_certificate_only(keys: Any) -> None:
    key, cert = keys["ours"]
    signature = sign_root_hash(ROOT, key, load_certificate(cert))
    check_signature(ROOT, signature, load_certificate(cert))  # a self-signed certificate passes
    with pytest.raises(BuildError) as raised:
        check_signature(ROOT, signature, load_certificate(keys["other"][1]))
    said = str(raised.value)
    assert said.startswith(f"the verity signature of root hash {ROOT.hex()} does not verify")
    assert "\n" not in said


def test_another_key_s_signature_fails_though_it_carries_its_certificate(keys: Any) -> None:
    key, cert = keys["other"]
    with pytest.raises(BuildError, match="does not verify against"):
        check_signature(
            ROOT,
            sign_root_hash(ROOT, key, load_certificate(cert)),
            load_certificate(keys["ours"][1]),
        )


def test_a_flipped_root_hash_fails(keys: Any) -> None:
    key, cert = keys["ours"]
    signature = sign_root_hash(ROOT, key, load_certificate(cert))
    flipped = bytes([ROOT[0] ^ 1]) + ROOT[1:]
    with pytest.raises(BuildError, match="does not verify against"):
        check_signature(flipped, signature, load_certificate(cert))


def test_a_flipped_signature_byte_fails(keys: Any) -> None:
    key, cert = keys["ours"]
    signature = bytearray(sign_root_hash(ROOT, key, load_certificate(cert)))
    signature[-5] ^= 1  # inside the RSA signature value, the DER's last field
    with pytest.raises(BuildError, match="does not verify against"):
        check_signature(ROOT, bytes(signature), load_certificate(cert))


def test_a_key_that_is_not_the_certificate_s_is_refused_in_one_line(keys: Any) -> None:
    with pytest.raises(BuildError) as raised:
        sign_root_hash(ROOT, keys["other"][0], load_certificate(keys["ours"][1]))
    said = str(raised.value)
    assert said.startswith("cannot sign the verity root hash with ")
    assert "is the private key of --verity-cert" in said
    assert "\n" not in said


@pytest.mark.parametrize("which", ["key", "certificate"])
def test_an_unreadable_key_or_certificate_is_refused_in_one_line(
    which: str, keys: Any, tmp_path: Path
) -> None:
    key, cert = keys["ours"]
    missing = tmp_path / "missing.pem"
    given = (missing, cert) if which == "key" else (key, missing)
    with pytest.raises(BuildError) as raised:
        sign_root_hash(ROOT, given[0], load_certificate(given[1]))
    said = str(raised.value)
    assert said.startswith(f"cannot read the verity {which} {missing}")
    assert "No such file or directory" in said and "\n" not in said


def test_a_certificate_that_is_not_one_is_refused_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(BuildError) as raised:
        load_certificate(junk)
    assert str(raised.value).startswith(f"cannot read the verity certificate {junk}")
    assert "\n" not in str(raised.value)


def test_the_certificate_s_der_is_openssl_s(keys: Any) -> None:
    """Read once by load_certificate: signing and checking use these bytes, not the file."""
    cert = keys["ours"][1]
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "DER"], check=True, capture_output=True
    ).stdout
    assert load_certificate(cert).der == der and der[0] == 0x30


def recorded_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Sequence[str], dict[str, str]]]:
    runs: list[tuple[Sequence[str], dict[str, str]]] = []
    real = veritysign.run_bytes

    def record(argv: Sequence[str], **how: Any) -> bytes:
        runs.append((list(argv), dict(how.get("env") or {})))
        return real(argv, **how)

    monkeypatch.setattr(veritysign, "run_bytes", record)
    return runs


def test_a_passphrase_reaches_openssl_by_its_environment_never_argv(
    keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = keys["locked"]
    monkeypatch.setenv(VERITY_PASSPHRASE_ENV, PASSPHRASE)
    runs = recorded_runs(monkeypatch)
    signature = sign_root_hash(ROOT, key, load_certificate(cert))
    check_signature(ROOT, signature, load_certificate(cert))
    argv, env = runs[0]
    assert all(PASSPHRASE not in word for argv, _ in runs for word in argv)
    assert argv[argv.index("-passin") + 1] == f"env:{VERITY_PASSPHRASE_ENV}"
    assert env[VERITY_PASSPHRASE_ENV] == PASSPHRASE


def test_a_locked_key_without_its_passphrase_is_refused_not_asked_for(
    keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VERITY_PASSPHRASE_ENV, raising=False)
    with pytest.raises(BuildError) as raised:
        sign_root_hash(ROOT, keys["locked"][0], load_certificate(keys["locked"][1]))
    assert f"set {VERITY_PASSPHRASE_ENV}" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_wrong_passphrase_is_refused_in_one_line(
    keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VERITY_PASSPHRASE_ENV, "wrong")
    with pytest.raises(BuildError, match=r"^cannot sign the verity root hash"):
        sign_root_hash(ROOT, keys["locked"][0], load_certificate(keys["locked"][1]))


# --- the build's --seed (build/model/ddi.py) ---


def test_the_seed_is_uuid5_of_name_version_and_arch() -> None:
    seed = build_seed("alloy", "1.10.2", "amd64")
    assert seed == uuid.uuid5(SEED_NAMESPACE, "alloy 1.10.2 amd64")
    assert (
        str(SEED_NAMESPACE) == "1820f84f-9025-43ac-81cb-3793c3d7e900"
    )  # changing it moves every DDI
    assert seed == build_seed("alloy", "1.10.2", "amd64")
    others = {build_seed("alloy", "1.10.3", "amd64"), build_seed("alloy", "1.10.2", "arm64")}
    assert seed not in others and len(others) == 2


@pytest.mark.parametrize(
    "parts", [("alloy", "1.10.2 arm64", ""), ("", "1", "amd64"), ("a b", "1", "x")]
)
def test_a_seed_of_ambiguous_words_is_refused(parts: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError, match="single words"):
        build_seed(*parts)


def test_signing_and_checking_use_the_certificate_as_read_not_the_file_again(
    keys: Any, tmp_path: Path
) -> None:
    key, cert = keys["ours"]
    given = tmp_path / "verity.crt"
    given.write_bytes(cert.read_bytes())
    loaded = load_certificate(given)
    given.write_bytes(keys["other"][1].read_bytes())  # the file changes after it was read
    signature = sign_root_hash(ROOT, key, loaded)
    check_signature(ROOT, signature, loaded)
    with pytest.raises(BuildError, match="does not verify against"):
        check_signature(ROOT, signature, load_certificate(given))
