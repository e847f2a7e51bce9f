"""What a run of the real CLI leaves in the test's directory (images, checksums, build records,
temporary files), and releases of a version of the tests' own to build."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Release
from tests.fakes import sums, zip_bytes

OTHER = "1.10.3"  # a version the release fixture has not published: free for our own assets
ZIP = "alloy-linux-amd64.zip"
MEMBER = "alloy-linux-amd64"
_TEMP_NAME = re.compile(r"\..+\.(tmp|old)")


def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "alloy-sysext"


def leftovers(tmp_path: Path) -> list[str]:
    """Temporary files or directories (.NAME.xxxx.tmp, .NAME.xxxx.old) under output or cache."""
    found = []
    for root in (tmp_path / "output", cache_root(tmp_path)):
        if root.exists():
            found += [str(p) for p in root.rglob(".*") if _TEMP_NAME.fullmatch(p.name)]
    return found


def outputs(tmp_path: Path) -> dict[str, bytes]:
    """Every image, checksum and build record under output, by name, with its bytes."""
    output = tmp_path / "output"
    if not output.exists():
        return {}
    found = [*output.rglob("*.raw"), *output.rglob("*.sha256"), *output.rglob("*.buildinfo.json")]
    return {str(p.relative_to(output)): p.read_bytes() for p in found}


def publish_zip(release: Release, version: str, binary: bytes) -> dict[str, bytes]:
    """Publish `version` as an amd64 zip holding `binary`, and its SHA256SUMS."""
    assets = {ZIP: zip_bytes({MEMBER: binary})}
    assets["SHA256SUMS"] = sums(assets)
    release.publish(version, assets)
    return assets
