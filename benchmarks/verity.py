"""The dm-verity hash tree's speed in pure Python (build/read/verity.py) beside `veritysetup
format` (libcryptsetup, C), and the offline check's, on 100 MiB of incompressible data: what
signing adds to a build and what verify spends on a DDI. Prints figures; asserts none.

    python -m benchmarks.verity [--mib=100] [--runs=3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import median_of
from build.formats.verity import write_hash_partition
from build.read.verity import BLOCK_BYTES, area_bytes
from build.read.veritycheck import Region, check_verity

SALT = bytes(range(32))
SB_UUID = uuid.UUID("12345678-1234-4234-8234-123456789abc")


def seconds_of(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verity-") as work:
        data = Path(work) / "data"
        data.write_bytes(os.urandom(args.mib << 20))
        hashes = Path(work) / "hash"
        ours = median_of(
            args.runs,
            lambda _: seconds_of(lambda: write_hash_partition(data, hashes, SALT, SB_UUID)),
        )
        root = write_hash_partition(data, hashes, SALT, SB_UUID).root_hash
        image = Path(work) / "image"
        with image.open("wb") as out:
            for part in (data, hashes):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out)
        size = data.stat().st_size

        def check() -> None:
            with image.open("rb") as stream:
                check_verity(
                    stream, Region(0, size), Region(size, area_bytes(size // BLOCK_BYTES)), root
                )

        checked = median_of(args.runs, lambda _: seconds_of(check))
        print(
            f"hash tree, Python:     {args.mib / ours:7.0f} MiB/s ({ours:.2f} s for {args.mib} MiB)"
        )
        print(f"offline check, Python: {args.mib / checked:7.0f} MiB/s ({checked:.2f} s)")
        if shutil.which("veritysetup"):
            cmd = ["veritysetup", "format", "--hash=sha256", "--data-block-size=4096",
                   "--hash-block-size=4096", f"--salt={SALT.hex()}", f"--uuid={SB_UUID}",
                   str(data), str(Path(work) / "theirs")]  # fmt: skip
            theirs = median_of(
                args.runs,
                lambda _: seconds_of(lambda: subprocess.run(cmd, check=True, capture_output=True)),
            )
            print(f"veritysetup format:    {args.mib / theirs:7.0f} MiB/s ({theirs:.2f} s)")


if __name__ == "__main__":
    main()
