"""How long verify's kernel view check takes (as root): on a small image and on one holding a
100 MB ELF-headed random binary, squashfs (xz) and EROFS (lz4hc; none for the 100 MB one).
Prints one line per figure: the kernel's side (mount, walk, hashes), the reader's hashes, and
the whole check.

    sudo .venv/bin/python -m benchmarks.kernel_view [--size-mb=100] [--runs=3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from build.core.errors import BuildError
from build.formats.table import FORMATS, open_image
from build.verify import checks as verify
from build.verify import kernelview
from tests.fakes import MACHINES, elf_binary
from tests.trees import alloy_tree, packed

LIMIT = 4096 << 20  # --max-binary-size's default


def seconds(action: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    try:
        result: object = action()
    except BuildError as error:
        result = error
    return time.monotonic() - started, result


def measure(image: Path, runs: int) -> None:
    read = open_image(image)
    fstype = FORMATS[read.format].fstype
    paths = list(read.entries)
    files = [path for path, entry in read.entries.items() if entry.is_file]

    def reader_hashes() -> list[str]:
        sha256 = kernelview.reader_sha256(open_image(image), LIMIT)
        return [sha256(path) for path in files]

    for run in range(runs):
        kernel, _ = seconds(lambda: kernelview.kernel_view(image, fstype, paths, LIMIT))
        reader, hashed = seconds(reader_hashes)
        whole, check = seconds(lambda: verify._kernel_view(open_image(image), image, LIMIT))
        print(
            f"{image.name} ({image.stat().st_size / 1e6:.1f} MB), run {run + 1}: kernel side "
            f"{kernel:.2f} s, reader hashes {reader:.2f} s"
            f"{' (failed: ' + str(hashed) + ')' if isinstance(hashed, BuildError) else ''}, "
            f"whole check {whole:.2f} s: {check.status}",  # type: ignore[attr-defined]
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    reason = kernelview.cannot_mount("squashfs")
    if reason:
        sys.exit(f"benchmarks/kernel_view.py: {reason}")
    with tempfile.TemporaryDirectory(prefix="kernel-view-bench-") as scratch:
        work = Path(scratch)
        header = elf_binary(MACHINES["amd64"], size=4096)
        big = header + os.urandom((args.size_mb * 1_000_000) - len(header))
        for name, binary in (("small", None), (f"{args.size_mb}mb", big)):
            tree = alloy_tree(work / name, binary=binary)
            # lz4hc spends minutes on 100 MB of random bytes, to store them as they are anyway.
            erofs = "lz4hc" if binary is None else "none"
            for fmt, compression in (("squashfs", "xz"), ("erofs", erofs)):
                started = time.monotonic()
                image = packed(tree, work / f"{name}-{fmt}.raw", fmt, compression)
                print(f"packed {image.name} in {time.monotonic() - started:.1f} s", flush=True)
                measure(image, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
