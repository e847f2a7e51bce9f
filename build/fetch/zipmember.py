"""The one binary in a release zip, read as an attacker may have written the zip: an entry that
another tool could take for the binary, an encrypted or oddly compressed member, or a central
directory that its local headers contradict, is refused in one line that names no Python
object."""

from __future__ import annotations

import itertools
import posixpath
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from build.core.errors import doing
from build.core.report import listing

# Alloy's release zips deflate; a stored member costs nothing to allow. Other methods (bzip2,
# lzma, ...) would only add decompressors for an attacker to aim at.
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_ENCRYPTED = 0x0001 | 0x0040 | 0x2000  # encrypted, strong encryption, masked central directory
_DATA_DESCRIPTOR = 0x0008  # sizes and CRC follow the data; the local header holds zeros
_PATCH_DATA = 0x0020  # "compressed patched data": a delta against a file we do not have
_UTF8_NAME = 0x0800
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zipfile.structFileHeader
_LOCAL_SIGNATURE = b"PK\x03\x04"
_ZIP64_SIZE = 0xFFFFFFFF
_UNIX = 3  # the "made by" system whose external attributes hold a mode
_FILE_TYPES = {stat.S_IFLNK: "a symbolic link", stat.S_IFDIR: "a directory"}
# Characters of names listed in a message: with the URL and the hint, the line stays within
# report.MAX_LINE.
_LISTED = 70
CHUNK = 1 << 20


class ZipProblem(Exception):
    """What is wrong with the archive, in words for the one error line."""


def shown(name: str) -> str:
    """`name` safe for a terminal: control and other invisible characters as escapes."""
    return "".join(char if char.isprintable() and char != "\\" else _escape(char) for char in name)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def listed(names: list[str]) -> str:
    return listing((shown(name) for name in names), ", ", most=_LISTED)


def _readings(name: str) -> set[str]:
    """How tools may read `name`: as is, cut at a NUL (C strings, zipfile), without control or
    format characters (a terminal, a careless filter)."""
    visible = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf"))
    return {name, name.split("\x00", 1)[0], visible}


def _file_name(reading: str) -> str:
    """The file a lenient extractor would write for `reading`: backslashes as separators, `.`
    and `..` resolved, slashes and Windows' trailing dots and spaces dropped, compatibility
    characters folded, case ignored (a case-insensitive file system), directories flattened."""
    text = unicodedata.normalize("NFKC", reading).replace("\\", "/").casefold()
    parts = [part.rstrip(" .") for part in posixpath.normpath("/" + text).split("/")]
    return next((part for part in reversed(parts) if part), "")


def could_be(name: str, member: str) -> bool:
    """Whether some tool could take the zip entry `name` for the file `member`."""
    wanted = _file_name(member)
    return any(_file_name(reading) == wanted for reading in _readings(name))


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The entry's name as its central directory holds it (zipfile decodes it one of two ways)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_NAME else "cp437")


def _local_entry(raw: BinaryIO, info: zipfile.ZipInfo, end: int) -> tuple[str, int]:
    """The name in the entry's local header and where its data ends, after checking that header
    against the central directory's: an extractor that walks local headers must see the same
    archive as zipfile."""
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != _LOCAL_SIGNATURE:
        raise ZipProblem(
            f"has a central directory entry for {shown(info.orig_filename)} that points at no "
            "local header"
        )
    _, _, _, flags, method, _, _, crc, packed, size, name_length, extra_length = _LOCAL.unpack(
        header
    )
    name = raw.read(name_length)
    differs: list[str] = []
    if name != _raw_name(info):
        differs.append("name")
    if method != info.compress_type:
        differs.append("compression method")
    if (flags ^ info.flag_bits) & (_ENCRYPTED | _DATA_DESCRIPTOR):
        differs.append("flags")
    if not flags & _DATA_DESCRIPTOR:
        if crc != info.CRC:
            differs.append("CRC-32")
        if packed != _ZIP64_SIZE and packed != info.compress_size:
            differs.append("compressed size")
        if size != _ZIP64_SIZE and size != info.file_size:
            differs.append("size")
    if differs:
        raise ZipProblem(
            f"has a local header and a central directory entry for {shown(info.orig_filename)} "
            f"that disagree on its {' and '.join(differs)}"
        )
    data_end = info.header_offset + _LOCAL.size + name_length + extra_length + info.compress_size
    if data_end > end:
        raise ZipProblem(
            f"has data for {shown(info.orig_filename)} that runs into its central directory"
        )
    return name.decode("utf-8" if flags & _UTF8_NAME else "cp437", errors="replace"), data_end


