"""docs/benchmarks.md: the table, the machine it was measured on, and the commands measured."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import COMMANDS
from benchmarks.standin import LARGE_VERSION, PACKAGE, VERSION, binary_package
from build.formats.erofs import mkfs_erofs_version

# The notes below this line in docs/benchmarks.md are written by hand: a new run keeps them.
NOTES_MARKER = "<!-- notes: kept by nox -s bench -->"
MACHINE_HEADING = "## Machine\n"


def machine(binary: Path, large: Path | None) -> list[str]:
    """The machine, its tools and the stand-ins, as Markdown list items."""

    def first(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
        except OSError:
            return "not installed"
        return out.strip().splitlines()[0] if out.strip() else "?"

    os_name = "?"
    if Path("/etc/os-release").exists():
        found = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        os_name = found.group(1) if found else "?"
    lines = [
        f"- CPUs (nproc): {os.cpu_count()}",
        f"- OS: {os_name}; kernel {platform.release()} ({platform.machine()})",
        f"- Python: {platform.python_version()}; root: {os.geteuid() == 0}; invoke's runs write "
        f"and reuse .pyc files: {'no' if os.environ.get('PYTHONDONTWRITEBYTECODE') else 'yes'}",
        f"- squashfs-tools: {first(['mksquashfs', '-version'])}",
        f"- xz: {first(['xz', '--version'])}",
        f"- erofs-utils: mkfs.erofs {mkfs_erofs_version()}",
        f"- the binary: `{binary_package(binary)}`'s /usr/bin/{PACKAGE}, "
        f"{binary.stat().st_size:,} bytes (Go, stripped), served as Alloy {VERSION} "
        "(alloy-linux-ARCH.zip, deflate) from a local HTTP server on 127.0.0.1",
    ]
    if large is not None:
        source = (large.parent / "source.txt").read_text().strip()
        lines.append(
            f'- the large binary (--large, figures prefixed "large:"): built here, '
            f"{large.stat().st_size:,} bytes (Go, stripped), served as Alloy {LARGE_VERSION}; "
            f"from {source}"
        )
    return lines


def write_docs(
    path: Path,
    table: str,
    formats: str,
    trust: str,
    lines: list[str],
    took: float,
    args: list[str],
) -> None:
    commands = "\n".join(COMMANDS)
    text = f"""# Benchmarks

Produced by `nox -s bench` ({" ".join(args) or "default run counts"}), which took {took:.0f} s
end to end; each figure is the median of the runs given there. Ratios are ours / theirs, measured
in the same run; "theirs" is the original script's step (or a limit) named in the figure. A ratio
with a range in brackets comes from pairs (ours and theirs back to back, alternating which goes
first): the median of the pairs' ratios, then the lowest and highest.

{table}

## Formats

The same tree (the binary, its units, its extension-release) in each image format the build offers,
and EROFS at other pcluster sizes: sizes; pack times of the packer alone with our flags (mksquashfs,
or mkfs.erofs through build/formats/erofs.py); seconds to read the binary from the mounted image,
and for `systemd-sysext merge` of the image into a scratch root (build/verify/merge.py's), both with
a cold page cache. Medians: the packs ran in rounds of one pack of each (each round
starting one further along the list, so the machine's drift favours none), as many rounds as
--heavy-runs; the merges likewise, --runs + 2 rounds; each read-back --runs times.

{formats}

{trust}

## Machine

{chr(10).join(lines)}

## Commands measured

Paths are the bench's own (under its cache directory), URL its local server:

```
{commands}
```
"""
    notes = "\n## Notes\n"
    if path.exists() and NOTES_MARKER in path.read_text():
        notes = path.read_text().split(NOTES_MARKER, 1)[1]
    text += f"\n{NOTES_MARKER}{notes}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """`section` (which begins with `start` and ends with `end`) in place of the one between
    those markers in `path`, the rest kept; where there is none yet, before "## Machine"."""
    text = path.read_text(encoding="utf-8")
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    elif MACHINE_HEADING in text:
        before, rest = text.split(MACHINE_HEADING, 1)
        text = before + section + "\n\n" + MACHINE_HEADING + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def keep_sections(path: Path, old: str, markers: Sequence[tuple[str, str]]) -> None:
    """Each section of `old` (the file's text before write_docs rewrote it) between one of
    `markers` (start, end) put back into `path`, in that order: write_docs writes only the main
    table's parts, and a part this run leaves out keeps its last figures."""
    for start, end in markers:
        if start in old and end in old.split(start, 1)[1]:
            body = old.split(start, 1)[1].split(end, 1)[0]
            replace_section(path, start, end, start + body + end)
