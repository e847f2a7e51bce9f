"""Writing a DDI's verity signature partition as systemd-repart does: repart.c
partition_format_verity_sig() formats {"rootHash", "certificateFingerprint", "signature"} in
that order with sd_json_variant_format(v, 0, ...) (compact: no spaces, no newline), refuses it
unless strlen+1 fits the partition, and pads it with NULs (strgrowpad0()) to the partition's
16 KiB (build/read/veritysig.py has the layout and its reader)."""

from __future__ import annotations

import base64
import hashlib
import json

from build.core.errors import BuildError
from build.read.veritysig import PARTITION_BYTES, ROOT_HASH_BYTES


def certificate_fingerprint(certificate_der: bytes) -> bytes:
    """repart.c x509_fingerprint() (openssl-util.c): sha256 of the certificate's DER bytes."""
    return hashlib.sha256(certificate_der).digest()


def signature_partition(root_hash: bytes, signature_der: bytes, certificate_der: bytes) -> bytes:
    """The 16 KiB signature partition for `root_hash` signed (DER PKCS#7) by the certificate
    `certificate_der`: the same bytes repart writes for them."""
    if len(root_hash) != ROOT_HASH_BYTES:
        raise ValueError(f"a root hash has {ROOT_HASH_BYTES} bytes, not {len(root_hash)}")
    document = {
        "rootHash": root_hash.hex(),
        "certificateFingerprint": certificate_fingerprint(certificate_der).hex(),
        "signature": base64.b64encode(signature_der).decode("ascii"),
    }
    text = json.dumps(document, separators=(",", ":")).encode("ascii")
    if len(text) + 1 > PARTITION_BYTES:
        raise BuildError(
            f"the verity signature is {len(text)} bytes of JSON, more than the "
            f"{PARTITION_BYTES - 1} a signature partition holds",
            "sign with a key whose signature is smaller (RSA up to 4096 bits, or ECDSA), "
            "and a certificate without a long chain",
        )
    return text.ljust(PARTITION_BYTES, b"\0")
