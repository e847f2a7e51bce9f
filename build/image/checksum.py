"""The checksum step: an image's `.sha256` file, and SHA256SUMS over an output directory's
images (sha256sum's format: build/core/sums.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from build.config.spec import parse_output_name
from build.core.errors import BuildError
from build.core.fileio import write_text_atomic
from build.core.safeio import read_regular
from build.core.sums import NOT_OURS_HINT, file_sha256, parse_sums, sums_line
from build.model import manifest
from build.model.names import STAGING, SUMS_FILE, checksum_file, default_output_dir

if TYPE_CHECKING:
    from build.config.context import StepContext

MAX_CHECKSUM_FILE = 4096


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
            raise _stale(output_dir, image, sha256)
        found.append((image, sha256))
    return found


def _stale(output_dir: Path, image: Path, sha256: str) -> BuildError:
    """An image that does not match its .sha256: packed alone by this tool (a single `invoke
    pack`, recorded as written), or changed by something else since."""
    own = checksum_file(image)
    written = manifest.load(output_dir).files.get(manifest.relative(output_dir, image))
    if written != sha256 or parse_output_name(image.name) is None:
        return BuildError(
            f"{image} does not match {own.name}",
            "the image changed after it was built or copied; rebuild it with --force",
        )
    return packed_alone(image, f"its {own.name} and verify are out of date")


def packed_alone(image: Path, what: str) -> BuildError:
    """`image` was written by a single `invoke pack` (README's own example), which runs no step
    after it: `what` is out of date, and `invoke all` with the same options brings it up."""
    version, arch = parse_output_name(image.name) or ("VERSION", None)
    build = f"invoke all --version={version}" + (f" --arch={arch}" if arch else "")
    if image.parent.absolute() != default_output_dir().absolute():  # from below the checkout too
        build += f" --output-dir={image.parent}"
    return BuildError(
        f"{image} was packed alone (invoke pack), so {what}",
        f"run {build} with the options you packed it with, then this again",
    )


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
