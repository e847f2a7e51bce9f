"""What is Alloy's: its upstream release, the binary's place and its unit.

The rest of build/ is generic systemd-sysext machinery that takes these names; a second extension
would be a second module like this one (flatcar/sysext-bakery keeps an extension to one script).
"""

from __future__ import annotations

from pathlib import Path

NAME = "alloy"  # the extension's name: extension-release.NAME, NAME.service, image file names

# Upstream: GitHub's release layout, {base}/vVERSION/ASSET, and its releases API.
UPSTREAM_BASE_URL = "https://github.com/grafana/alloy/releases/download"
UPSTREAM_API_URL = "https://api.github.com/repos/grafana/alloy"
RELEASES_PAGE = "https://github.com/grafana/alloy/releases"
DEFAULT_VERSION = "1.10.2"

# Paths inside the image, relative to its root, and on the host.
IMAGE_BINARY = f"usr/local/bin/{NAME}"
STATE_DIR = f"/var/lib/{NAME}"  # StateDirectory={NAME}
DEFAULT_CONFIG_PATH = f"/var/mnt/storage/{NAME}/config.{NAME}"
# What an updated alloy must answer 200 on (its default listen address), and how soon, before a
# host keeps it (build/templates/host/alloy-sysupdate-activate).
DEFAULT_HEALTH_URL = "http://127.0.0.1:12345/-/ready"
HEALTH_TIMEOUT = 60  # seconds
UNIT_TEMPLATE = Path(__file__).parent / "templates" / "image" / f"{NAME}.service"


def asset_member(arch: str) -> str:
    """The one file in a release zip: the binary for `arch` (amd64, arm64)."""
    return f"{NAME}-linux-{arch}"


def asset_zip(arch: str) -> str:
    return f"{asset_member(arch)}.zip"
