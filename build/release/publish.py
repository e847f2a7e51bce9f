"""invoke release: what a published directory holds beside its images, for fleets.

Over an output directory of built images it writes, each atomically:
  SHA256SUMS                      every image (what sha256sum -c and systemd-sysupdate read)
  index.json                      every image: version, arch, size, sha256, the tools that built it
  sysupdate/ARCH/alloy.transfer   the transfer for a host's /etc/sysupdate.alloy.d/, and the same
  sysupdate/ARCH/alloy.conf       text under the name systemd 256 and older read
  flatcar/alloy-ARCH.bu           Butane: provisions a Flatcar host with the newest ARCH image
  flatcar/alloy-ARCH.ign          the Ignition config (spec 3.3.0) that Butane stands for
Signed (a gpg key given), also:
  SHA256SUMS.gpg                  a detached signature of exactly SHA256SUMS (Verify=yes)
  alloy-release-key.gpg/.asc      the public key that checks it, binary and armored
Signed DDIs with their certificate given (--verity-cert), also:
  alloy-verity.crt                the certificate their dm-verity signatures verify against,
                                  which the Butane config writes to hosts' /etc/verity.d
Everything is checked before anything is written: a refused directory is left as it was."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build import alloy
from build.config.spec import NAME, parse_output_name
from build.core.errors import BuildError
from build.core.fileio import atomic_path, write_text_atomic
from build.core.report import listing, say
from build.formats.table import FORMATS, Format, format_named, image_format, recorded_format
from build.formats.transport import THREADS
from build.image import buildinfo, content, render
from build.image.checksum import image_sums, packed_alone, sums_text, write_sums
from build.keys import signing
from build.keys.veritycert import Certificate, load_certificate
from build.model import manifest
from build.model.arch import ARCHES
from build.model.ddi import SIGNED_IMAGE_POLICY
from build.model.names import (
    FLATCAR_DIR,
    INDEX,
    STAGING,
    STREAMS_DIR,
    SUMS_FILE,
    SYSUPDATE_DIR,
    VERITY_CERT_FILE,
    buildinfo_file,
    checksum_file,
)
from build.model.versions import version_key
from build.release import butane, compressed, host, streams, sysupdate
from build.release.compressed import compressed_path
from build.release.verity import (
    Verity,
    check_recorded,
    check_signed_by,
    refuse_policy_without_certificate,
    verity_of,
)
from build.verify import checks as verify
from build.verify.unwrap import VerityExpectations

DEFAULT_HEALTH_URL = alloy.DEFAULT_HEALTH_URL
HEALTH_TIMEOUT = alloy.HEALTH_TIMEOUT
# The drop-in's TimeoutStartSec=: the download, the gate, and a rollback's second gate.
UPDATE_TIMEOUT = "15min"
UNSIGNED_NOTE = (
    "unsigned (no --sign-key): no SHA256SUMS.gpg, so the transfers say Verify=false: hosts "
    "check each image against SHA256SUMS, but nothing proves who wrote SHA256SUMS"
)
# What buildinfo must say for an image to be published (build/pipeline/steps.py writes it),
# and the tools that packed it (its format's, build/formats/table.py).
BUILDINFO_KEYS = ("image", "version", "arch", "compression", "autostart", "config_path", "verify")


@dataclass(frozen=True)
class Image:
    path: Path
    version: str
    arch: str  # for the compat name: the architecture of the image it is a copy of
    compat_of: str | None  # the versioned image the compat name holds, or None
    sha256: str
    size: int
    buildinfo: dict[str, Any]
    verity: Verity | None = None  # a DDI's, as its build info records it


@dataclass(frozen=True)
class HostTrust:
    """What a release makes hosts check beyond SHA256SUMS: its gpg key (Verify=yes), the
    certificate of its signed DDIs (/etc/verity.d), and whether hosts merge signed images only."""

    signer: signing.Signer | None = None
    certificate: Certificate | None = None
    require_signed: bool = False


@dataclass(frozen=True)
class Feed:
    """Which feed a release writes: the default one ("latest": every version, at the URLs
    themselves) or a minor line's (--stream, in streams/X.Y/), and its floor (--min-version)."""

    stream: str | None = None
    min_version: str | None = None
    sending: compressed.Sending = field(default_factory=compressed.Sending)  # --transport(-only)


def release(
    output_dir: Path,
    publish_url: str,
    update_url: str | None = None,
    signer: signing.Signer | None = None,
    health_url: str = DEFAULT_HEALTH_URL,
    verity_cert: Path | None = None,
    require_signed_images: bool = False,
    feed: Feed = Feed(),
) -> list[Path]:
    """Write the release files over `output_dir`; return them. Hosts download the image from
    `publish_url` once; sysupdate looks for newer ones at `update_url` (default: the same), e.g.
    a "latest release" address that always serves the newest directory. With `signer`, the
    release is signed (SHA256SUMS.gpg, the public key, Verify=yes). With `verity_cert`, every
    image must be a DDI signed by its key, and hosts get the certificate in /etc/verity.d; with
    `require_signed_images` too, they merge no extension that is not signed so. An updated alloy
    must answer 200 on `health_url` or is rolled back. `feed`: the stream written (its files in
    streams/X.Y/, fetched from both URLs + streams/X.Y/) and its floor. The URLs come checked
    and ending in / from the option table (build/config/options.py served_url, health_url)."""
    url, health = publish_url, health_url
    updates = update_url or url
    refuse_policy_without_certificate(require_signed_images, verity_cert)
    certificate = load_certificate(verity_cert) if verity_cert else None
    trust = HostTrust(signer, certificate, require_signed_images)
    if not output_dir.is_dir():
        raise BuildError(f"no directory {output_dir}", "build images first, e.g. invoke all")
    manifest.own_subdir(output_dir, STAGING)  # where the lock lives: never a symlink
    # Alone in the directory: builds, clean, sums and other releases wait, and we wait for
    # them, so no SHA256SUMS.gpg of one key is published beside another key.
    with manifest.output_dir_lock(output_dir):
        return _release(output_dir, url, updates, trust, health, feed)


