"""The original script's steps, what our figures are measured against: its build (curl, unzip,
mksquashfs with its flags, sha256sum, cp) and its download (curl, sha256sum -c, unzip)."""

from __future__ import annotations

import posixpath
from pathlib import Path

from benchmarks.common import Case, fresh, timed
from build.config.spec import NAME
from build.image.content import IMAGE_BINARY

# The original script's mksquashfs flags (its block size: mksquashfs's default, 128 KiB).
ORIGINAL_FLAGS = ["-comp", "xz", "-Xdict-size", "100%", "-noappend"]
ORIGINAL_IMAGE = f"{NAME}.raw"


def original_image(case: Case, i: int = 0) -> Path:
    return case.work / f"orig{i}" / ORIGINAL_IMAGE


def original_build(case: Case, i: int) -> float:
    """Seconds the original script's build steps take, into a fresh directory of their own."""
    d = fresh(case.work / f"orig{i}")
    spec = case.spec(f"orig{i}")
    flags = " ".join(ORIGINAL_FLAGS)
    image = ORIGINAL_IMAGE
    script = (
        f"cd {d} && curl -fsSL -o {NAME}.zip {spec.zip_url}"
        f" && unzip -q {NAME}.zip && mkdir -p tree/{posixpath.dirname(IMAGE_BINARY)} out"
        f" && mv {spec.member} tree/{IMAGE_BINARY}"
        f" && mksquashfs tree {image} {flags} -no-progress >/dev/null"
        f" && sha256sum {image} > {image}.sha256 && cp {image} {image}.sha256 out/"
    )
    return timed(script)


def original_download(case: Case, i: int) -> float:
    """Seconds to fetch, verify and unpack the release zip the original way."""
    d = fresh(case.work / f"curl{i}")
    spec = case.spec(f"curl{i}")
    return timed(
        f"cd {d} && curl -fsSL -o {spec.zip_name} {spec.zip_url}"
        f" && curl -fsSL -o SHA256SUMS {spec.sums_url}"
        f" && sha256sum -c --ignore-missing --quiet SHA256SUMS && unzip -q {spec.zip_name}"
    )
