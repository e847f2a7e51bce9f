"""Reading built images back with squashfs-tools, the way a user would check them."""

from __future__ import annotations

import hashlib
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

# An image built with --run-as=root (and no other option that adds a file).
RUN_AS_ROOT_LISTING = {
    "": ("drwxr-xr-x", "0/0"),
    "usr": ("drwxr-xr-x", "0/0"),
    "usr/lib": ("drwxr-xr-x", "0/0"),
    "usr/lib/extension-release.d": ("drwxr-xr-x", "0/0"),
    "usr/lib/extension-release.d/extension-release.alloy": ("-rw-r--r--", "0/0"),
    "usr/lib/systemd": ("drwxr-xr-x", "0/0"),
    "usr/lib/systemd/system": ("drwxr-xr-x", "0/0"),
    "usr/lib/systemd/system/alloy.service": ("-rw-r--r--", "0/0"),
    "usr/lib/systemd/system/alloy-sysext-restart.service": ("-rw-r--r--", "0/0"),
    "usr/local": ("drwxr-xr-x", "0/0"),
    "usr/local/bin": ("drwxr-xr-x", "0/0"),
    "usr/local/bin/alloy": ("-rwxr-xr-x", "0/0"),
}
# What --run-as=alloy (the default) adds: the user, the unit that makes it, /etc/default/alloy.
RUN_AS_ALLOY_LISTING = {
    "usr/lib/systemd/system/alloy-user.service": ("-rw-r--r--", "0/0"),
    "usr/lib/sysusers.d": ("drwxr-xr-x", "0/0"),
    "usr/lib/sysusers.d/alloy.conf": ("-rw-r--r--", "0/0"),
    "usr/lib/tmpfiles.d": ("drwxr-xr-x", "0/0"),
    "usr/lib/tmpfiles.d/alloy.conf": ("-rw-r--r--", "0/0"),
    "usr/share": ("drwxr-xr-x", "0/0"),
    "usr/share/factory": ("drwxr-xr-x", "0/0"),
    "usr/share/factory/etc": ("drwxr-xr-x", "0/0"),
    "usr/share/factory/etc/default": ("drwxr-xr-x", "0/0"),
    "usr/share/factory/etc/default/alloy": ("-rw-r--r--", "0/0"),
}
EXPECTED_LISTING = {**RUN_AS_ROOT_LISTING, **RUN_AS_ALLOY_LISTING}  # the default build's


def listing(image: Path) -> dict[str, tuple[str, str]]:
    """Path inside the image ('' for its root) -> (mode string, uid/gid), from unsquashfs -lln."""
    out = subprocess.run(
        ["unsquashfs", "-lln", "-d", "ROOT", str(image)], capture_output=True, text=True, check=True
    ).stdout
    entries = {}
    for line in out.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("ROOT"):
            entries[fields[5].removeprefix("ROOT").lstrip("/")] = (fields[0], fields[1])
    return entries


def superblock(image: Path) -> dict[str, str]:
    """unsquashfs -s's Compression and Block size, and Filters where xz has any (-Xbcj)."""
    out = subprocess.run(
        ["unsquashfs", "-s", str(image)], capture_output=True, text=True, check=True
    ).stdout
    info = {}
    for line in out.splitlines():
        for key in ("Compression", "Block size"):
            if line.startswith(key + " "):
                info[key] = line[len(key) + 1 :].strip()
        if line.startswith("\tFilters selected:"):
            info["Filters"] = line.split(":", 1)[1].strip()
    return info


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(image: Path, dest: Path) -> Path:
    subprocess.run(
        ["unsquashfs", "-no-progress", "-d", str(dest), str(image)],
        capture_output=True,
        check=True,
    )
    return dest


def garbled_copies(
    data: bytes, seed: int, spot: Callable[[random.Random, int, int], int], count: int = 300
) -> Iterator[tuple[int, bytearray]]:
    """(attempt, copy) for `count` damaged copies of an image's `data`: every third cut short at
    a random length, the others with 1 to 4 random bytes written where `spot(rng, attempt,
    size)` says, so a test aims the damage at what its reader trusts most."""
    rng = random.Random(seed)
    for attempt in range(count):
        copy = bytearray(data)
        if attempt % 3 == 0:
            copy = copy[: rng.randrange(len(copy))]
        else:
            for _ in range(rng.randint(1, 4)):
                where = spot(rng, attempt, len(copy))  # drawn before the byte, as written
                copy[where] = rng.randrange(256)
        yield attempt, copy
