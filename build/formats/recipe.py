"""What a format's packer is given: the image's identity and the --compression asked for.

The pack step (build/image/pack.py) makes one from the build's options; a format that needs more
(a signing key and certificate, for a signed image) takes it here, not from the build's options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from build.model.arch import Arch


@dataclass(frozen=True)
class Signing:
    """How a DDI's dm-verity root hash is signed: made by the pack step from --verity-key and
    --verity-cert (the key's path is the pack step's business, never recorded)."""

    # root hash -> the 16 KiB signature partition (the JSON systemd-repart writes, NUL-padded)
    sign: Callable[[bytes], bytes]
    certificate_fingerprint: str  # sha256 of the certificate's DER, lowercase hex


@dataclass(frozen=True)
class Recipe:
    name: str  # the extension's name ("alloy")
    version: str
    arch: Arch
    compression: str  # one of the format's choices (Format.compressions)
    # A wrapping format's: the format of the file system it wraps (--ddi-filesystem), or None
    filesystem: str | None = None
    signing: Signing | None = None  # a wrapping format's signer; None: unsigned
