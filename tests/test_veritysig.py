"""The verity signature partition (build/formats/veritysig.py, build/read/veritysig.py): repart's
JSON in repart's order, compact, NUL-padded to 16 KiB, and a reader that refuses every other
shape in one line."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from build.core.errors import BuildError
from build.core.safeio import Malformed, refusing_malformed
from build.formats.veritysig import certificate_fingerprint, signature_partition
from build.read.veritysig import PARTITION_BYTES, parse_signature_partition

ROOT = bytes(range(32))
SIGNATURE = b"0\x82\x04\x8d" + bytes(range(256)) * 4  # stands in for DER PKCS#7
CERTIFICATE = b"0\x82\x03\x00 a certificate's DER"


def test_the_partition_is_repart_s_compact_json_in_its_order_then_nuls() -> None:
    made = signature_partition(ROOT, SIGNATURE, CERTIFICATE)
    text = (
        '{"rootHash":"' + ROOT.hex() + '","certificateFingerprint":"'
        + hashlib.sha256(CERTIFICATE).hexdigest() + '","signature":"'
        + base64.b64encode(SIGNATURE).decode() + '"}'
    )  # fmt: skip
    assert len(made) == PARTITION_BYTES == 16384
    assert made == text.encode().ljust(16384, b"\0")


def test_what_is_written_reads_back() -> None:
    read = parse_signature_partition(signature_partition(ROOT, SIGNATURE, CERTIFICATE))
    assert read.root_hash == ROOT
    assert read.signature == SIGNATURE
    assert read.certificate_fingerprint == certificate_fingerprint(CERTIFICATE)


def test_a_signature_too_big_for_the_partition_is_refused_in_one_line() -> None:
    with pytest.raises(BuildError) as raised:
        signature_partition(ROOT, bytes(12 * 1024), CERTIFICATE)
    assert "more than the 16383 a signature partition holds" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_root_hash_of_another_size_is_not_written() -> None:
    with pytest.raises(ValueError, match="32 bytes, not 31"):
        signature_partition(ROOT[:31], SIGNATURE, CERTIFICATE)


def padded(text: str | bytes, size: int = PARTITION_BYTES) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return raw.ljust(size, b"\0")


def good(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "rootHash": ROOT.hex(),
        "certificateFingerprint": "ab" * 32,
        "signature": base64.b64encode(SIGNATURE).decode(),
    }
    document.update(changes)
    return {key: value for key, value in document.items() if value is not None}


HOSTILE = {
    "over 16 KiB": (padded(json.dumps(good()), PARTITION_BYTES + 1), "over 16384"),
    "no NUL after the JSON": (json.dumps(good()).encode(), "not followed by NUL"),
    "all of it JSON, no NUL": (
        json.dumps(good()).encode().ljust(PARTITION_BYTES, b" "),
        "not followed by NUL",
    ),
    "bytes after the NULs": (padded(json.dumps(good()))[:-1] + b"x", "other than NULs"),
    "empty": (bytes(PARTITION_BYTES), "not JSON"),
    "not JSON": (padded("rootHash=00"), "not JSON"),
    "not ASCII": (padded('{"rootHash":"\xe9"}'), "not ASCII"),
    "a list": (padded("[1, 2]"), "not the keys"),
    "a key missing": (padded(json.dumps(good(signature=None))), "not the keys"),
    "an extra key": (padded(json.dumps(good(extra="x"))), "not the keys"),
    "a key twice": (padded(json.dumps(good())[:-1] + ',"rootHash":"' + "00" * 32 + '"}'), "twice"),
    "NaN": (padded(json.dumps(good())[:-1] + ',"x":NaN}'), "not JSON"),
    "root hash 31 bytes": (padded(json.dumps(good(rootHash="00" * 31))), "32 bytes"),
    "root hash 64 bytes": (padded(json.dumps(good(rootHash="00" * 64))), "32 bytes"),
    "root hash uppercase": (padded(json.dumps(good(rootHash="AB" * 32))), "lowercase hex"),
    "root hash not hex": (padded(json.dumps(good(rootHash="zz" * 32))), "lowercase hex"),
    "root hash a number": (padded(json.dumps(good(rootHash=7))), "lowercase hex"),
    "fingerprint short": (
        padded(json.dumps(good(certificateFingerprint="ab"))),
        "certificateFingerprint",
    ),
    "signature not base64": (padded(json.dumps(good(signature="no*base64"))), "base64"),
    "signature cut": (padded(json.dumps(good(signature="QUJ"))), "base64"),
    "signature padded twice": (padded(json.dumps(good(signature="QUJD="))), "base64"),
    "signature with a newline": (padded(json.dumps(good(signature="QUJD\nQUJD"))), "base64"),
    "signature empty": (padded(json.dumps(good(signature=""))), "base64"),
    "signature a list": (padded(json.dumps(good(signature=["QQ=="]))), "base64"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_signature_partition_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    content, said = HOSTILE[name]
    image = tmp_path / "alloy.raw"
    with pytest.raises(BuildError) as raised, refusing_malformed(image, "DDI", "alloy-sysext"):
        parse_signature_partition(content)
    assert said in str(raised.value)
    assert str(raised.value).startswith(f"{image} is not a valid DDI image: ")
    assert "\n" not in str(raised.value)


def test_the_reader_raises_malformed_not_a_bare_error() -> None:
    with pytest.raises(Malformed):
        parse_signature_partition(b"{}")
