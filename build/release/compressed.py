"""invoke release --transport: each versioned image also published compressed beside it
(alloy-1.10.2-amd64.raw.xz), for hosts whose systemd-sysupdate fetches it and installs the
plain image; a stream's feed has its own, beside its own SHA256SUMS (streams/X.Y/, where its
plain images are linked), since sysupdate fetches a source's names at its Path=. The settings
are the transport table's (build/formats/transport.py)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from build.config.spec import NAME
from build.core.errors import BuildError, explain_full_disk
from build.core.fileio import atomic_path, sweep_temps
from build.core.report import listing, say
from build.core.run import run, run_into
from build.core.sums import file_sha256
from build.formats.transport import NONE, THREADS, TRANSPORTS, Transport, environment
from build.model import manifest
from build.model.names import STAGING
from build.release.streams import link_or_copy

# The one filesystem compression a transport is for (EROFS none, and squashfs none: every block
# stored, for hosts without EROFS): compressing a compressed image again (squashfs xz or zstd,
# EROFS lz4hc) saves next to nothing for minutes of CPU.
UNCOMPRESSED = "none"


@dataclass(frozen=True)
class Sending:
    """How a release sends its images: `transport` (--transport, "none": plain only) and,
    with `only` (--transport-only), without the plain images in SHA256SUMS."""

    transport: str = NONE
    only: bool = False

    @property
    def table(self) -> Transport | None:
        return TRANSPORTS.get(self.transport)


@dataclass(frozen=True)
class Compressed:
    image: Path  # the plain image it holds
    path: Path  # its published name: the image's name and the transport's suffix
    sha256: str  # of the compressed bytes: what SHA256SUMS lists and sysupdate checks
    size: int


def compressed_path(image: Path, transport: Transport, feed: Path | None = None) -> Path:
    """Its published name, in the directory of `feed` (default: beside the image)."""
    return (feed or image.parent) / (image.name + transport.suffix)


def refuse(sending: Sending, compressions: dict[str, str]) -> None:
    """Before anything is compressed: --transport-only needs a transport, and only images
    with an uncompressed filesystem (`compressions`: image name -> its build info's
    compression) are worth it."""
    if sending.table is None:
        if sending.only:
            raise BuildError(
                "--transport-only without --transport: there would be nothing to publish",
                "add --transport=xz (or zstd), or drop --transport-only; nothing was written",
            )
        return
    packed = sorted(name for name, used in compressions.items() if used != UNCOMPRESSED)
    if packed:
        used = sorted({compressions[name] for name in packed})
        raise BuildError(
            f"--transport={sending.transport} compresses images again that are already "
            f"compressed ({', '.join(used)}: {listing(packed, ', ', 120)}), for next to no "
            "fewer bytes",
            "build --format=erofs --compression=none images (or DDIs of them; squashfs "
            "--compression=none for hosts without EROFS) for --transport, or release without "
            "it; nothing was written",
        )


@functools.cache  # asked for the reuse check and for index.json: one process, one answer
def tool_version(transport: Transport) -> str:
    """The compressor's --version (its bytes depend on it, and xz's on liblzma's): for
    index.json, e.g. "xz: xz (XZ Utils) 5.4.1; liblzma 5.4.1"."""
    said = run([transport.program, "--version"]).splitlines()
    lines = [line.strip("* ") for line in said if line.strip("* ")]
    return f"{transport.program}: {'; '.join(lines)}"


def compress(image: Path, transport: Transport, target: Path, threads: int = THREADS) -> None:
    """`image` compressed into `target` (a temporary: the caller renames it)."""
    try:
        run_into(
            transport.argv(image, threads),
            target,
            env=environment(),
            what=f"cannot compress {image.name} with {transport.program}",
        )
    except BuildError as error:  # xz says only "(stdout): Write error"
        raise explain_full_disk(error, target.parent, transport.program, 1 << 20) from error


@contextlib.contextmanager
def prepared(
    images: Sequence[Path],
    sending: Sending,
    earlier: Mapping[Path, Compressed],
    output_dir: Path,
    feed: Path,
) -> Iterator[list[Compressed]]:
    """Each of `images` compressed into the directory `feed` under a temporary name, hashed;
    renamed to its final name when the block ends without an error (removed if it raises):
    nothing is published before every check of the release passed. An image in `earlier`
    keeps the file an earlier release compressed it into (minutes of CPU for a large image),
    linked into `feed` when it is another feed's (the default feed's, a stream's)."""
    transport = sending.table
    # A stream's directory may not be there yet: made only once every check passed, so its
    # temporaries wait in .staging (the same file system) until then.
    pending = output_dir / STAGING if feed != output_dir else None
    with contextlib.ExitStack() as stack:
        made: list[Compressed] = []
        for image in images if transport is not None else ():
            assert transport is not None
            final, piece = compressed_path(image, transport, feed), earlier.get(image)
            if piece is not None and piece.path == final:
                made.append(piece)
                continue
            # A killed release's half-written one (release holds the lock).
            sweep_temps(pending / final.name if pending else final)
            tmp = stack.enter_context(atomic_path(final, temp_dir=pending))
            if piece is not None:
                link_or_copy(piece.path, tmp)
                made.append(replace(piece, path=final))
                continue
            compress(image, transport, tmp)
            made.append(Compressed(image, final, file_sha256(tmp), tmp.stat().st_size))
        yield made
        if pending is not None and made:
            manifest.make_dirs(output_dir, *Path(manifest.relative(output_dir, feed)).parts)


def fresh(made: list[Compressed], earlier: Mapping[Path, Compressed]) -> list[Path]:
    """The compressed files this release wrote (compressed, or linked from another feed);
    those it kept, and those it linked, said."""
    written = []
    for piece in made:
        before = earlier.get(piece.image)
        if before is not None and before.path == piece.path:
            say(
                "release",
                f"kept {piece.path}: compressed by an earlier release from the same image",
            )
            continue
        if before is not None:
            say(
                "release", f"linked {piece.path} to {before.path}: the same image, compressed alike"
            )
        written.append(piece.path)
    return written


def found(feed: Path) -> list[Path]:
    """The compressed images in the directory `feed`, by their names (whoever wrote them)."""
    suffixes = tuple(f".raw{transport.suffix}" for transport in TRANSPORTS.values())
    return sorted(
        path
        for path in feed.iterdir()
        if path.name.startswith(f"{NAME}-") and path.name.endswith(suffixes)
    )


def remove_stale(output_dir: Path, feed: Path, kept: Iterable[Path]) -> None:
    """Compressed images an earlier release of `feed` (the output directory, or a stream's)
    wrote that this one does not publish (another transport, none, or an image no longer
    there): removed where they are the tool's, kept and named otherwise."""
    keep = set(kept)
    recorded = manifest.load(output_dir)
    for path in found(feed) if feed.is_dir() else ():
        if path in keep:
            continue
        recorded.remove_if_owned(output_dir, path, "release", "not sent by this release")
