"""What a format's packer is given: the image's identity and the --compression asked for.

The pack step (build/image/pack.py) makes one from the build's options; a format that needs more
(a signing key and certificate, for a signed image) takes it here, not from the build's options.
"""

from __future__ import annotations

from dataclasses import dataclass

from build.model.arch import Arch


@dataclass(frozen=True)
class Recipe:
    name: str  # the extension's name ("alloy")
    version: str
    arch: Arch
    compression: str  # one of the format's choices (Format.compressions)
