"""sha256 of files, and sha256sum's text format (SHA256SUMS, .sha256): what the fetch checks a
download against and the build writes beside its images."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from build.core.errors import BuildError
from build.core.safeio import open_regular

_CHUNK = 1 << 20
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")

# What to do about an output that is not the regular file the build wrote.
NOT_OURS_HINT = "remove it, or put the file itself there: only files a build wrote are read"


def file_sha256(path: Path, regular_only: bool = False) -> str:
    """sha256 of the file; with `regular_only`, of a regular file only, never through a symlink
    or from a FIFO or device (safeio.open_regular)."""
    digest = hashlib.sha256()
    with open_regular(path, NOT_OURS_HINT) if regular_only else path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def parse_sums(text: str, source: str = "the SHA256SUMS file") -> dict[str, str]:
    """File name -> lowercase sha256, from sha256sum output (`HEX  NAME` or `HEX *NAME`). A name
    listed twice with different hashes is refused: which one would be the truth? (`source` names
    the file in that error.)"""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line.strip())
        if match:
            name = match.group(2).strip().removeprefix("./")
            sha256 = match.group(1).lower()
            if sums.setdefault(name, sha256) != sha256:
                raise BuildError(
                    f"{source} lists two different sha256 for {name[:100]!r}",
                    "it cannot tell which file is genuine, so nothing was built; "
                    "check where it comes from",
                )
    return sums


def sums_line(sha256: str, name: str) -> str:
    return f"{sha256}  {name}\n"
