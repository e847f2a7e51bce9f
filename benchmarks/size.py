"""Size: our image against the original script's flags and against xz -9e of the bare binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks.common import Case, file_sha256, log, note_command

SIZE_GOAL = 0.86  # ours / original flags', for the default compression


def xz9e_size(cache: Path, binary: Path) -> int:
    """Bytes of `xz -9e` over the bare binary: the limit. ~2 minutes, so kept by the binary's
    sha256 and xz's version."""
    version = subprocess.run(["xz", "--version"], capture_output=True, text=True).stdout.split()
    key = file_sha256(binary)[:16] + "-" + version[3]
    kept = cache / f"xz9e-{key}.size"
    note_command(f"xz -9e -T1 -c {binary} | wc -c")
    if kept.exists():
        return int(kept.read_text())
    log("xz -9e over the bare binary (once; ~2 minutes on 2 cores)")
    with subprocess.Popen(["xz", "-9e", "-T1", "-c", str(binary)], stdout=subprocess.PIPE) as xz:
        out = xz.stdout
        assert out is not None
        size = sum(len(chunk) for chunk in iter(lambda: out.read(1 << 20), b""))
    kept.write_text(f"{size}\n")
    return size


def image_size_rows(case: Case, image: Path, original: Path, xz9e: int | None = None) -> None:
    """The pipeline's image against the original script's; against xz -9e when given."""
    size, original_size = image.stat().st_size, original.stat().st_size
    case.row("image size vs original flags (xz, 128 KiB)", size, original_size, "B", SIZE_GOAL)
    if xz9e is not None:
        case.row("image size vs xz -9e of the bare binary", size, xz9e, "B")
        case.row("original flags vs xz -9e of the bare binary", original_size, xz9e, "B")


def compression_size_row(case: Case, compression: str, image: Path, original: Path) -> None:
    # Opt-in choices: the size goal is the default build's.
    size = image.stat().st_size
    case.row(f"{compression} image size vs original flags", size, original.stat().st_size, "B")
