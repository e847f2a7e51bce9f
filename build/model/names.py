"""Every name this tool gives a file it writes (outputs, records, locks, cache files), decided
here and nowhere else: clean, the cache and the manifest recognise them too. Temporaries are
named by build/core/fileio.py, which makes them."""

from __future__ import annotations

import os
from pathlib import Path

from build.alloy import NAME
from build.core import urls

# The checksum list a release publishes (GNU format, as Alloy's own releases name it), and the
# one invoke sums / invoke release write beside the images.
SUMS_FILE = "SHA256SUMS"
SIGNATURE_FILE = f"{SUMS_FILE}.gpg"

# invoke release, beside the images.
INDEX = "index.json"
SYSUPDATE_DIR = "sysupdate"
FLATCAR_DIR = "flatcar"
# invoke release --stream=X.Y: a feed of its own, STREAMS_DIR/X.Y/, laid out as the default one.
STREAMS_DIR = "streams"
PUBLIC_KEY_FILE = f"{NAME}-release-key.gpg"  # binary: what goes into a host's keyring
PUBLIC_KEY_ARMORED = f"{NAME}-release-key.asc"
# The certificate (PEM) a DDI's dm-verity signature verifies against: what hosts put in
# /etc/verity.d (--verity-cert), published beside the release key.
VERITY_CERT_FILE = f"{NAME}-verity.crt"

# Beside each image.
CHECKSUM_SUFFIX = ".sha256"
BUILDINFO_SUFFIX = ".buildinfo.json"

# OUTPUT/.staging: the tool's own records, one directory per build cell (version, arch).
STAGING = ".staging"
MANIFEST = "manifest.json"
MANIFEST_LOCK = "manifest.lock"
OUTPUT_LOCK = "output.lock"
PENDING = "pending"  # invoke all: outputs waiting for verify to pass
CELL_LOCK = "outputs.lock"  # held from the first pending output to their install
ROOTFS = "rootfs"
STAMP_SUFFIX = ".stamp"
LOCK_SUFFIX = ".lock"

# The download cache: its tag (https://bford.info/cachedir/), and --version=latest's answer,
# per API.
CACHE_TAG = "CACHEDIR.TAG"
LATEST_PREFIX = "latest-"


def checksum_file(image: Path) -> Path:
    return image.with_name(image.name + CHECKSUM_SUFFIX)


def buildinfo_file(image: Path) -> Path:
    """What built the image (tool versions, options): reproducible per toolchain."""
    return image.with_name(image.name + BUILDINFO_SUFFIX)


def stamp_file(directory: Path, step: str) -> Path:
    """A step's record of the parameters it last made its targets with."""
    return directory / f"{step}{STAMP_SUFFIX}"


def step_lock(stamp: Path) -> Path:
    """The lock a step holds while it checks and makes its targets, beside its record."""
    return stamp.with_suffix(LOCK_SUFFIX)


def lock_file(shared: Path) -> Path:
    """The lock beside a file that several builds share (a cached download): .NAME.lock."""
    return shared.with_name(f".{shared.name}{LOCK_SUFFIX}")


def source_key(url: str) -> str:
    """The download cache's folder for a source: urls.cache_key, e.g.
    https_github.com_443__274c5d72b86ba4cb77b903e7e4afdb07; every part of the URL that chooses
    the bytes (scheme, host, port, path) is in its hash, so an http:// fetch is never taken for
    an https:// one."""
    return urls.cache_key(url)


def latest_file(cache_dir: Path, api_url: str) -> Path:
    """The cached answer of --version=latest from `api_url`."""
    return cache_dir / f"{LATEST_PREFIX}{source_key(api_url)}.json"


OUTPUT_DIR = "output"
CHECKOUT = Path(__file__).resolve().parents[2]  # where tasks.py is


def default_output_dir(cwd: Path | None = None) -> Path:
    """--output-dir's default: the checkout's output/ when run in it or below it (Invoke finds
    tasks.py from a subdirectory, and output/ would land there), else output/ where it runs
    (`invoke -r CHECKOUT` from a directory of one's own)."""
    here = Path.cwd() if cwd is None else cwd
    if here == CHECKOUT or not here.is_relative_to(CHECKOUT):
        return Path(OUTPUT_DIR)
    return CHECKOUT / OUTPUT_DIR


def default_cache_dir() -> Path:
    """--cache-dir's default: $XDG_CACHE_HOME/alloy-sysext, else ~/.cache/alloy-sysext."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "alloy-sysext"
