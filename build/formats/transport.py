"""The transport table: how `invoke release --transport` compresses an image for the wire.

systemd-sysupdate's url-file sources are fetched by systemd-pull, which decompresses by the
bytes' magic while it downloads and installs the plain image; the SHA256SUMS line hashes the
compressed file. A host keeps the image uncompressed (fast to read), the feed sends it small.

Every setting that decides the bytes is fixed here, the thread count included: xz -T1 writes
other bytes than -T2 (single-threaded mode records no sizes in its block headers), while -T2
and more give the same for a fixed --block-size; -T0 would follow the machine's cores. zstd -19
gives the same bytes for any thread count. The bytes still depend on the tool's version, which
index.json records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from build.core.run import tool_environment

NONE = "none"  # --transport's default: only the plain images, as before the option existed
THREADS = 2  # never 0 (the machine's cores) and never 1 for xz (other bytes)


@dataclass(frozen=True)
class Transport:
    name: str  # --transport's choice; "transport" in index.json
    suffix: str  # added to the image's name: alloy-1.10.2-amd64.raw.xz
    program: str
    settings: tuple[str, ...]  # everything that decides the bytes but the thread count
    threads_flag: str  # the thread-count option, its value appended
    systemd: int  # the oldest systemd whose systemd-sysupdate installs it decompressed
    note: str  # what a host needs, for the transfer and Butane comments

    def argv(self, image: Path, threads: int = THREADS) -> list[str]:
        """The command that writes `image` compressed to its stdout."""
        return [self.program, *self.settings, f"{self.threads_flag}{threads}", "--", str(image)]


TRANSPORTS: dict[str, Transport] = {
    "xz": Transport(
        "xz",
        ".xz",
        "xz",
        (
            "--compress",
            "--stdout",
            "--format=xz",
            "--check=crc64",
            "-6",
            "--block-size=32MiB",
            # Fail rather than fall back to one thread (other bytes) under a memory limit.
            "--no-adjust",
        ),
        "--threads=",
        251,  # systemd-sysupdate's first release; systemd-pull decompresses xz since 219
        "xz: systemd 251 and newer (every systemd-sysupdate, every Flatcar channel) decompress it",
    ),
    "zstd": Transport(
        "zstd",
        ".zst",
        "zstd",
        ("--compress", "--stdout", "--quiet", "--no-progress", "-19"),
        "-T",
        262,
        "zstd: needs systemd 262 or newer; 257's systemd-pull installs the zstd bytes "
        "unchanged as the image, and exits 0",
    ),
}


def environment() -> dict[str, str]:
    """Nothing of the caller's environment but PATH: XZ_DEFAULTS and XZ_OPT add options the
    table's do not undo (a --block-list moves the block boundaries; a memory limit switches
    xz to single-threaded mode and shrinks its dictionary), which would change the bytes."""
    return tool_environment()


CHOICES = (NONE, *TRANSPORTS)  # --transport's choices, the default first
