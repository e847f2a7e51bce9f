"""A full disk, for real: a run of the CLI with a small tmpfs mounted in a mount namespace of
its own (unshare -m; the mount goes with it). Where that cannot be done (no root, no unshare,
a mount refused), the test skips and says why, or under CI=true fails (tests/needs.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import INVOKE_CLI
from tests.needs import need, unavailable

WHY = "mounting a small tmpfs"


def run_on_small_tmpfs(
    env: dict[str, str], tmp_path: Path, mount_at: Path, script: str, size: str = "1m"
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `script` (sh, with $INVOKE the CLI and $AT the mount point) in `tmp_path` with a
    `size` tmpfs mounted at `mount_at`, then list every path under it, from inside the
    namespace."""
    need("unshare", "mount", root=WHY)
    mount_at.mkdir(parents=True, exist_ok=True)
    listing, mounted = tmp_path / "listing", tmp_path / "mounted"
    wrapper = (
        f'mount -t tmpfs -o size={size} tmpfs "$AT" && : > "$MOUNTED" && {{ {script}; }}; '
        'code=$?; find "$AT" -mindepth 1 > "$LISTING"; exit $code'
    )
    invoke = " ".join(f"'{part}'" for part in INVOKE_CLI)
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", wrapper.replace("$INVOKE", invoke)],
        cwd=tmp_path,
        env={**env, "AT": str(mount_at), "LISTING": str(listing), "MOUNTED": str(mounted)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if not mounted.exists():
        unavailable(f"cannot mount a tmpfs in a mount namespace here: {result.stderr.strip()}")
    found = listing.read_text().split("\n") if listing.exists() else []
    return result, [line for line in found if line]