def _release(
    output_dir: Path, url: str, updates: str, trust: HostTrust, health_url: str, feed: Feed
) -> list[Path]:
    signer = trust.signer
    base = streams.directory(output_dir, feed.stream) if feed.stream else output_dir
    where = manifest.relative(output_dir, base)
    # Nothing is followed out of the output directory.
    subdirs = [(STAGING,), (STREAMS_DIR,), *_feed_subdirs(output_dir, base)]
    manifest.refuse_links(output_dir, *subdirs)
    refuse_prereleases(output_dir)
    sums = image_sums(output_dir)  # hashes every image, checks each against its .sha256
    images = _images(output_dir, sums, trust.certificate)
    refuse_mixed_formats(output_dir, images)
    if feed.stream:  # its line's versioned images, linked into its own directory
        images = streams.line_images(output_dir, images, feed.stream)
        sums = [(base / image.path.name, image.sha256) for image in images]
        url, updates = url + streams.url_path(feed.stream), updates + streams.url_path(feed.stream)
    compressed.refuse(feed.sending, _compressions(images))
    linked = [path for path, _ in sums] if feed.stream else []  # its plain images
    newest = _newest_per_arch(images)
    shown = f"{where}/" if feed.stream else str(output_dir)
    streams.refuse_floor_above_newest(
        feed.min_version, {arch: image.version for arch, image in newest.items()}, shown
    )
    listed = [] if feed.stream else streams.published(output_dir)
    sent, earlier = _to_send(output_dir, base, images, feed.sending)
    # Compressed under temporary names, renamed once every check below passed.
    with compressed.prepared(sent, feed.sending, earlier, output_dir, base) as made:
        sums = _sent_sums(sums, made, feed.sending)
        texts = {base / INDEX: index_json(images, newest, url, trust, feed, listed, made)}
        texts.update(_host_texts(base, images, newest, (url, updates), trust, health_url, feed))
        signed = _signed(base, trust, sums)
        manifest.refuse_foreign(output_dir, [base / SUMS_FILE, *texts, *signed, *linked])
    # Only now, with every check passed (the signature made and verified), does anything change.
    written = compressed.fresh(made, earlier)
    manifest.record(output_dir, written)  # now: a release failing below leaves them the tool's
    written += _write_images_and_sums(output_dir, base, images, sums) if feed.stream else []
    written += [] if feed.stream else [write_sums(output_dir, sums)[0]]
    for path, text in texts.items():
        manifest.make_dirs(output_dir, *path.parent.relative_to(output_dir).parts)
        write_text_atomic(path, text)
        written.append(path)
    written += write_binaries(signed)
    manifest.record(output_dir, written)
    _remove_stale(output_dir, set(newest), base)
    if feed.stream:
        streams.remove_stale_images(output_dir, base, linked)
        written += _relist_streams(output_dir)
    compressed.remove_stale(output_dir, base, [piece.path for piece in made])
    for path in written:
        say("release", f"wrote {path}")
    _say_verity(output_dir, trust, base)
    _say_feed(feed, url, listed, output_dir)
    if signer is None:
        remove_signature(output_dir, "release", base)
        say("release", UNSIGNED_NOTE)
    else:
        say("release", f"signed SHA256SUMS with {signer.fingerprint} (checked with gpgv)")
    return written


def _compressions(images: list[Image]) -> dict[str, str]:
    """Each versioned image's filesystem compression, as its build info records it."""
    return {
        image.path.name: str(image.buildinfo.get("compression"))
        for image in images
        if image.compat_of is None
    }


def _to_send(
    output_dir: Path, base: Path, images: list[Image], sending: compressed.Sending
) -> tuple[list[Path], dict[Path, compressed.Compressed]]:
    """The images sent compressed (the versioned ones: sysupdate never fetches a compat name)
    into the feed in `base`, and those an earlier release already compressed. Their names are
    checked first: no file of another's is overwritten, and no minutes are spent before that
    refusal."""
    sent = [image.path for image in images if image.compat_of is None]
    table = sending.table
    if table is None:
        return [], {}
    manifest.refuse_foreign(output_dir, [compressed_path(path, table, base) for path in sent])
    return sent, _earlier_sent(output_dir, base, images, sending)


