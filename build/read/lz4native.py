"""LZ4 blocks decoded by the system's liblz4 (systemd and erofs-utils depend on it), as the
kernel's EROFS decompressor decodes them: a hundred times faster than Python, so a whole Alloy
binary hashes in seconds. Where liblz4 is missing, callers decode in Python instead."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

from build.core.safeio import Malformed

MIN_VERSION = 10900  # LZ4_decompress_safe_partial stops at its target from 1.9.0 on


@cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("lz4")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        library.LZ4_versionNumber.restype = ctypes.c_int
        if library.LZ4_versionNumber() < MIN_VERSION:
            return None
        for function in (library.LZ4_decompress_safe, library.LZ4_decompress_safe_partial):
            function.restype = ctypes.c_int
        library.LZ4_decompress_safe.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int
        ]  # fmt: skip
        library.LZ4_decompress_safe_partial.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int
        ]  # fmt: skip
    except (OSError, AttributeError):
        return None
    return library


def available() -> bool:
    return _library() is not None


def _prepared(source: bytes, capacity: int) -> tuple[ctypes.CDLL, ctypes.Array] | None:
    """liblz4 and an output buffer of `capacity` bytes, or None without liblz4; Malformed for
    sizes liblz4's int arguments cannot hold."""
    library = _library()
    if library is None:
        return None
    if len(source) >= 1 << 31 or capacity >= 1 << 31:
        raise Malformed("an LZ4 block larger than 2 GiB")
    return library, ctypes.create_string_buffer(capacity)


def decompress_block(source: bytes, capacity: int) -> bytes | None:
    """What `source`, one whole LZ4 block, decodes to: at most `capacity` bytes, or Malformed
    (more, or malformed), as the kernel's squashfs lz4_uncompress checks it with
    LZ4_decompress_safe. None without liblz4."""
    prepared = _prepared(source, capacity)
    if prepared is None:
        return None
    library, out = prepared
    produced = library.LZ4_decompress_safe(source, out, len(source), capacity)
    if produced < 0:
        raise Malformed(f"an lz4 block is malformed or decompresses to more than {capacity} bytes")
    return out.raw[:produced]


def decompress(source: bytes, size: int, exact: bool) -> bytes | None:
    """The first `size` bytes `source` decodes to (fewer where it ends sooner), or None without
    liblz4. `exact`: `source` must decode to exactly `size` bytes and end there, as
    LZ4_decompress_safe checks for the kernel. Malformed where liblz4 finds it malformed."""
    prepared = _prepared(source, size)
    if prepared is None:
        return None
    library, out = prepared
    if exact:
        produced = library.LZ4_decompress_safe(source, out, len(source), size)
        if produced != size:
            raise Malformed("an LZ4 block decodes to other than its extent")
    else:
        produced = library.LZ4_decompress_safe_partial(source, out, len(source), size, size)
        if produced < 0:
            raise Malformed("an LZ4 block is malformed")
    return out.raw[:produced]