def _check_member(info: zipfile.ZipInfo, member: str) -> None:
    if info.flag_bits & _ENCRYPTED:
        raise ZipProblem(f"holds {member} encrypted, which no release binary is")
    if info.flag_bits & _PATCH_DATA:
        raise ZipProblem(f"holds {member} as patch data, which no release binary is")
    if info.compress_type not in METHODS:
        raise ZipProblem(
            f"holds {member} compressed with method {info.compress_type}, where release zips "
            f"use {' or '.join(METHODS.values())}"
        )
    kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == _UNIX else 0
    if kind not in (0, stat.S_IFREG):
        what = _FILE_TYPES.get(kind, "a special file")
        raise ZipProblem(f"holds {member} as {what}, not a regular file")


def select(archive: zipfile.ZipFile, raw: BinaryIO, member: str) -> zipfile.ZipInfo | None:
    """The entry named exactly `member`, checked, if it is the only entry that could be taken
    for it (by its name in the central directory or in its local header); None if there is
    none. Raises ZipProblem for anything ambiguous or contradictory."""
    end = archive.start_dir  # where the central directory starts: no entry's data goes past
    candidates: list[zipfile.ZipInfo] = []
    spans: list[tuple[int, int, str]] = []  # (start, end, name) of each entry's bytes
    for info in archive.infolist():
        local, data_end = _local_entry(raw, info, end)
        spans.append((info.header_offset, data_end, info.orig_filename))
        if could_be(info.orig_filename, member) or could_be(local, member):
            candidates.append(info)
    spans.sort()
    for (_, first_end, first), (second_start, _, second) in itertools.pairwise(spans):
        if second_start < first_end:  # one entry's bytes are also another's
            raise ZipProblem(f"has entries that overlap: {listed([first, second])}")
    if len(candidates) > 1:
        raise ZipProblem(
            f"has {len(candidates)} entries that could each be taken for {member}: "
            f"{listed([info.orig_filename for info in candidates])}"
        )
    exact = [info for info in candidates if info.orig_filename == member]
    if not exact:
        return None
    _check_member(exact[0], member)
    return exact[0]


def read_chunks(source: IO[bytes], path: Path) -> Iterator[bytes]:
    """The bytes of `source` (a member opened from the zip at `path`), then it is closed;
    corrupt data as a ZipProblem (zipfile says it with reprs)."""
    with source:
        while chunk := _read(source, path):
            yield chunk


def _read(source: IO[bytes], path: Path) -> bytes:
    with doing("reading the release zip", path):
        try:
            return source.read(CHUNK)
        except (zlib.error, EOFError) as error:
            raise ZipProblem("has corrupt compressed data in the binary") from error
        except zipfile.BadZipFile as error:
            if "CRC" in str(error):
                raise ZipProblem("has a binary that fails its CRC-32 check") from error
            raise ZipProblem("has a corrupt entry for the binary") from error


def open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ZipProblem("is not a zip archive, or a damaged one") from error
    except (ValueError, NotImplementedError, EOFError, struct.error) as error:
        # ValueError: a name that is not the UTF-8 its flag claims; NotImplementedError: a
        # zip format version zipfile does not read.
        raise ZipProblem("has a central directory this tool cannot read") from error
