"""sha256 of files, and `.sha256` files in sha256sum's format."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from build.config.spec import parse_output_name
from build.core.errors import BuildError
from build.core.fileio import write_text_atomic
from build.core.safeio import open_regular, read_regular
from build.model import manifest
from build.model.names import STAGING, SUMS_FILE, checksum_file

if TYPE_CHECKING:
    from build.config.context import StepContext

_CHUNK = 1 << 20
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


# What to do about an output that is not the regular file the build wrote.
NOT_OURS_HINT = "remove it, or put the file itself there: only files a build wrote are read"
MAX_CHECKSUM_FILE = 4096


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


def write_checksum(checksum: Path, sha256: str, name: str) -> None:
    write_text_atomic(checksum, sums_line(sha256, name))


def read_checksum(checksum: Path) -> str:
    text = read_regular(checksum, MAX_CHECKSUM_FILE, NOT_OURS_HINT).decode("utf-8", "replace")
    sums = parse_sums(text, str(checksum))
    if len(sums) != 1:
        raise BuildError(f"{checksum} is not a one-line sha256sum file", "run with --force")
    return next(iter(sums.values()))


def image_sums(output_dir: Path) -> list[tuple[Path, str]]:
    """(image, sha256) for every image in `output_dir`, sorted by name, each hashed afresh and
    checked against its own .sha256 where one exists."""
    if not output_dir.is_dir():
        raise BuildError(f"no images in {output_dir}", "build them first, e.g. invoke all")
    images = sorted(
        path
        for path in output_dir.iterdir()
        if path.name.endswith(".raw") and parse_output_name(path.name) is not None
    )
    if not images:
        raise BuildError(f"no images in {output_dir}", "build them first, e.g. invoke all")
    found = []
    for image in images:
        sha256 = file_sha256(image, regular_only=True)
        own = checksum_file(image)
        if os.path.lexists(own) and read_checksum(own) != sha256:
            raise BuildError(
                f"{image} does not match {own.name}",
                "the image changed after it was built or copied; rebuild it with --force",
            )
        found.append((image, sha256))
    return found


def sums_text(sums: list[tuple[Path, str]]) -> str:
    """SHA256SUMS's text: exactly the bytes write_sums writes (and a signature signs)."""
    return "".join(sums_line(sha256, image.name) for image, sha256 in sums)


def write_sums(output_dir: Path, sums: list[tuple[Path, str]] | None = None) -> tuple[Path, int]:
    """SHA256SUMS over every image in `output_dir` (`sums` from image_sums, or hashed now), in
    the format sha256sum -c and systemd-sysupdate read; returns the file and how many images it
    lists."""
    manifest.own_subdir(output_dir, STAGING)  # where the file is recorded
    if sums is None:
        sums = image_sums(output_dir)
    path = output_dir / SUMS_FILE
    manifest.refuse_foreign(output_dir, [path])
    write_text_atomic(path, sums_text(sums))
    manifest.record(output_dir, [path])
    return path, len(sums)


def make(runner: StepContext) -> str:
    """The checksum step: the image's .sha256."""
    image = runner.spec.image
    # Hashed when the image was recorded, unless it changed since.
    current = runner.current(image)
    sha256 = manifest.regular_sha256(current) or file_sha256(current)
    runner.write_output(checksum_file(image), sums_line(sha256, image.name))
    return f"wrote {runner.current(checksum_file(image))}"
