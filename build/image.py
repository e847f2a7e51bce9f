"""An image as squashfs-tools read it back: superblock, entries, and single files."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .run import run, run_head


@dataclass(frozen=True)
class Entry:
    path: str  # inside the image, "" for its root
    mode: str  # as ls shows it: drwxr-xr-x
    owner: str  # uid/gid

    @property
    def is_dir(self) -> bool:
        return self.mode.startswith("d")

    @property
    def is_file(self) -> bool:
        return self.mode.startswith("-")


class SquashfsImage:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.superblock = self._superblock()
        self.entries = self._entries()

    def _superblock(self) -> dict[str, str]:
        """unsquashfs -s's "Compression" and "Block size", and "Filters" (e.g. "x86") where xz
        was given -Xbcj."""
        out = run(["unsquashfs", "-s", str(self.path)])
        info = {}
        for key in ("Compression", "Block size"):
            match = re.search(rf"^{key} (.+)$", out, re.M)
            if match:
                info[key] = match.group(1).strip()
        # The compressor's options follow its line, indented: "\tFilters selected: x86".
        match = re.search(r"^[ \t]+Filters selected:(.*)$", out, re.M)
        if match:
            info["Filters"] = match.group(1).strip()
        return info

    def _entries(self) -> dict[str, Entry]:
        out = run(["unsquashfs", "-lln", "-d", "IMAGE", str(self.path)])
        entries = {}
        for line in out.splitlines():
            fields = line.split(None, 5)
            if len(fields) == 6 and (fields[5] == "IMAGE" or fields[5].startswith("IMAGE/")):
                name = fields[5].removeprefix("IMAGE").lstrip("/").split(" -> ")[0]
                entries[name] = Entry(name, fields[0], fields[1])
        return entries

    def head(self, path: str, size: int) -> bytes:
        return run_head(["unsquashfs", "-cat", str(self.path), path], size)

    def extract(self, path: str, dest_dir: Path) -> Path:
        """Extract one file, with its xattrs, under `dest_dir`; return where it landed."""
        target = Path(tempfile.mkdtemp(dir=dest_dir)) / "root"
        run(["unsquashfs", "-no-progress", "-d", str(target), str(self.path), path])
        return target / path
