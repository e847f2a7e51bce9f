"""Version streams and a floor (invoke release --stream=X.Y, --min-version=X.Y.Z).

A stream is a feed of its own in STREAMS_DIR/X.Y/ of the output directory, laid out as the
default one: its images (hard links to the output directory's, so no bytes are copied; a copy
where a link cannot be made), SHA256SUMS, index.json, transfers and Butane config. Image names
keep their full version, so the transfers' MatchPattern (alloy-@v-ARCH.raw) reads 1.19.2 as
1.19.2, and MinVersion=, pruning and rollback compare whole versions."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from build.config.spec import parse_output_name
from build.core.errors import BuildError
from build.core.fileio import atomic_path
from build.model import manifest
from build.model.names import INDEX, STREAMS_DIR
from build.model.versions import MINOR_PATTERN, minor_key, minor_of, version_key


class Published(Protocol):
    """What this module needs of an image (build/release/publish.py's Image)."""

    @property
    def path(self) -> Path: ...
    @property
    def version(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def compat_of(self) -> str | None: ...


@dataclass(frozen=True)
class Named:
    """An image known by its file name alone (invoke sums, which reads no build info)."""

    path: Path
    version: str
    arch: str
    compat_of: str | None


def directory(output_dir: Path, stream: str) -> Path:
    return output_dir / STREAMS_DIR / stream


def url_path(stream: str) -> str:
    """What a stream adds to --publish-url and --update-url."""
    return f"{STREAMS_DIR}/{stream}/"


Image = TypeVar("Image", bound=Published)


def line_images(output_dir: Path, images: Sequence[Image], stream: str) -> list[Image]:
    """The versioned images of the minor line `stream` (never a compat name: hosts take
    versioned names only); refused in one line when there is none, saying that a feed an
    earlier release wrote for it stays as it was (its linked images keep their bytes)."""
    found = [i for i in images if i.compat_of is None and minor_of(i.version) == stream]
    if not found:
        versions = sorted({i.version for i in images if i.compat_of is None}, key=version_key)
        lines = sorted({minor_of(v) for v in versions}, key=minor_key)
        earlier = sorted(path.name for path in directory(output_dir, stream).glob("*.raw"))
        kept = (
            f"; {url_path(stream)} keeps serving its earlier feed ({', '.join(earlier)}) "
            "as it was, until invoke clean removes it"
            if earlier
            else ""
        )
        raise BuildError(
            f"no images of stream {stream} ({stream}.Z) in {output_dir}, which holds "
            f"{', '.join(lines) or 'no versioned images'}{kept}",
            f"build one first, e.g. invoke all --version={stream}.0, or give --stream one of "
            "those lines; nothing was written",
        )
    return found


def named(path: Path) -> Named | None:
    """An image of the output directory by its name (version, architecture), or None."""
    parsed = parse_output_name(path.name)
    if parsed is None:
        return None
    version, arch = parsed
    return Named(path, version, arch or "", None if arch else "compat")


def published(output_dir: Path) -> list[str]:
    """The streams whose feed a release wrote (their index.json is the tool's, unchanged), in
    version order: what the default feed's index.json lists."""
    recorded = manifest.load(output_dir)
    found = [
        path.parent.name
        for path in (output_dir / STREAMS_DIR).glob(f"*/{INDEX}")
        if MINOR_PATTERN.fullmatch(path.parent.name)
        and not path.parent.is_symlink()  # never followed out of the output directory
        and recorded.owns_file(output_dir, manifest.relative(output_dir, path))
    ]
    return sorted(found, key=minor_key)


def listing(streams: Iterable[str]) -> list[dict[str, str]]:
    """index.json's "streams": each stream and where its own index is, relative to the root."""
    return [{"stream": stream, "index": f"{url_path(stream)}{INDEX}"} for stream in streams]


def orphans(output_dir: Path, stream: str) -> list[str]:
    """The images a stream's feed offers that are no longer in the output directory (removed
    by hand: its links keep their bytes, and hosts still take them)."""
    feed = directory(output_dir, stream)
    return sorted(p.name for p in feed.glob("*.raw") if not (output_dir / p.name).exists())


def refuse_floor_above_newest(min_version: str | None, newest: dict[str, str], where: str) -> None:
    """A floor above an architecture's newest published version would leave its hosts with
    nothing to install, ever: refused. `newest`: arch -> its newest version in the feed."""
    if min_version is None:
        return
    below = {arch: v for arch, v in newest.items() if version_key(v) < version_key(min_version)}
    if below:
        shown = ", ".join(f"{v} for {arch}" for arch, v in sorted(below.items()))
        raise BuildError(
            f"--min-version={min_version} is above every version {where} offers (newest: "
            f"{shown}): its hosts would never install anything again",
            f"give a --min-version at most {min(below.values(), key=version_key)}, or build "
            f"{min_version} first; nothing was written",
        )


def link_images(output_dir: Path, stream_dir: Path, images: Iterable[Published]) -> list[Path]:
    """Each image into `stream_dir` under its own name, atomically: a hard link (no bytes
    copied), or a copy where the file system refuses one. Returns the paths written."""
    written = []
    for image in images:
        target = stream_dir / image.path.name
        if os.path.exists(target) and os.path.samefile(target, image.path):
            written.append(target)
            continue
        with atomic_path(target) as tmp:
            link_or_copy(image.path, tmp)
        written.append(target)
    return written


def link_or_copy(source: Path, tmp: Path) -> None:
    """`source`'s bytes under the temporary `tmp` (atomic_path's): a hard link, or a copy
    where the file system refuses one."""
    tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or links refused: the bytes themselves
        shutil.copyfile(source, tmp)


def remove_stale_images(output_dir: Path, stream_dir: Path, keep: Iterable[Path]) -> None:
    """Images an earlier release of this stream linked that are no longer in it (cleaned from
    the output directory): removed where the manifest says they are the tool's."""
    recorded = manifest.load(output_dir)
    kept = {path.name for path in keep}
    for path in sorted(stream_dir.glob("*.raw")):
        if path.name in kept:
            continue
        recorded.remove_if_owned(output_dir, path, "release", "no longer in the output directory")
