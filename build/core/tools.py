"""The one table of external tools and the Debian packages that bring them: for the build's
error when a tool is missing (run.require), a test's skip (tests/needs.py) and the boot test
session's check (noxfile.py)."""

from __future__ import annotations

from collections.abc import Iterable

PACKAGES = {
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "mkfs.erofs": "erofs-utils",
    "dump.erofs": "erofs-utils",
    "systemd-sysext": "systemd",
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
    "systemd-dissect": "systemd-container",
    "systemd-nspawn": "systemd-container",
    "systemd-sysupdate": "systemd-container",
    "unshare": "util-linux",
    "setpriv": "util-linux",
    "gpg": "gnupg",
    "gpgv": "gpgv",
    "gpgconf": "gpgconf",
    "gpg-connect-agent": "gpgconf",
    "mount": "mount",
    "sha256sum": "coreutils",
    "ignition-validate": "ignition",
    "gcc": "gcc libc6-dev",
    "debootstrap": "debootstrap",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-x86_64": "qemu-system-x86",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    "mke2fs": "e2fsprogs",
    "cpio": "cpio",
    "sfdisk": "fdisk",
    "veritysetup": "cryptsetup-bin",
    "openssl": "openssl",
    "xz": "xz-utils",
    "zstd": "zstd",
    "softhsm2-util": "softhsm2",
    "pkcs11-tool": "opensc",
}


def package(tool: str) -> str:
    """The package(s) that bring `tool`, as apt-get install takes them; the tool's own name
    where the table does not list it."""
    return PACKAGES.get(tool, tool)


def packages(tools: Iterable[str]) -> str:
    """The packages that bring `tools`, each once, as apt-get install takes them."""
    return " ".join(dict.fromkeys(package(tool) for tool in tools))
