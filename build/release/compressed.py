"""invoke release --transport: each versioned image also published compressed beside it
(alloy-1.10.2-amd64.raw.xz), for hosts whose systemd-sysupdate fetches it and installs the
plain image. The settings are the transport table's (build/formats/transport.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from build.config.spec import NAME
from build.core.errors import BuildError
from build.core.fileio import atomic_path, sweep_temps
from build.core.report import listing, say
from build.core.run import run, run_into
from build.core.sums import file_sha256
from build.formats.transport import NONE, THREADS, TRANSPORTS, Transport
from build.model import manifest

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


def compressed_path(image: Path, transport: Transport) -> Path:
    return image.with_name(image.name + transport.suffix)


def refuse(sending: Sending, compressions: dict[str, str], stream: str | None) -> None:
    """Before anything is compressed: --transport-only needs a transport, a stream feed takes
    none yet, and only images with an uncompressed filesystem (`compressions`: image name ->
    its build info's compression) are worth it."""
    if sending.table is None:
        if sending.only:
            raise BuildError(
                "--transport-only without --transport: there would be nothing to publish",
                "add --transport=xz (or zstd), or drop --transport-only; nothing was written",
            )
        return
    if stream:
        raise BuildError(
            f"--transport={sending.transport} with --stream={stream}: a stream's feed is not "
            "sent compressed yet",
            "release the stream without --transport; nothing was written",
        )
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


def tool_version(transport: Transport) -> str:
    """The compressor's --version (its bytes depend on it, and xz's on liblzma's): for
    index.json, e.g. "xz: xz (XZ Utils) 5.4.1; liblzma 5.4.1"."""
    said = run([transport.program, "--version"]).splitlines()
    lines = [line.strip("* ") for line in said if line.strip("* ")]
    return f"{transport.program}: {'; '.join(lines)}"


def compress(image: Path, transport: Transport, target: Path, threads: int = THREADS) -> None:
    """`image` compressed into `target` (a temporary: the caller renames it)."""
    run_into(
        transport.argv(image, threads),
        target,
        what=f"cannot compress {image.name} with {transport.program}",
    )


@contextlib.contextmanager
def prepared(
    images: Sequence[Path], sending: Sending, earlier: Mapping[Path, Compressed]
) -> Iterator[list[Compressed]]:
    """Each of `images` compressed under a temporary name, hashed; renamed to its final name
    when the block ends without an error (removed if it raises): nothing is published before
    every check of the release passed. An image in `earlier` keeps the file an earlier
    release compressed it into (minutes of CPU for a large image)."""
    transport = sending.table
    with contextlib.ExitStack() as stack:
        made: list[Compressed] = []
        for image in images if transport is not None else ():
            assert transport is not None
            if image in earlier:
                made.append(earlier[image])
                continue
            final = compressed_path(image, transport)
            sweep_temps(final)  # a killed release's half-written one (release holds the lock)
            tmp = stack.enter_context(atomic_path(final))
            compress(image, transport, tmp)
            made.append(Compressed(image, final, file_sha256(tmp), tmp.stat().st_size))
        yield made


def fresh(made: list[Compressed], earlier: Mapping[Path, Compressed]) -> list[Path]:
    """The compressed files this release wrote; those it kept, said."""
    for piece in earlier.values():
        say("release", f"kept {piece.path}: compressed by an earlier release from the same image")
    return [piece.path for piece in made if piece.image not in earlier]


def found(output_dir: Path) -> list[Path]:
    """The compressed images in `output_dir`, by their names (whoever wrote them)."""
    suffixes = tuple(f".raw{transport.suffix}" for transport in TRANSPORTS.values())
    return sorted(
        path
        for path in output_dir.iterdir()
        if path.name.startswith(f"{NAME}-") and path.name.endswith(suffixes)
    )


def remove_stale(output_dir: Path, kept: Iterable[Path]) -> None:
    """Compressed images an earlier release wrote that this one does not publish (another
    transport, none, or an image no longer there): removed where they are the tool's, kept
    and named otherwise."""
    keep = set(kept)
    recorded = manifest.load(output_dir)
    for path in found(output_dir):
        if path in keep:
            continue
        if recorded.owns_file(output_dir, manifest.relative(output_dir, path)):
            path.unlink()
            say("release", f"removed {path} (not sent by this release)")
        else:
            say("release", f"kept {path}: this tool did not write it, or it changed since")