def _earlier_sent(
    output_dir: Path, base: Path, images: list[Image], sending: compressed.Sending
) -> dict[Path, compressed.Compressed]:
    """The compressed files an earlier release wrote that this one keeps, by image: this
    feed's own first, else another feed's (the default feed's, a stream's), which is linked
    in: the same image is compressed once, whichever feed sent it first."""
    how = _how_sent(_transport_fields(sending))
    published = [streams.directory(output_dir, stream) for stream in streams.published(output_dir)]
    recorded = manifest.load(output_dir)
    found: dict[Path, compressed.Compressed] = {}
    for feed in dict.fromkeys([base, output_dir, *published]):
        for image, piece in _sent_in(recorded, output_dir, feed, images, sending, how).items():
            found.setdefault(image, piece)
    return found


def _sent_in(
    recorded: manifest.Manifest,
    output_dir: Path,
    feed: Path,
    images: list[Image],
    sending: compressed.Sending,
    how: object,
) -> dict[Path, compressed.Compressed]:
    """The compressed files of `feed` an earlier release wrote, by image: its index.json (the
    tool's, unchanged) says they hold the same image bytes, compressed with the same settings
    (`how`) by the same tool, and the manifest (`recorded`) that nobody changed them since."""
    table, index_path = sending.table, feed / INDEX
    text = recorded.read_owned(output_dir, manifest.relative(output_dir, index_path))
    if table is None or text is None:
        return {}
    index = json.loads(text)
    if _how_sent(index.get("transport")) != how:
        return {}
    by_name = {image.path.name: image for image in images if image.compat_of is None}
    found: dict[Path, compressed.Compressed] = {}
    for entry in index.get("images", []):
        image, sent = by_name.get(entry.get("file")), entry.get("sent")
        if image is None or not isinstance(sent, dict) or entry.get("sha256") != image.sha256:
            continue
        path = compressed_path(image.path, table, feed)
        name = manifest.relative(output_dir, path)
        same = sent.get("file") == path.name and recorded.files.get(name) == sent.get("sha256")
        if same and recorded.owns_file(output_dir, name):  # and unchanged since
            found[image.path] = compressed.Compressed(
                image.path, path, sent["sha256"], path.stat().st_size
            )
    return found


def _how_sent(fields: object) -> object:
    """What decides a compressed file's bytes, of index.json's "transport"."""
    if not isinstance(fields, dict):
        return None
    return (fields.get("format"), fields.get("tool"), fields.get("settings"))


def _sent_sums(
    sums: list[tuple[Path, str]], made: list[compressed.Compressed], sending: compressed.Sending
) -> list[tuple[Path, str]]:
    """SHA256SUMS's lines: the plain images (unless --transport-only) and the compressed ones,
    by name, as sysupdate fetches them (it hashes the compressed file)."""
    if not made:
        return sums
    plain = [] if sending.only else sums
    return sorted([*plain, *((piece.path, piece.sha256) for piece in made)], key=_by_name)


def _by_name(pair: tuple[Path, str]) -> str:
    return pair[0].name


def _signed(base: Path, trust: HostTrust, sums: list[tuple[Path, str]]) -> dict[Path, bytes]:
    """SHA256SUMS.gpg and the public keys (signed), the verity certificate (given)."""
    signed = signed_files(base, trust.signer, sums_text(sums)) if trust.signer else {}
    if trust.certificate is not None:
        signed[base / VERITY_CERT_FILE] = trust.certificate.pem.encode("ascii")
    return signed


def _host_texts(
    base: Path,
    images: list[Image],
    newest: dict[str, Image],
    urls: tuple[str, str],
    trust: HostTrust,
    health_url: str,
    feed: Feed,
) -> dict[Path, str]:
    """Each architecture's transfers and Butane/Ignition config, by where they go in `base`;
    `urls`: where hosts download the image at provisioning, and where updates are looked for."""
    url, updates = urls
    texts: dict[Path, str] = {}
    for arch, image in newest.items():
        _check_match_pattern(arch, images)
        transfer = sysupdate.transfer(
            arch, updates, trust.signer is not None, feed.min_version, feed.sending.table
        )
        for name in host.TRANSFER_NAMES:
            texts[base / SYSUPDATE_DIR / arch / name] = transfer
        config = flatcar_config(image, url, transfer, trust, health_url)
        stem = base / FLATCAR_DIR / f"{NAME}-{arch}"
        comment = _butane_comment(image, url, trust, feed)
        texts[stem.with_suffix(".bu")] = butane.to_butane(config, comment)
        texts[stem.with_suffix(".ign")] = butane.to_ignition(config)
    return texts


def _feed_subdirs(output_dir: Path, base: Path) -> list[tuple[str, ...]]:
    """The feed's directories (each a tuple of parts under the output directory): never
    followed when they are links."""
    parts = Path(manifest.relative(output_dir, base)).parts if base != output_dir else ()
    levels = [parts[:n] for n in range(1, len(parts) + 1)]
    return [*levels, (*parts, SYSUPDATE_DIR), (*parts, FLATCAR_DIR)] + [
        (*parts, SYSUPDATE_DIR, arch) for arch in ARCHES
    ]


def _write_images_and_sums(
    output_dir: Path,
    base: Path,
    images: Sequence[streams.Published],
    sums: list[tuple[Path, str]],
) -> list[Path]:
    """A stream's images (linked), then its SHA256SUMS: never a line for a file not there."""
    manifest.make_dirs(output_dir, *Path(manifest.relative(output_dir, base)).parts)
    written = streams.link_images(output_dir, base, images)
    write_text_atomic(base / SUMS_FILE, sums_text(sums))
    return [*written, base / SUMS_FILE]


