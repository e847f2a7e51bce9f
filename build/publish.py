"""invoke release: what a published directory holds beside its images, for fleets.

Over an output directory of built images it writes, each atomically:
  SHA256SUMS                      every image (what sha256sum -c and systemd-sysupdate read)
  index.json                      every image: version, arch, size, sha256, the tools that built it
  sysupdate/ARCH/alloy.transfer   the transfer for a host's /etc/sysupdate.alloy.d/, and the same
  sysupdate/ARCH/alloy.conf       text under the name systemd 256 and older read
  flatcar/alloy-ARCH.bu           Butane: provisions a Flatcar host with the newest ARCH image
  flatcar/alloy-ARCH.ign          the Ignition config (spec 3.3.0) that Butane stands for
Everything is checked before anything is written: a refused directory is left as it was."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import butane, manifest, sysupdate
from .arch import ARCHES
from .checksum import SUMS_FILE, image_sums, write_sums
from .errors import BuildError
from .http import is_loopback
from .render import TEMPLATES, render
from .report import say
from .safeio import read_regular
from .spec import NAME, buildinfo_file, parse_output_name
from .targets import write_text_atomic

INDEX = "index.json"
MAX_BUILDINFO = 1 << 20
SYSUPDATE_DIR = "sysupdate"
FLATCAR_DIR = "flatcar"
FIRST_BOOT_UNIT = f"{NAME}-first-boot.service"
SYSUPDATE_DROPIN = f"{NAME}.conf"  # in systemd-sysupdate.service.d/
# The no-op transfer under the name systemd 257+ reads (.transfer) and the sysext-bakery's, the
# one 256 and older read (.conf), so configs merge.
NOOP_TRANSFERS = ("/etc/sysupdate.d/noop.transfer", "/etc/sysupdate.d/noop.conf")
# Run by the drop-in after an update: merge, restart, health gate, rollback.
ACTIVATE_SCRIPT = f"/opt/{NAME}-sysext/activate"
DEFAULT_HEALTH_URL = "http://127.0.0.1:12345/-/ready"  # Alloy's default listen address
HEALTH_TIMEOUT = 60  # seconds an updated alloy has to become healthy
# The drop-in's TimeoutStartSec=: the download, the gate, and a rollback's second gate.
UPDATE_TIMEOUT = "15min"
# What buildinfo must say for an image to be published (build/pipeline.py writes it).
BUILDINFO_KEYS = (
    "image",
    "version",
    "arch",
    "autostart",
    "config_path",
    "mksquashfs",
    "liblzma",
    "verify",
)
# Plain URLs only: no %, which systemd reads as a specifier, no spaces, quotes, ? or #.
_PUBLISH_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/+=,@-]*)?")


@dataclass(frozen=True)
class Image:
    path: Path
    version: str
    arch: str  # for the compat name: the architecture of the image it is a copy of
    compat_of: str | None  # the versioned image the compat name holds, or None
    sha256: str
    size: int
    buildinfo: dict[str, Any]


def normalize_publish_url(url: str, allow_http: bool = True, option: str = "--publish-url") -> str:
    """The directory URL the files will be served from, ending in /. Plain http:// to another
    host than this machine only with `allow_http`: hosts would fetch root-run images over it."""
    if not _PUBLISH_URL.fullmatch(url):
        raise BuildError(
            f"invalid publish URL {url!r}",
            "give the http(s) URL of the directory the files will be served from, without "
            "%, spaces, quotes, ? or #, e.g. --publish-url=https://example.com/alloy/",
        )
    if url.startswith("http://") and not allow_http and not is_loopback(urlsplit(url).hostname):
        raise BuildError(
            f"refusing plain http:// {option} {url}: hosts would fetch images they run as root "
            "unencrypted",
            "use an https:// URL, or allow plain http with --allow-http (INVOKE_ALLOW_HTTP=true)",
        )
    return url.rstrip("/") + "/"


def normalize_health_url(url: str) -> str:
    """The URL an updated alloy must answer 200 on (run on the host itself: any http(s) URL)."""
    if not _PUBLISH_URL.fullmatch(url):
        raise BuildError(
            f"invalid health URL {url!r}",
            "give the http(s) URL alloy answers 200 on once healthy, without %, spaces, quotes, "
            f"? or #, e.g. --health-url={DEFAULT_HEALTH_URL}",
        )
    return url


def release(
    output_dir: Path,
    publish_url: str,
    update_url: str | None = None,
    allow_http: bool = False,
    health_url: str = DEFAULT_HEALTH_URL,
) -> list[Path]:
    """Write the release files over `output_dir`; return them. Hosts download the image from
    `publish_url` once; sysupdate looks for newer ones at `update_url` (default: the same), e.g.
    a "latest release" address that always serves the newest directory. An updated alloy must
    answer 200 on `health_url` or is rolled back."""
    url = normalize_publish_url(publish_url, allow_http)
    health = normalize_health_url(health_url)
    updates = normalize_publish_url(update_url, allow_http, "--update-url") if update_url else url
    if not output_dir.is_dir():
        raise BuildError(f"no directory {output_dir}", "build images first, e.g. invoke all")
    manifest.own_subdir(output_dir, manifest.STAGING)  # where the lock lives: never a symlink
    with manifest.output_dir_lock(output_dir, shared=True):  # clean waits, and we wait for it
        return _release(output_dir, url, updates, health)


def _release(output_dir: Path, url: str, updates: str, health_url: str) -> list[Path]:
    # Nothing is followed out of the output directory.
    subdirs = [(manifest.STAGING,), (SYSUPDATE_DIR,), (FLATCAR_DIR,)]
    manifest.refuse_links(output_dir, *subdirs, *((SYSUPDATE_DIR, a) for a in ARCHES))
    refuse_prereleases(output_dir)
    sums = image_sums(output_dir)  # hashes every image, checks each against its .sha256
    images = _images(output_dir, sums)
    newest = _newest_per_arch(images)
    texts: dict[Path, str] = {output_dir / INDEX: index_json(images, newest, url)}
    for arch, image in newest.items():
        _check_match_pattern(arch, images)
        transfer = sysupdate.transfer(arch, updates)
        for name in sysupdate.TRANSFER_NAMES:
            texts[output_dir / SYSUPDATE_DIR / arch / name] = transfer
        config = flatcar_config(image, url, transfer, health_url)
        stem = output_dir / FLATCAR_DIR / f"{NAME}-{arch}"
        texts[stem.with_suffix(".bu")] = butane.to_butane(config, _butane_comment(image, url))
        texts[stem.with_suffix(".ign")] = butane.to_ignition(config)
    manifest.refuse_foreign(output_dir, [output_dir / SUMS_FILE, *texts])
    # Only now, with every check passed, does anything change.
    written = [write_sums(output_dir, sums)[0]]
    for path, text in texts.items():
        manifest.make_dirs(output_dir, *path.parent.relative_to(output_dir).parts)
        write_text_atomic(path, text)
        written.append(path)
    manifest.record(output_dir, written)
    _remove_stale(output_dir, set(newest))
    for path in written:
        say("release", f"wrote {path}")
    return written


def refuse_prereleases(output_dir: Path) -> None:
    """A release candidate must never be published: systemd's version order puts 1.11.0-rc.1
    after 1.11.0, so sysupdate would install it over the release."""
    found = sorted(
        path.name
        for path in output_dir.iterdir()
        if not path.name.startswith(".")
        and (parsed := parse_output_name(path.name)) is not None
        and "-rc." in parsed[0]
    )
    if found:
        versions = sorted({parse_output_name(name)[0] for name in found})  # type: ignore[index]
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        cleans = " and ".join(
            f"invoke clean --version={v} --output-dir={output_dir}" for v in versions
        )
        raise BuildError(
            f"{output_dir} holds release candidates ({shown}), which are never published: "
            "systemd-sysupdate orders X.Y.Z-rc.N after X.Y.Z and would install them",
            f"remove them ({cleans}) or release from a directory without them; nothing was written",
        )


def _images(output_dir: Path, sums: list[tuple[Path, str]]) -> list[Image]:
    versioned: dict[str, Image] = {}
    compat: list[tuple[Path, str, str]] = []
    for path, sha256 in sums:
        version, arch = parse_output_name(path.name)  # type: ignore[misc]
        if arch is None:
            compat.append((path, version, sha256))
            continue
        info = _buildinfo(path, version, arch, sha256)
        versioned[path.name] = Image(path, version, arch, None, sha256, path.lstat().st_size, info)
    images = list(versioned.values())
    for path, version, sha256 in compat:
        twin = next(
            (i for i in versioned.values() if i.version == version and i.sha256 == sha256), None
        )
        if twin is None:
            raise BuildError(
                f"{path.name} is the same as no versioned image of {version} in {output_dir}, "
                "so nothing says what built it",
                f"rebuild it with invoke all --version={version} --output-dir={output_dir} "
                "(the --compat-arch image makes it), or remove it",
            )
        images.append(
            Image(
                path,
                version,
                twin.arch,
                twin.path.name,
                sha256,
                path.lstat().st_size,
                twin.buildinfo,
            )
        )
    return sorted(images, key=lambda image: image.path.name)


def _buildinfo(image: Path, version: str, arch: str, sha256: str) -> dict[str, Any]:
    path = buildinfo_file(image)
    rebuild = (
        f"rebuild the image with invoke all --version={version} --arch={arch} "
        f"--output-dir={image.parent}"
    )
    try:
        info = json.loads(read_regular(path, MAX_BUILDINFO, rebuild))
    except FileNotFoundError:
        raise BuildError(f"{image.name} has no {path.name} saying what built it", rebuild) from None
    except (OSError, ValueError) as error:
        raise BuildError(f"cannot read {path}: {error}", rebuild) from None
    missing = [key for key in BUILDINFO_KEYS if not isinstance(info, dict) or key not in info]
    if missing:
        raise BuildError(f"{path} lacks {', '.join(missing)}", rebuild)
    said = (info["image"], info["version"], info["arch"])
    if said != (image.name, version, arch):
        raise BuildError(
            f"{path} describes {said[0]} ({said[1]}, {said[2]}), not {image.name}", rebuild
        )
    verified = info["verify"] if isinstance(info["verify"], dict) else {}
    if verified.get("result") != "passed":
        raise BuildError(
            f"{image.name} is not verified ({path.name} says: {verified.get('result', 'nothing')})"
            ", and only verified images are published",
            f"verify it with invoke verify --version={version} --arch={arch} "
            f"--output-dir={image.parent}, or rebuild it with invoke all",
        )
    if verified.get("sha256") != sha256:
        raise BuildError(
            f"{image.name} is not the image verify passed ({path.name} records sha256 "
            f"{verified.get('sha256')}, the file has {sha256}), and only verified images are "
            "published",
            f"verify it with invoke verify --version={version} --arch={arch} "
            f"--output-dir={image.parent} --force, or rebuild it with invoke all --force",
        )
    for skipped in verified.get("skipped") or []:
        say("release", f"{image.name}: verify could not check {skipped}")
    return info


def _check_match_pattern(arch: str, images: list[Image]) -> None:
    """The transfer's MatchPattern must pick exactly this architecture's versioned images, each
    with its own version: a change to the file-name rule must not publish a blind transfer."""
    pattern = sysupdate.match_pattern(arch)
    for image in images:
        picked = sysupdate.pattern_match(pattern, image.path.name)
        wanted = image.version if image.arch == arch and image.compat_of is None else None
        if picked != wanted:
            raise BuildError(
                f"MatchPattern={pattern} reads {image.path.name} as {picked or 'no match'}, "
                f"not {wanted or 'no match'}",
                "build/sysupdate.py and the image file names (build/spec.py) disagree",
            )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))  # X.Y.Z: prereleases were refused


def _newest_per_arch(images: list[Image]) -> dict[str, Image]:
    newest: dict[str, Image] = {}
    for image in images:
        if image.compat_of is None:
            best = newest.get(image.arch)
            if best is None or _version_key(image.version) > _version_key(best.version):
                newest[image.arch] = image
    return {arch: newest[arch] for arch in ARCHES if arch in newest}


def index_json(images: list[Image], newest: dict[str, Image], url: str) -> str:
    """What the directory holds, for tools and people, without opening an image."""
    index = {
        "name": NAME,
        "publish_url": url,
        "latest": {arch: image.version for arch, image in newest.items()},
        "images": [
            {
                "file": image.path.name,
                "version": image.version,
                "arch": image.arch,
                "compat_of": image.compat_of,
                "size": image.size,
                "sha256": image.sha256,
                "compression": image.buildinfo.get("compression"),
                "autostart": image.buildinfo["autostart"],
                "config_path": image.buildinfo["config_path"],
                "mksquashfs": image.buildinfo["mksquashfs"],
                "liblzma": image.buildinfo["liblzma"],
            }
            for image in images
        ],
    }
    return json.dumps(index, indent=2) + "\n"


def _template(name: str, values: dict[str, str] | None = None) -> str:
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    return render(text, values or {}, f"{name} template")


def flatcar_config(
    image: Image, url: str, transfer: str, health_url: str = DEFAULT_HEALTH_URL
) -> butane.Provisioning:
    """A Flatcar host running `image`, kept current by systemd-sysupdate from `url`; an update
    that does not answer 200 on `health_url` is rolled back."""
    gate = {"HEALTH_URL": health_url, "HEALTH_TIMEOUT": str(HEALTH_TIMEOUT)}
    installed = f"{sysupdate.EXTENSIONS_DIR}/{image.path.name}"
    transfers = tuple(
        butane.File(f"{sysupdate.TRANSFER_DIR}/{name}", 0o644, inline=transfer)
        for name in sysupdate.TRANSFER_NAMES
    )
    files = (
        butane.File(installed, 0o644, source=url + image.path.name, sha256=image.sha256),
        *transfers,
        *(
            butane.File(path, 0o644, inline=_template("sysupdate-noop.conf"))
            for path in NOOP_TRANSFERS
        ),
        butane.File(ACTIVATE_SCRIPT, 0o755, inline=_template("alloy-sysupdate-activate", gate)),
        # 0600: the config will hold credentials; alloy.service runs as root. Never replaced:
        # Ignition stops rather than overwrite a config already there.
        butane.File(
            image.buildinfo["config_path"],
            0o600,
            inline=_template("config.alloy"),
            overwrite=False,
        ),
    )
    units: list[butane.Unit] = []
    if not image.buildinfo["autostart"]:
        # The image starts nothing by itself: enable and start alloy once it is merged.
        units.append(
            butane.Unit(FIRST_BOOT_UNIT, enabled=True, contents=_template(FIRST_BOOT_UNIT))
        )
    units += [
        butane.Unit("systemd-sysupdate.timer", enabled=True),
        butane.Unit(
            "systemd-sysupdate.service",
            dropins=(
                butane.Dropin(
                    SYSUPDATE_DROPIN,
                    _template(
                        "systemd-sysupdate-alloy.conf", {**gate, "TIMEOUT_START": UPDATE_TIMEOUT}
                    ),
                ),
            ),
        ),
    ]
    return butane.Provisioning(
        files=files,
        links=(butane.Link(sysupdate.CURRENT_SYMLINK, installed),),
        units=tuple(units),
    )


def _butane_comment(image: Image, url: str) -> str:
    start = (
        "the image starts alloy itself (built with --autostart)"
        if image.buildinfo["autostart"]
        else f"{FIRST_BOOT_UNIT} enables and starts alloy once the image is merged"
    )
    return (
        f"Grafana Alloy {image.version} ({image.arch}) for Flatcar, from {url}\n"
        f"Written by alloy-sysext's invoke release; {NAME}-{image.arch}.ign is the same config\n"
        "as Ignition JSON (spec 3.3.0). Installs the image with its sha256, links\n"
        f"{sysupdate.CURRENT_SYMLINK} to it, and keeps it current with systemd-sysupdate.timer;\n"
        f"{start}."
    )


def _remove_stale(output_dir: Path, arches: set[str]) -> None:
    """Release files of an architecture no longer in the directory would be published too."""
    recorded = manifest.load(output_dir)
    for arch in set(ARCHES) - arches:
        for path in _arch_files(output_dir, arch):
            if not os.path.lexists(path):
                continue
            if recorded.owns_file(output_dir, manifest.relative(output_dir, path)):
                path.unlink()
                say("release", f"removed {path} (no {arch} image any more)")
            else:
                say("release", f"kept {path}: this tool did not write it, or it changed since")
    remove_empty_release_dirs(output_dir)


def _arch_files(output_dir: Path, arch: str) -> list[Path]:
    paths = [output_dir / SYSUPDATE_DIR / arch / name for name in sysupdate.TRANSFER_NAMES]
    return paths + [output_dir / FLATCAR_DIR / f"{NAME}-{arch}{ext}" for ext in (".bu", ".ign")]


def release_files(output_dir: Path) -> list[Path]:
    """The files `release` writes (for any architecture) that are in `output_dir`."""
    paths = [output_dir / SUMS_FILE, output_dir / INDEX]
    for arch in ARCHES:
        paths += _arch_files(output_dir, arch)
    return [path for path in paths if path.exists()]


def remove_empty_release_dirs(output_dir: Path) -> None:
    arch_dirs = [output_dir / SYSUPDATE_DIR / arch for arch in ARCHES]
    recorded = manifest.load(output_dir)
    for directory in (*arch_dirs, output_dir / SYSUPDATE_DIR, output_dir / FLATCAR_DIR):
        relative = manifest.relative(output_dir, directory)
        if recorded.owns_dir(output_dir, relative) and not any(directory.iterdir()):
            directory.rmdir()
