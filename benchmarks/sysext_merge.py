"""How long `systemd-sysext merge` takes for an image, in a scratch root of build/verify/merge.py's
(never over the live /usr), cold page cache, unmerged after each run."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.common import note_command, rounds
from build.image.content import IMAGE_BINARY
from build.verify.merge import SCRATCH_MOUNTS, cannot_merge, scratch_root

# The image's extension-release says ID=_any: any os-release ID will do.
OS_RELEASE = "ID=scratch\n"

# sh -c SCRIPT merge ROOT: drop the page cache (a host merges at boot), time the merge alone,
# check that the binary appeared, unmerge. Prints the merge's nanoseconds.
_SCRIPT = (
    r"""
set -eu
root=$1
"""
    + SCRATCH_MOUNTS
    + r"""
sync
echo 3 >/proc/sys/vm/drop_caches
started=$(date +%s%N)
if ! systemd-sysext $no_reload --root="$root" merge >/run/merge.log 2>&1; then
    cat /run/merge.log >&2
    exit 3
fi
ended=$(date +%s%N)
if [ ! -e "$root/$2" ]; then echo "merged, but $2 is missing" >&2; exit 4; fi
systemd-sysext $no_reload --root="$root" unmerge >/dev/null
echo $((ended - started))
"""
)


def cannot_time_merges() -> str | None:
    return cannot_merge({"x86_64": "x86-64", "aarch64": "arm64"}.get(os.uname().machine, "?"))


def merge_seconds(image: Path, name: str) -> float:
    """One merge of `image`, saved as var/lib/extensions/`name` of a fresh scratch root."""
    with scratch_root(image.parent, OS_RELEASE) as root:
        os.link(image, root / "var/lib/extensions" / name)
        command = ["unshare", "-m", "sh", "-c", _SCRIPT, "merge", str(root), IMAGE_BINARY]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"bench: systemd-sysext merge of {image} failed: {result.stderr.strip()}")
    return int(result.stdout.split()[-1]) / 1e9


def merge_times(images: dict[str, Path], name: str, runs: int) -> dict[str, list[float]]:
    """Each image's merge seconds, in `runs` rounds (common.rounds)."""
    note_command(
        "unshare -m: scratch root (build/verify/merge.py's SCRATCH_MOUNTS); echo 3 > "
        "/proc/sys/vm/drop_caches; time systemd-sysext --root=ROOT merge; systemd-sysext unmerge"
    )
    return rounds(
        runs,
        {label: functools.partial(_merge_once, image, name) for label, image in images.items()},
    )


def _merge_once(image: Path, name: str, _: int) -> float:
    return merge_seconds(image, name)