def _relist_streams(output_dir: Path) -> list[Path]:
    """A stream released: the default feed's index.json, where a release wrote it, lists it
    too (its "streams"), whichever of the two was released first. Returns what it rewrote."""
    path = output_dir / INDEX
    if not os.path.lexists(path):
        return []  # the default feed's release lists every stream there is
    text = manifest.load(output_dir).read_owned(output_dir, INDEX)
    if text is None:
        say("release", f"kept {path}: this tool did not write it, or it changed since")
        return []
    index = json.loads(text)  # the tool's, unchanged (and locked)
    index["streams"] = streams.listing(streams.published(output_dir))
    write_text_atomic(path, json.dumps(index, indent=2) + "\n")
    manifest.record(output_dir, [path])
    return [path]


def _say_feed(feed: Feed, url: str, listed: list[str], output_dir: Path) -> None:
    """What hosts of this feed get; for the default feed, the streams it lists, and any whose
    images were removed from the output directory by hand (its links still serve them)."""
    for stream in listed:
        gone = streams.orphans(output_dir, stream)
        if gone:
            say(
                "release",
                f"stream {stream} still offers {', '.join(gone)}, no longer in {output_dir}: "
                f"invoke release --stream={stream} brings its feed up to date",
            )
    if listed:
        say("release", f"index.json lists the streams {', '.join(listed)}")
    if feed.stream:
        say(
            "release",
            f"stream {feed.stream}: hosts provisioned with its Butane config fetch "
            f"{feed.stream}.Z updates from {url}, never another minor line",
        )
    if feed.min_version:
        say("release", f"floor: hosts install no version below {feed.min_version} (MinVersion=)")


def _say_verity(output_dir: Path, trust: HostTrust, base: Path) -> None:
    if trust.certificate is None:
        remove_recorded(
            output_dir, (VERITY_CERT_FILE,), "release", "release with --verity-cert", base
        )
        return
    fingerprint = trust.certificate.fingerprint
    say("release", f"every image is signed by {trust.certificate.path} (sha256 {fingerprint})")
    if trust.require_signed:
        say(
            "release",
            "hosts merge only signed extensions (--image-policy="
            f"{SIGNED_IMAGE_POLICY}): every extension on them, not only alloy",
        )


def signed_files(output_dir: Path, signer: signing.Signer, sums: str) -> dict[Path, bytes]:
    """SHA256SUMS.gpg over the text `sums` (made and checked with gpgv now) and the public
    key, binary and armored, by where they go; nothing is written yet."""
    return {
        output_dir / signing.SIGNATURE_FILE: signing.sign(signer, sums.encode("utf-8")),
        output_dir / signing.PUBLIC_KEY_FILE: signer.public_key,
        output_dir / signing.PUBLIC_KEY_ARMORED: signer.public_key_armored.encode("ascii"),
    }


def write_binaries(files: dict[Path, bytes]) -> list[Path]:
    for path, data in files.items():
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return list(files)


def remove_signature(output_dir: Path, step: str, base: Path | None = None) -> None:
    """An earlier signed release's signature and keys: the signature no longer signs this
    SHA256SUMS, and a key beside an unsigned release would mislead. Removed where they are the
    tool's (the manifest says so), kept and named otherwise. `base`: the feed's directory."""
    remove_recorded(output_dir, signing.SIGNED_FILES, step, "signed release", base)


def remove_recorded(
    output_dir: Path, names: tuple[str, ...], step: str, earlier: str, base: Path | None = None
) -> None:
    """The files `names` (in `base`, default the output directory) an earlier `earlier` wrote:
    removed where they are the tool's (the manifest says so), kept and named otherwise."""
    recorded = manifest.load(output_dir)
    for name in names:
        path = (base or output_dir) / name
        if not os.path.lexists(path):
            continue
        recorded.remove_if_owned(output_dir, path, step, f"from an earlier {earlier}")


def write_signed_sums(
    output_dir: Path, signer: signing.Signer | None, stream: str | None = None
) -> tuple[Path, int]:
    """invoke sums: SHA256SUMS afresh over every image (with `stream`: over its line's images,
    linked into its feed as release links them); signed again with `signer`, or else an
    earlier signature is removed unless SHA256SUMS is byte for byte the one it signed."""
    if not output_dir.is_dir():  # before the lock, which would make the directory
        raise BuildError(f"no images in {output_dir}", "build them first, e.g. invoke all")
    manifest.own_subdir(output_dir, STAGING)
    with manifest.output_dir_lock(output_dir):  # as release: alone
        _refuse_sums_of_a_sent_release(output_dir, stream)
        sums = image_sums(output_dir)
        base, images = output_dir, list[streams.Named]()
        if stream:
            base, images, sums = _stream_sums(output_dir, stream, sums)
        text = sums_text(sums)
        signed = signed_files(base, signer, text) if signer else {}
        linked = [path for path, _ in sums] if stream else []
        manifest.refuse_foreign(output_dir, [*signed, *linked, base / SUMS_FILE])
        try:
            before = (base / SUMS_FILE).read_bytes()
        except OSError:
            before = None
        if stream:
            manifest.record(output_dir, _write_images_and_sums(output_dir, base, images, sums))
            streams.remove_stale_images(output_dir, base, linked)
            path, count = base / SUMS_FILE, len(sums)
        else:
            path, count = write_sums(output_dir, sums)
        if signer:
            manifest.record(output_dir, write_binaries(signed))
            say("sums", f"signed {path} with {signer.fingerprint} (checked with gpgv)")
        elif before != text.encode("utf-8") and os.path.lexists(base / signing.SIGNATURE_FILE):
            remove_signature(output_dir, "sums", base)
            say("sums", f"{path} changed, so it is unsigned now: sign it with --sign-key")
        return path, count


