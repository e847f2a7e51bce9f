"""A DDI's verity signature partition, read within bounds: the JSON object systemd-repart writes
(repart.c partition_format_verity_sig(): sd_json_buildo() of "rootHash" (hex),
"certificateFingerprint" (hex of x509_fingerprint(), the sha256 of the DER certificate) and
"signature" (base64 of the DER PKCS#7), formatted compact, padded with NULs by strgrowpad0() to
the partition's size, which is VERITY_SIG_SIZE = HARD_MIN_SIZE*4 = 16 KiB), refusing anything
else: a parser between us and a signature check must not be the gap an attacker walks through.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from build.core.safeio import Malformed

PARTITION_BYTES = 16 * 1024  # repart.c VERITY_SIG_SIZE
KEYS = ("rootHash", "certificateFingerprint", "signature")  # repart's order
ROOT_HASH_BYTES = 32  # sha256, the only hash repart's verity uses
FINGERPRINT_BYTES = 32  # repart.c X509_FINGERPRINT_SIZE (sha256)
_LOWER_HEX = re.compile(r"[0-9a-f]*")  # hexmem() writes lowercase; sd_json's HEX too


@dataclass(frozen=True)
class VeritySignature:
    root_hash: bytes
    certificate_fingerprint: bytes  # sha256 of the signing certificate, DER
    signature: bytes  # DER PKCS#7, detached, over the root hash in lowercase hex


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise Malformed(f"its signature JSON names {name!r} twice")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise Malformed(f"its signature JSON holds {name}, which is not JSON")


def _hex(document: dict[str, Any], key: str, size: int) -> bytes:
    value = document[key]
    if not isinstance(value, str) or len(value) != 2 * size or not _LOWER_HEX.fullmatch(value):
        raise Malformed(f"its signature's {key} is not {size} bytes in lowercase hex")
    return bytes.fromhex(value)


def _base64(document: dict[str, Any]) -> bytes:
    value = document["signature"]
    if not isinstance(value, str) or not value:
        raise Malformed("its signature's signature is not a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if base64.b64encode(decoded).decode("ascii") != value:  # only the one way repart writes it
        raise Malformed("its signature's signature is not valid base64")
    return decoded


def parse_signature_partition(content: bytes) -> VeritySignature:
    """The root hash, certificate fingerprint and signature in a verity signature partition's
    `content` (all of it); Malformed unless it is at most 16 KiB of one JSON object with
    exactly repart's three keys, then only NULs (at least one)."""
    if len(content) > PARTITION_BYTES:
        raise Malformed(f"its signature partition is {len(content)} bytes, over {PARTITION_BYTES}")
    end = content.find(b"\0")
    if end < 0:
        raise Malformed("its signature partition's JSON is not followed by NUL padding")
    if content[end:].count(b"\0") != len(content) - end:
        raise Malformed("its signature partition holds bytes other than NULs after its JSON")
    try:
        text = content[:end].decode("ascii")
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise Malformed("its signature partition's JSON is not ASCII") from None
    except json.JSONDecodeError as error:
        raise Malformed(f"its signature partition is not JSON ({error.msg})") from None
    if not isinstance(document, dict) or sorted(document) != sorted(KEYS):
        found = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise Malformed(f"its signature JSON has {found}, not the keys {', '.join(KEYS)}")
    return VeritySignature(
        root_hash=_hex(document, "rootHash", ROOT_HASH_BYTES),
        certificate_fingerprint=_hex(document, "certificateFingerprint", FINGERPRINT_BYTES),
        signature=_base64(document),
    )
