"""The format table: per image format, everything the build, verify and release know of it.

The option table takes --format's and --compression's choices from here, the pack step the
packer and what the build info records, verify the reader (picked by the file's magic), the
mount type and the superblock check, invoke release the tools a build info must name. Nothing
else in build/ branches on a format's name: it looks its entry up (tests/test_formats_table.py
holds it to that).

A format that wraps another (a signed dm-verity DDI holding an EROFS or squashfs image) is one
more entry: its packer packs the inner format's image and wraps it (what it needs beyond the
build's options comes in the Recipe), its magic is the wrapper's, and its reader checks the
wrapper before it opens the inner image with the inner format's reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build.core.errors import BuildError
from build.formats import ddipack, erofs, squashfs
from build.formats.recipe import Recipe
from build.model.arch import Arch
from build.read import erofs as read_erofs
from build.read import gpt as read_gpt
from build.read import squashfs as read_squashfs
from build.read.image import ErofsImage, ReadImage, SquashfsImage


@dataclass(frozen=True)
class Magic:
    """Bytes a format's images hold at a fixed offset."""

    offset: int
    value: bytes


@dataclass(frozen=True)
class Format:
    name: str  # --format's choice; "format" in a build info and in index.json
    help: str  # --format's help: where hosts read it
    compression_help: str  # --compression's help for this format: its choices, what each gives
    # Packing (the pack step, build/image/pack.py)
    command: str  # the packer's program, required before a build downloads anything
    # (recipe, tree, image): image replaced; what the build info records of the result, if any
    pack: Callable[[Recipe, Path, Path], Mapping[str, Any] | None]
    args: Callable[[Recipe], dict[str, Any]]  # what shapes the image beside the tree
    fields: Callable[[Recipe], dict[str, Any]]  # what the build info records of the packing
    tools: tuple[str, ...]  # whose versions decide the bytes: build info and index.json keys
    tool_versions: Callable[[Recipe], dict[str, str | None]]  # those versions, in that order
    summary: Callable[[Recipe, Mapping[str, str | None]], str]  # the pack step's line
    compressions: tuple[str, ...]  # --compression's choices, the default first
    # The choice that packs as the given one does for an architecture (what a build info says)
    used_compression: Callable[[str, Arch], str]
    # Reading (verify, invoke release)
    magic: Magic | None  # None: the format of any file no other format's magic claims
    read: Callable[[Path], ReadImage]
    max_image_bytes: int  # the largest image its reader reads
    fstype: str  # mount -t, for the kernel view and the merges
    # verify's superblock check: (image, --compression, the binary's architecture or None)
    superblock_check: Callable[[ReadImage, str, Arch | None], tuple[str, str]]
    # verify --image's: an image made anywhere passes with what any host mounts, said;
    # (image, --expect-compression or None, the binary's architecture or None)
    vet_superblock: Callable[[ReadImage, str | None, Arch | None], tuple[str, str]]
    image_compressions: tuple[str, ...]  # the compressions it takes, as images name them
    # A wrapping format's: the formats it wraps, by --ddi-filesystem's choices (the default
    # first); empty for a format hosts mount as it is. verify checks the wrapper, then reads
    # the wrapped image by its own entry.
    inner: Mapping[str, Format] = field(default_factory=dict)

    @property
    def default_compression(self) -> str:
        return self.compressions[0]


SQUASHFS = Format(
    name="squashfs",
    help="every Flatcar channel",
    compression_help="xz (small); xz-bcj (xz plus the x86 BCJ filter: ~2-3 % smaller on amd64 at "
    "~2x the pack time; on arm64 the same as xz); zstd (~12 % larger, reads back ~10x faster); "
    "or none (every block stored: ~6x the disk, reads back ~9x faster than xz; for invoke "
    "release --transport to hosts without EROFS, Flatcar LTS)",
    command=squashfs.MKSQUASHFS,
    pack=squashfs.pack,
    args=squashfs.args,
    fields=squashfs.fields,
    tools=squashfs.TOOLS,
    tool_versions=lambda recipe: squashfs.tool_versions(),
    summary=squashfs.summary,
    compressions=tuple(squashfs.COMPRESSORS),
    used_compression=squashfs.used_compression,
    # Its reader says what is wrong with a file that is neither format, as verify always has.
    magic=None,
    read=SquashfsImage,
    max_image_bytes=read_squashfs.MAX_IMAGE_BYTES,
    fstype="squashfs",
    superblock_check=squashfs.superblock_check,
    vet_superblock=squashfs.vet_superblock,
    image_compressions=squashfs.IMAGE_COMPRESSIONS,
)

EROFS = Format(
    name="erofs",
    help="Flatcar's 6.12 kernels: Stable, Beta, Alpha; not LTS, whose 6.6 has no EROFS",
    compression_help="lz4hc or none (Flatcar's kernels read no other)",
    command=erofs.MKFS_EROFS,
    pack=erofs.pack,
    args=erofs.args,
    fields=erofs.fields,
    tools=erofs.TOOLS,
    tool_versions=lambda recipe: erofs.tool_versions(),
    summary=erofs.summary,
    compressions=tuple(dict.fromkeys((erofs.DEFAULT_COMPRESSION, *erofs.COMPRESSORS))),
    used_compression=erofs.used_compression,
    magic=Magic(read_erofs.SUPERBLOCK_OFFSET, read_erofs.MAGIC.to_bytes(4, "little")),
    read=ErofsImage,
    max_image_bytes=read_erofs.MAX_IMAGE_BYTES,
    fstype="erofs",
    superblock_check=erofs.superblock_check,
    vet_superblock=erofs.vet_superblock,
    image_compressions=erofs.IMAGE_COMPRESSIONS,
)