def _refuse_sums_of_a_sent_release(output_dir: Path, stream: str | None) -> None:
    """invoke sums lists images only: over a release (of `stream`'s feed) sent compressed
    (--transport) it would drop the compressed files its transfers fetch, and hosts would
    find no update."""
    base = streams.directory(output_dir, stream) if stream else output_dir
    if stream:  # never followed out of the output directory
        manifest.refuse_links(output_dir, *_feed_subdirs(output_dir, base))
    path = base / INDEX
    text = manifest.load(output_dir).read_owned(output_dir, manifest.relative(output_dir, path))
    if text is None:
        return
    sent = json.loads(text).get("transport")
    if isinstance(sent, dict):
        how = str(sent.get("format"))[:20]
        again = f"invoke release --transport={how}" + (f" --stream={stream}" if stream else "")
        raise BuildError(
            f"{path} says the release sends its images compressed ({how}), and invoke sums "
            "would list only the plain ones: hosts would find no update",
            f"run {again} again instead; nothing was written",
        )


def _stream_sums(
    output_dir: Path, stream: str, sums: list[tuple[Path, str]]
) -> tuple[Path, list[streams.Named], list[tuple[Path, str]]]:
    """invoke sums --stream: the feed release wrote for `stream`, its line's images in the
    output directory, and their lines of its SHA256SUMS (the linked names in the feed)."""
    base = streams.directory(output_dir, stream)
    manifest.refuse_links(output_dir, *_feed_subdirs(output_dir, base))
    if not (base / INDEX).is_file():
        raise BuildError(
            f"no feed of stream {stream} in {output_dir} ({streams.url_path(stream)} has no "
            f"{INDEX}): invoke sums rewrites a feed, release writes it",
            f"write it with invoke release --stream={stream} --publish-url=URL; nothing was "
            "written",
        )
    refuse_prereleases(output_dir)  # as release: never a candidate in a feed
    found = [image for path, _ in sums if (image := streams.named(path)) is not None]
    images = streams.line_images(output_dir, found, stream)
    by_path = dict(sums)
    return base, images, [(base / image.path.name, by_path[image.path]) for image in images]


def refuse_prereleases(output_dir: Path) -> None:
    """A release candidate must never be published: systemd's version order puts 1.11.0-rc.1
    after 1.11.0, so sysupdate would install it over the release."""
    candidates = {
        path.name: parsed[0]
        for path in output_dir.iterdir()
        if not path.name.startswith(".")
        and (parsed := parse_output_name(path.name)) is not None
        and "-rc." in parsed[0]
    }
    found = sorted(candidates)
    if found:
        versions = sorted(set(candidates.values()))
        shown = listing(found, ", ", most=120)
        cleans = listing(
            (f"invoke clean --version={v} --output-dir={output_dir}" for v in versions), " and "
        )
        raise BuildError(
            f"{output_dir} holds release candidates ({shown}), which are never published: "
            "systemd-sysupdate orders X.Y.Z-rc.N after X.Y.Z and would install them",
            f"remove them ({cleans}) or release from a directory without them; nothing was written",
        )


def _format(image: Image) -> Format:
    """Its format, as its build info names it (parsed by --format's parser: in the table)."""
    return FORMATS[image.buildinfo["format"]]


def refuse_mixed_formats(output_dir: Path, images: list[Image]) -> None:
    """One release directory, one format: a host's transfer file picks images by name, which
    cannot tell squashfs from EROFS, and a host without EROFS (Flatcar LTS) must never be
    offered one. A DDI counts as its own format, and one with EROFS inside as another format
    than one with squashfs inside."""
    by_format: dict[str, list[str]] = {}
    for image in images:
        name = _format(image).name
        if image.verity is not None and image.verity.filesystem:
            name += f" ({image.verity.filesystem})"
        by_format.setdefault(name, []).append(image.path.name)
    if len(by_format) > 1:
        formats = sorted(by_format.items())
        listed = "; ".join(f"{f}: {listing(names, ', ', 80)}" for f, names in formats)
        raise BuildError(
            f"{output_dir} mixes image formats ({listed}): a host's transfer cannot tell them "
            "apart by name, and a host without EROFS (Flatcar LTS) must never get one",
            "release each format from an output directory and a URL of its own, e.g. "
            "--output-dir=output-erofs; nothing was written",
        )


