"""A copy of a signed DDI the dm-verity boot test (test_verity_boot.py) offers the emulated
machine, with one flipped byte in the alloy binary's data, found in the EROFS image that is its
data partition."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from build.read.ddi import check_ddi

BINARY = "/usr/local/bin/alloy"
# libblkid reads the first 64 KiB of a partition it probes (page-cache readahead past them), and
# pages at 128 and 256 KiB: a flip in those fails the probe, and so the merge, itself.
PROBED_BELOW = 144 << 10
PROBED_AT = 256 << 10


def first_extent(erofs: Path, path: str = BINARY) -> tuple[int, int]:
    """The physical offset and length of the first extent of `path` in the EROFS image `erofs`
    (with LZ4HC: its first compressed cluster, which holds the ELF header), as dump.erofs
    shows it."""
    shown = subprocess.run(
        ["dump.erofs", f"--path={path}", "-e", str(erofs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(
        r"^\s*0:\s*0\.\.\s*\d+\s*\|\s*\d+\s*:\s*(\d+)\.\.\s*\d+\s*\|\s*(\d+)", shown, re.M
    )
    if found is None:
        raise AssertionError(f"no first extent of {path} in dump.erofs's output:\n{shown}")
    return int(found[1]), int(found[2])


def flipped_copy(signed: Path, erofs: Path, target: Path) -> int:
    """A copy of the signed DDI `signed` (of the EROFS image `erofs`) at `target` with one byte
    of the alloy binary's data flipped; returns its offset in the data partition. The hash tree
    and the signature are left as they were: they still vouch for the original.

    The byte is three quarters into the binary's first compressed cluster: in the cluster exec
    must decompress to read the ELF header, and away from the blocks libblkid reads when
    systemd probes the data partition (its first 64 KiB, and the blocks at 128 and 256 KiB):
    a flip there would fail the merge itself (systemd never serves the block either way)."""
    start, length = first_extent(erofs)
    at = start + length * 3 // 4 + 1
    if not (PROBED_BELOW <= at < PROBED_AT and at < start + length):
        raise AssertionError(
            f"the byte three quarters into {BINARY}'s first cluster ({start}+{length}) is at "
            f"{at}, not between {PROBED_BELOW} and {PROBED_AT}: the stand-in changed, pick another"
        )
    data = check_ddi(signed, "amd64", signed=True).data
    with signed.open("rb") as stream, erofs.open("rb") as image:
        stream.seek(data.offset)
        if stream.read(data.size)[: erofs.stat().st_size] != image.read():
            raise AssertionError(f"{signed}'s data partition is not the EROFS image {erofs}")
        stream.seek(data.offset + at)
        original = stream.read(1)
    shutil.copyfile(signed, target)
    with target.open("r+b") as stream:
        stream.seek(data.offset + at)
        stream.write(bytes([original[0] ^ 0x01]))
    return at