def _wrapped_read(path: Path) -> ReadImage:
    raise BuildError(
        f"{path} is a DDI: its file system is read from its data partition once the hash tree "
        "and signature are checked",
        "check it with invoke verify --image",
    )


def _by_content(check: Callable[[Format, ReadImage], tuple[str, str]]) -> Callable[..., Any]:
    """A superblock check of a DDI's data partition: its own format's (the image read is it)."""
    return lambda image, *rest: check(FORMATS[image.format], image, *rest)


_WRAPPED = {fmt.name: fmt for fmt in (EROFS, SQUASHFS)}  # --ddi-filesystem's, the default first
_WRAPPED_MAX = max(fmt.max_image_bytes for fmt in _WRAPPED.values())


def _wrapped(recipe: Recipe) -> Format:
    """The format a DDI's recipe wraps (--ddi-filesystem)."""
    return _WRAPPED[recipe.filesystem or next(iter(_WRAPPED))]


# Every wrapped format's tools (null in a build info where unused), and openssl's.
_DDI_TOOLS = (
    *dict.fromkeys(tool for fmt in _WRAPPED.values() for tool in fmt.tools),
    *ddipack.SIGNING_TOOLS,
)

DDI = Format(
    name="ddi",
    help="a dm-verity disk image (GPT: the --ddi-filesystem image, its hash tree, the "
    "signature of its root hash by --verity-key) for hosts that require signed images",
    compression_help="its --ddi-filesystem's, as for that format",
    command=ddipack.OPENSSL,  # signing; the inner format's packer is required too
    pack=lambda r, tree, image: ddipack.pack(_wrapped(r).pack, r, tree, image),
    args=lambda r: ddipack.args(_wrapped(r).args, r),
    fields=lambda r: ddipack.fields(_wrapped(r).fields, r),
    tools=_DDI_TOOLS,
    tool_versions=lambda r: ddipack.tool_versions(_wrapped(r).tool_versions, _DDI_TOOLS, r),
    summary=lambda r, tools: ddipack.summary(_wrapped(r).summary, r, tools),
    compressions=tuple(dict.fromkeys(c for f in _WRAPPED.values() for c in f.compressions)),
    used_compression=lambda compression, arch: next(
        (
            f.used_compression(compression, arch)
            for f in _WRAPPED.values()
            if compression in f.compressions
        ),
        compression,
    ),
    magic=Magic(read_gpt.SECTOR, read_gpt.SIGNATURE),  # the primary GPT header's
    read=_wrapped_read,
    # The largest data partition any reader reads, its tree (1/127) and the GPT's slack.
    max_image_bytes=_WRAPPED_MAX + _WRAPPED_MAX // 100 + (4 << 20),
    fstype="",  # never mounted itself: its data partition is, as its own format
    superblock_check=_by_content(lambda f, image, *rest: f.superblock_check(image, *rest)),
    vet_superblock=_by_content(lambda f, image, *rest: f.vet_superblock(image, *rest)),
    image_compressions=tuple(
        dict.fromkeys(c for f in _WRAPPED.values() for c in f.image_compressions)
    ),
    inner=_WRAPPED,
)

# Every format, in the order --help and messages list them.
FORMATS: dict[str, Format] = {fmt.name: fmt for fmt in (SQUASHFS, EROFS, DDI)}
DDI_FILESYSTEMS = DDI.inner  # --ddi-filesystem's choices
DEFAULT_FILESYSTEM = next(iter(DDI.inner))  # --ddi-filesystem's default
DEFAULT_FORMAT = SQUASHFS  # --format's default
# The format of a build info that names none: every image was squashfs before EROFS came.
UNRECORDED_FORMAT = SQUASHFS
MAX_IMAGE_BYTES = max(fmt.max_image_bytes for fmt in FORMATS.values())  # any reader's most


def content_format(name: str, filesystem: str | None) -> Format:
    """The format of the file system hosts mount for --format=`name`: that format, or for a
    wrapping one the format it wraps, `filesystem` (--ddi-filesystem)."""
    fmt = FORMATS[name]
    if not fmt.inner:
        return fmt
    return fmt.inner[filesystem or next(iter(fmt.inner))]


def expectable_compressions(fmt: Format) -> tuple[str, ...]:
    """--expect-compression's choices for a format: as its images name them, and its
    --compression choices."""
    return tuple(dict.fromkeys((*fmt.image_compressions, *fmt.compressions)))


def recorded_format(info: Mapping[str, Any]) -> object:
    """The "format" a build info names (UNRECORDED_FORMAT's name where it names none), as it
    is: not checked against the table."""
    return info.get("format", UNRECORDED_FORMAT.name)


def format_named(name: object) -> Format | None:
    """The entry named `name` (a value read from a file: any JSON), or None."""
    return FORMATS.get(name) if isinstance(name, str) else None


def image_format(path: Path) -> str:
    """The name of the format whose magic `path` holds; where none does, the one whose magic
    is None (squashfs: its reader then says what is wrong with the file)."""
    try:
        with path.open("rb") as file:
            for fmt in FORMATS.values():
                if fmt.magic is not None:
                    file.seek(fmt.magic.offset)
                    if file.read(len(fmt.magic.value)) == fmt.magic.value:
                        return fmt.name
    except OSError as error:
        raise BuildError(f"cannot read {path}: {error.strerror}") from None
    return next(fmt.name for fmt in FORMATS.values() if fmt.magic is None)


def open_image(path: Path) -> ReadImage:
    """The image at `path`, read by the reader its magic calls for."""
    return FORMATS[image_format(path)].read(path)