def _images(
    output_dir: Path, sums: list[tuple[Path, str]], certificate: Certificate | None
) -> list[Image]:
    """Every image with its build info and verity, checked (with `certificate`: each a DDI
    signed by it)."""
    checked_against = certificate.path if certificate is not None else None
    versioned: dict[str, Image] = {}
    compat: list[tuple[Path, str, str]] = []
    for path, sha256 in sums:
        version, arch = parse_output_name(path.name)  # type: ignore[misc]
        if arch is None:
            compat.append((path, version, sha256))
            continue
        info = _buildinfo(path, version, arch, sha256)
        verity = verity_of(info) if FORMATS[info["format"]].inner else None
        if certificate is not None:  # what the build info says first: cheap, and plain
            check_signed_by(path, verity, certificate)
        _static_checks(path, info, arch, checked_against)
        if verity is not None:  # what index.json will say of it
            check_recorded(path, verity)
        size = path.lstat().st_size
        versioned[path.name] = Image(path, version, arch, None, sha256, size, info, verity)
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
        _static_checks(path, twin.buildinfo, twin.arch, checked_against)  # the same bytes
        images.append(
            Image(
                path,
                version,
                twin.arch,
                twin.path.name,
                sha256,
                path.lstat().st_size,
                twin.buildinfo,
                twin.verity,
            )
        )
    return sorted(images, key=lambda image: image.path.name)


def _buildinfo(image: Path, version: str, arch: str, sha256: str) -> dict[str, Any]:
    path = buildinfo_file(image)
    rebuild = (
        f"rebuild the image with invoke all --version={version} --arch={arch} "
        f"--output-dir={image.parent}"
    )
    if not os.path.lexists(path):
        raise BuildError(f"{image.name} has no {path.name} saying what built it", rebuild)
    info = buildinfo.load(path, rebuild)
    packed_as = recorded_format(info)
    fmt = format_named(packed_as)
    if fmt is None:
        raise BuildError(f"{path} names an unknown format {str(packed_as)[:40]!r}", rebuild)
    missing = [key for key in (*BUILDINFO_KEYS, *fmt.tools) if key not in info]
    if missing:
        raise BuildError(f"{path} lacks {', '.join(missing)}", rebuild)
    if image_format(image) != fmt.name:
        raise BuildError(f"{image.name} is not {fmt.name}, which {path.name} says it is", rebuild)
    # Every field goes into index.json, units and Butane as the build's options would: through
    # the same parsers, so a config_path with a newline is no ExecStartPre= of a root unit.
    info = buildinfo.parse_fields(path, info, fmt.tools)
    said = (info["image"], info["version"], info["arch"])
    if said != (image.name, version, arch):
        raise BuildError(
            f"{path} describes {said[0]} ({said[1]}, {said[2]}), not {image.name}", rebuild
        )
    verified = info["verify"] if isinstance(info["verify"], dict) else {}
    if verified.get("result") != "passed":
        if not os.path.lexists(checksum_file(image)):  # nothing ran after it: verify cannot
            raise packed_alone(
                image,
                f"it has no {checksum_file(image).name}, is not verified and cannot be published",
            )
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
    for skipped in verified.get("skipped") or []:  # lines of text (parse_fields)
        say("release", f"{image.name}: verify could not check {skipped}")
    return info


def _static_checks(image: Path, info: dict[str, Any], arch: str, certificate: Path | None) -> None:
    """verify's static checks, again, on the image as it is now, expecting what its build info
    says it was built with: an image swapped after its build (an uploaded artifact, a copy)
    is refused, however its .sha256 and build info were made to match. A DDI's hash tree is
    recomputed, and its signature checked against `certificate` (--verity-cert): a signed
    DDI without one is refused, as verify refuses it."""
    expect = verify.Expectations(
        compression=info["compression"],
        names=[image.name],
        checksums=[pair for pair in verify.checksums_of([image]) if pair[1].exists()],
        # An image an earlier release built lacks the files every build now adds.
        required=verify.required_files(
            info["autostart"], bool(info["trust_keys"]), info["run_as"], built_now=False
        ),
        optional=[content.RESTART_UNIT.path],
        verity=VerityExpectations(certificate, None, arch),
    )
    checks = verify.static_checks(image, expect)
    failed = verify.failure(image, checks)
    if failed:
        raise BuildError(
            failed + ", so it is not published",
            f"rebuild it with invoke all --force --output-dir={image.parent}, or remove it; "
            "nothing was written",
        )
    say("release", f"{image.name}: {len(checks)} static checks of verify passed again")


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
                "build/release/sysupdate.py and the image file names (build/config/spec.py) "
                "disagree",
            )


def _newest_per_arch(images: list[Image]) -> dict[str, Image]:
    newest: dict[str, Image] = {}
    for image in images:
        if image.compat_of is None:
            best = newest.get(image.arch)
            if best is None or version_key(image.version) > version_key(best.version):
                newest[image.arch] = image
    return {arch: newest[arch] for arch in ARCHES if arch in newest}


