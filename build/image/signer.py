"""The verity signer of a DDI: its key (a file or a PKCS#11 token) and certificate, checked
when made, signing a root hash into the DDI's signature partition."""

from __future__ import annotations

from pathlib import Path

from build.formats.recipe import Signing
from build.formats.veritysig import signature_partition
from build.keys.veritycert import load_certificate
from build.keys.veritykey import check_signer
from build.keys.veritysign import sign_root_hash
from build.model.keysource import VerityKey


def signer(key: VerityKey, certificate: Path) -> Signing:
    """Signing with `key` (its passphrase from the environment) as `certificate`, both checked
    first: a key that does not open or is not the certificate's is refused before a download."""
    loaded = load_certificate(certificate)
    check_signer(key, loaded)

    def sign(root_hash: bytes) -> bytes:
        signature = sign_root_hash(root_hash, key, loaded)
        return signature_partition(root_hash, signature, loaded.der)

    return Signing(sign, loaded.fingerprint)