def index_json(
    images: list[Image],
    newest: dict[str, Image],
    url: str,
    trust: HostTrust = HostTrust(),
    feed: Feed = Feed(),
    listed: Sequence[str] = (),
    made: Sequence[compressed.Compressed] = (),
) -> str:
    """What the directory holds, for tools and people, without opening an image: a DDI's
    root hash and whether it is signed, by which certificate, beside its format; the stream
    and floor where given; the default feed's, the streams published beside it (`listed`)."""
    index: dict[str, Any] = {
        "name": NAME,
        "publish_url": url,
        **({"stream": feed.stream} if feed.stream else {}),
        **({"min_version": feed.min_version} if feed.min_version else {}),
        **({"streams": streams.listing(listed)} if listed else {}),
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
                "format": _format(image).name,
                **{tool: image.buildinfo[tool] for tool in _format(image).tools},
                "trust_keys": _trust_keys(image),
                **(image.verity.index_fields() if image.verity else {}),
                **_sent_fields(image, made),
            }
            for image in images
        ],
    }
    if made:
        index["transport"] = _transport_fields(feed.sending)
    if trust.certificate is not None:
        index["verity_certificate"] = {
            "file": VERITY_CERT_FILE,
            "fingerprint": trust.certificate.fingerprint,
            "host_path": host.VERITY_CERT,
            "require_signed_images": trust.require_signed,
        }
    if trust.signer is not None:  # unsigned: no key at all, exactly as before signing existed
        index["signature"] = {
            "file": signing.SIGNATURE_FILE,
            "signs": SUMS_FILE,
            "fingerprint": trust.signer.fingerprint,
            "public_key": signing.PUBLIC_KEY_FILE,
            "public_key_armored": signing.PUBLIC_KEY_ARMORED,
        }
    return json.dumps(index, indent=2) + "\n"


def _sent_fields(image: Image, made: Sequence[compressed.Compressed]) -> dict[str, Any]:
    """The compressed file an image is sent as, if any: its name, size and sha256."""
    for piece in made:
        if piece.image == image.path:
            return {"sent": {"file": piece.path.name, "size": piece.size, "sha256": piece.sha256}}
    return {}


def _transport_fields(sending: compressed.Sending) -> dict[str, Any]:
    """How the release sends its images: the compressor, its version, the hosts it needs."""
    table = sending.table
    assert table is not None
    return {
        "format": table.name,
        "tool": compressed.tool_version(table),
        "settings": [*table.settings, f"{table.threads_flag}{THREADS}"],
        "plain_listed": not sending.only,
        "systemd": table.systemd,
    }


def _trust_keys(image: Image) -> list[str]:
    """The fingerprints of the keys the image tells hosts to trust next (--trust-keys; checked
    by buildinfo.parse_fields); none for an image built before the option existed."""
    return list(image.buildinfo["trust_keys"])


def flatcar_config(
    image: Image,
    url: str,
    transfer: str,
    trust: HostTrust = HostTrust(),
    health_url: str = DEFAULT_HEALTH_URL,
) -> butane.Provisioning:
    """A Flatcar host running `image`, kept current by systemd-sysupdate from `url`; with a
    signer, trusting its key (carried inline, never fetched) for sysupdate's Verify=yes; with a
    certificate, trusting it for dm-verity signatures (/etc/verity.d), and with require_signed
    merging nothing unsigned; an update that does not answer 200 on `health_url` is rolled
    back."""
    gate = {"HEALTH_URL": health_url, "HEALTH_TIMEOUT": str(HEALTH_TIMEOUT)}
    installed = f"{host.EXTENSIONS_DIR}/{image.path.name}"
    files = _host_files(image, url, transfer, installed, trust.require_signed, gate)
    if trust.signer is not None:
        files += (butane.File(host.HOST_RELEASE_KEY, 0o644, data=trust.signer.public_key),)
    if trust.certificate is not None:  # systemd reads it from there: 0644, a public file
        files += (butane.File(host.VERITY_CERT, 0o644, inline=trust.certificate.pem),)
    return butane.Provisioning(
        files=files,
        links=(butane.Link(host.CURRENT_SYMLINK, installed),),
        units=_host_units(image, trust, gate),
    )


def _host_files(
    image: Image,
    url: str,
    transfer: str,
    installed: str,
    require_signed: bool,
    gate: dict[str, str],
) -> tuple[butane.File, ...]:
    """The image (downloaded by its hash), the transfers, the activate script, the config."""
    transfers = tuple(
        butane.File(f"{host.TRANSFER_DIR}/{name}", 0o644, inline=transfer)
        for name in host.TRANSFER_NAMES
    )
    return (
        butane.File(installed, 0o644, source=url + image.path.name, sha256=image.sha256),
        *transfers,
        *(
            butane.File(path, 0o644, inline=host.template("sysupdate-noop.conf"))
            for path in host.NOOP_TRANSFERS
        ),
        butane.File(host.ACTIVATE_SCRIPT, 0o755, inline=host.activate_script(gate, require_signed)),
        # 0600: the config will hold credentials; the unit that copies it to the config's path
        # (only where no config exists yet) lets group alloy read it there.
        butane.File(host.PLACEHOLDER_CONFIG, 0o600, inline=host.template(host.CONFIG_TEMPLATE)),
        # Seeded once, as the image's tmpfiles.d line does where Ignition did not run.
        butane.File(
            alloy.ENV_FILE,
            0o644,
            inline=render.env_file(image.buildinfo["config_path"]),
            overwrite=False,
        ),
    )


def _host_units(image: Image, trust: HostTrust, gate: dict[str, str]) -> tuple[butane.Unit, ...]:
    placeholder = host.template(
        host.PLACEHOLDER_UNIT, {"CONFIG_PATH": image.buildinfo["config_path"]}
    )
    units = [butane.Unit(host.PLACEHOLDER_UNIT, enabled=True, contents=placeholder)]
    if trust.signer is not None:  # adds the release's key to sysupdate's keyring
        service = host.template(host.PUBRING_UNIT)
        units.append(butane.Unit(host.PUBRING_UNIT, enabled=True, contents=service))
    if not image.buildinfo["autostart"]:
        # The image starts nothing by itself: enable and start alloy once it is merged.
        first_boot = host.template(host.FIRST_BOOT_UNIT)
        units.append(butane.Unit(host.FIRST_BOOT_UNIT, enabled=True, contents=first_boot))
    dropin = host.template(
        host.SYSUPDATE_DROPIN_TEMPLATE, {**gate, "TIMEOUT_START": UPDATE_TIMEOUT}
    )
    units += [butane.Unit(timer, enabled=True) for timer in host.SYSUPDATE_TIMERS]
    units += [
        butane.Unit(service, dropins=(butane.Dropin(host.SYSUPDATE_DROPIN, dropin),))
        for service in host.SYSUPDATE_SERVICES
    ]
    if trust.require_signed:
        policy = butane.Dropin(host.SYSEXT_DROPIN, host.sysext_dropin())
        units.append(butane.Unit("systemd-sysext.service", dropins=(policy,)))
    return tuple(units)


def _butane_comment(
    image: Image, url: str, trust: HostTrust = HostTrust(), feed: Feed = Feed()
) -> str:
    signer = trust.signer
    start = (
        "the image starts alloy itself (built with --autostart)"
        if image.buildinfo["autostart"]
        else f"{host.FIRST_BOOT_UNIT} enables and starts alloy once the image is merged"
    )
    return (
        f"Grafana Alloy {image.version} ({image.arch}) for Flatcar, from {url}\n"
        f"Written by alloy-sysext's invoke release; {NAME}-{image.arch}.ign is the same config\n"
        "as Ignition JSON (spec 3.3.0). Installs the image with its sha256, links\n"
        f"{host.CURRENT_SYMLINK} to it, and keeps it current with systemd-sysupdate.timer\n"
        "(systemd-sysupdate-update.timer on systemd 258 and newer);\n"
        f"{start}."
        + (f"\nStream {feed.stream}: updates stay on {feed.stream}.Z." if feed.stream else "")
        + (
            f"\nFloor: no version below {feed.min_version} (MinVersion=)."
            if feed.min_version
            else ""
        )
        + (
            "\nSigned: sysupdate checks SHA256SUMS.gpg (Verify=yes) against the key\n"
            f"{signer.fingerprint}, carried here inline and added to its keyring\n"
            f"by {host.PUBRING_UNIT}."
            if signer
            else ""
        )
        + _verity_comment(trust)
        + _transport_comment(feed.sending)
    )


def _transport_comment(sending: compressed.Sending) -> str:
    table = sending.table
    if table is None:
        return ""
    return (
        f"\nUpdates arrive as {table.suffix} files, installed uncompressed ({table.note});\n"
        "this config still downloads the plain image once, with its sha256."
    )


def _verity_comment(trust: HostTrust) -> str:
    if trust.certificate is None:
        return ""
    said = (
        f"\nDDI signed by the certificate in {host.VERITY_CERT}\n"
        f"(sha256 {trust.certificate.fingerprint})."
    )
    if trust.require_signed:
        said += (
            f"\nsystemd-sysext merges only signed images (--image-policy={SIGNED_IMAGE_POLICY}):\n"
            "EVERY extension on this host, not only alloy. Flatcar Beta/Alpha merge in the\n"
            "initrd, which does not read the systemd-sysext.service drop-in."
        )
    return said


def _remove_stale(output_dir: Path, arches: set[str], base: Path | None = None) -> None:
    """Release files of an architecture no longer in the directory (or the feed in `base`)
    would be published too."""
    recorded = manifest.load(output_dir)
    for arch in set(ARCHES) - arches:
        for path in _arch_files(base or output_dir, arch):
            if not os.path.lexists(path):
                continue
            recorded.remove_if_owned(output_dir, path, "release", f"no {arch} image any more")
    remove_empty_release_dirs(output_dir, base)


def _arch_files(output_dir: Path, arch: str) -> list[Path]:
    paths = [output_dir / SYSUPDATE_DIR / arch / name for name in host.TRANSFER_NAMES]
    return paths + [output_dir / FLATCAR_DIR / f"{NAME}-{arch}{ext}" for ext in (".bu", ".ign")]


def release_files(output_dir: Path) -> list[Path]:
    """The files `release` writes (for any architecture) that are in `output_dir`."""
    paths = [output_dir / SUMS_FILE, output_dir / INDEX]
    paths += [output_dir / name for name in (*signing.SIGNED_FILES, VERITY_CERT_FILE)]
    for arch in ARCHES:
        paths += _arch_files(output_dir, arch)
    paths += compressed.found(output_dir)  # --transport's: SHA256SUMS lists them
    return [path for path in paths if path.exists()]


def remove_empty_release_dirs(output_dir: Path, base: Path | None = None) -> None:
    feed = base or output_dir
    arch_dirs = [feed / SYSUPDATE_DIR / arch for arch in ARCHES]
    recorded = manifest.load(output_dir)
    for directory in (*arch_dirs, feed / SYSUPDATE_DIR, feed / FLATCAR_DIR):
        relative = manifest.relative(output_dir, directory)
        if recorded.owns_dir(output_dir, relative) and not any(directory.iterdir()):
            directory.rmdir()
