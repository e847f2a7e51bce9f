"""invoke release --transport=xz|zstd (issue 25): each image also published compressed beside
the plain one, SHA256SUMS (signed) over what sysupdate fetches, transfers fetching the
compressed name into the plain image, index.json with both sizes and hashes; the compression
reproducible across runs and thread counts; each refusal one line, nothing written."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from build.config.options import OPTIONS
from build.core.errors import BuildError
from build.formats.transport import TRANSPORTS
from build.model import manifest
from build.release import compressed, publish
from build.release.sysupdate import match_pattern, pattern_match, source_pattern
from tests.conftest import AMD64, Invoke, Prebuilt, copy_output
from tests.gpgkeys import Keys, gpgv
from tests.image import sha256
from tests.release_files import PUBLISH_URL, snapshot
from tests.results import error_line, ok
from tests.veritykeys import key_set

VERSION = "1.10.2"
IMAGE = f"alloy-{VERSION}-amd64.raw"
COMPAT = f"alloy-{VERSION}.raw"
# An image worth sending compressed: its filesystem is not.
PLAIN_EROFS = (("--format=erofs", "--compression=none"),)
# The same for hosts without EROFS (Flatcar LTS): squashfs, every block stored uncompressed.
PLAIN_SQUASHFS = (("--compression=none",),)
SENT_XZ = compressed.Sending("xz")
DECOMPRESS = {"xz": ["xz", "-dc"], "zstd": ["zstd", "-dcq"]}


def sums(output: Path) -> dict[str, str]:
    lines = (output / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ") for line in lines)}


def transfer(output: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((output / "sysupdate/amd64/alloy.transfer").read_text())
    return parser


def decompressed(path: Path, transport: str) -> bytes:
    return subprocess.run(
        [*DECOMPRESS[transport], str(path)], capture_output=True, check=True
    ).stdout


@pytest.fixture
def erofs_output(prebuilt: Prebuilt, tmp_path: Path) -> Path:
    return copy_output(prebuilt(*PLAIN_EROFS), tmp_path)


@pytest.mark.needs("mkfs.erofs", "xz", "zstd")
@pytest.mark.parametrize(
    ("transport", "build"),
    [("xz", PLAIN_EROFS), ("zstd", PLAIN_EROFS), ("xz", PLAIN_SQUASHFS)],
    ids=["xz", "zstd", "squashfs-none-xz"],
)
def test_transport_publishes_the_compressed_image_beside_the_plain_one(
    invoke: Invoke,
    prebuilt: Prebuilt,
    tmp_path: Path,
    transport: str,
    build: tuple[tuple[str, ...], ...],
) -> None:
    output = copy_output(prebuilt(*build), tmp_path)
    suffix = TRANSPORTS[transport].suffix
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", f"--transport={transport}"))
    sent = output / (IMAGE + suffix)
    assert decompressed(sent, transport) == (output / IMAGE).read_bytes()
    assert not (output / (COMPAT + suffix)).exists()  # sysupdate never fetches it
    assert not [p for p in output.glob(".*") if p.name != ".staging"], "temporaries left"
    # SHA256SUMS: the plain images as before, and the compressed file's own hash.
    listed = sums(output)
    assert sorted(listed) == sorted([COMPAT, IMAGE, IMAGE + suffix])
    assert listed[IMAGE + suffix] == sha256(sent) != listed[IMAGE]
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=output)
    assert checked.returncode == 0
    # The transfer fetches the compressed name and installs the plain one.
    parsed = transfer(output)
    assert parsed["Source"]["MatchPattern"] == f"alloy-@v-amd64.raw{suffix}"
    assert parsed["Target"]["MatchPattern"] == "alloy-@v-amd64.raw"
    assert pattern_match(parsed["Source"]["MatchPattern"], sent.name) == VERSION
    assert pattern_match(parsed["Source"]["MatchPattern"], IMAGE) is None
    assert pattern_match(match_pattern("amd64"), sent.name) is None  # older hosts skip it
    text = (output / "sysupdate/amd64/alloy.transfer").read_text()
    assert f"systemd {TRANSPORTS[transport].systemd}" in text
    assert text == (output / "sysupdate/amd64/alloy.conf").read_text()
    # index.json: both files, sizes and hashes; how they were compressed.
    index = json.loads((output / "index.json").read_text())
    [entry] = [e for e in index["images"] if e["file"] == IMAGE]
    assert entry["size"] == (output / IMAGE).stat().st_size
    assert entry["sent"] == {"file": sent.name, "size": sent.stat().st_size, "sha256": sha256(sent)}
    [compat] = [e for e in index["images"] if e["file"] == COMPAT]
    assert "sent" not in compat
    assert index["transport"]["format"] == transport and index["transport"]["plain_listed"]
    assert index["transport"]["systemd"] == TRANSPORTS[transport].systemd
    assert index["transport"]["tool"].startswith(f"{transport}: ")
    butane = (output / "flatcar/alloy-amd64.bu").read_text()
    assert f"Updates arrive as {suffix} files" in butane
    assert f"{PUBLISH_URL}{IMAGE}" in butane  # provisioning still downloads the plain image


@pytest.mark.needs("mkfs.erofs", "xz", "gpg", "gpgv")
def test_transport_only_lists_and_signs_only_the_compressed_images(
    invoke: Invoke, erofs_output: Path, keys: Keys
) -> None:
    env = {"INVOKE_GNUPG_HOME": str(keys.home)}
    args = ("--transport=xz", "--transport-only", f"--sign-key={keys.plain}")
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", *args, env=env))
    assert sorted(sums(erofs_output)) == [IMAGE + ".xz"]
    assert (erofs_output / IMAGE).is_file()  # still there: the Butane config installs it
    signed = gpgv(
        erofs_output / "alloy-release-key.gpg",
        erofs_output / "SHA256SUMS.gpg",
        erofs_output / "SHA256SUMS",
    )
    assert signed.returncode == 0, signed.stderr
    index = json.loads((erofs_output / "index.json").read_text())
    assert index["transport"]["plain_listed"] is False


@pytest.mark.needs("mkfs.erofs", "xz")
def test_transport_is_byte_identical_across_releases(
    invoke: Invoke, erofs_output: Path, tmp_path: Path
) -> None:
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    first = sha256(erofs_output / (IMAGE + ".xz"))
    (erofs_output / (IMAGE + ".xz")).unlink()
    killed = erofs_output / f".{IMAGE}.xz.k1ll3d.tmp"  # what a killed release leaves
    killed.write_bytes(b"half")
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    assert sha256(erofs_output / (IMAGE + ".xz")) == first
    assert not killed.exists()


@pytest.mark.needs("xz", "zstd")
@pytest.mark.parametrize(("transport", "threads"), [("xz", (2, 3, 4)), ("zstd", (1, 2, 4))])
def test_compression_is_the_same_for_every_allowed_thread_count(
    tmp_path: Path, transport: str, threads: tuple[int, ...]
) -> None:
    # Over two xz blocks (32 MiB each), so threads really share the work.
    data = tmp_path / "image.raw"
    with data.open("wb") as out:
        for n in range(40):
            out.write(bytes([n]) * (1 << 20))
    made = set()
    for count in threads:
        target = tmp_path / f"out.{count}"
        compressed.compress(data, TRANSPORTS[transport], target, threads=count)
        made.add(sha256(target))
    assert len(made) == 1


@pytest.mark.needs("xz")
@pytest.mark.parametrize(
    "variable",
    [
        ("XZ_OPT", "--block-list=1MiB"),  # other block boundaries
        ("XZ_DEFAULTS", "--memlimit-compress=20MiB"),  # single-threaded, a smaller dictionary
    ],
)
def test_the_callers_environment_never_changes_the_compressed_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: tuple[str, str]
) -> None:
    data = tmp_path / "image.raw"
    data.write_bytes(b"".join(n.to_bytes(4, "little") * 7 for n in range(1 << 18)))
    plain, shaped = tmp_path / "plain.xz", tmp_path / "shaped.xz"
    compressed.compress(data, TRANSPORTS["xz"], plain)
    monkeypatch.setenv(*variable)
    compressed.compress(data, TRANSPORTS["xz"], shaped)
    assert sha256(shaped) == sha256(plain)


def test_single_threaded_xz_is_never_used() -> None:
    # xz -T1 writes other bytes than -T2 (no sizes in its block headers): never the setting.
    argv = TRANSPORTS["xz"].argv(Path("x.raw"))
    assert "--threads=2" in argv and "--block-size=32MiB" in argv
    assert not [a for a in argv if a in ("-T0", "--threads=0", "-T1", "--threads=1")]


def test_the_transport_help_names_the_hosts_and_images_the_table_allows() -> None:
    [option] = [option for option in OPTIONS if option.name == "transport"]
    for table in TRANSPORTS.values():
        assert f"{table.name} needs systemd {table.systemd}+" in option.help
    assert "squashfs --compression=none" in option.help


def test_source_pattern_without_transport_is_the_plain_pattern() -> None:
    assert source_pattern("arm64") == match_pattern("arm64") == "alloy-@v-arm64.raw"
    assert source_pattern("arm64", TRANSPORTS["zstd"]) == "alloy-@v-arm64.raw.zst"


# Refusals: one line, exit 1, nothing written (and nothing compressed).


@pytest.mark.needs("xz")
def test_transport_of_an_already_compressed_squashfs_is_refused(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)
    before = snapshot(output)
    error_line(
        invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"),
        "--transport=xz compresses images again that are already compressed (xz",
        IMAGE,
        "--format=erofs --compression=none",
    )
    assert snapshot(output) == before


@pytest.mark.needs("mkfs.erofs", "openssl", "xz")
def test_a_signed_ddi_of_uncompressed_erofs_is_sent_compressed_and_one_of_lz4hc_refused(
    invoke: Invoke, tmp_path: Path
) -> None:
    """A DDI (data, hash tree, signature) of EROFS none is worth compressing like its file
    system; the signature partition is sent as built, so hosts check the same root hash."""
    (tmp_path / "keys").mkdir()
    key, cert = key_set(tmp_path / "keys")["ours"]
    signed = (f"--verity-key={key}", f"--verity-cert={cert}")
    build = ("all", f"--version={VERSION}", "--format=ddi", *signed)
    release = ("release", f"--publish-url={PUBLISH_URL}", f"--verity-cert={cert}")
    ok(invoke(*build, "--compression=none", "--output-dir=plain"))
    ok(invoke(*release, "--transport=xz", "--output-dir=plain"))
    output = tmp_path / "plain"
    sent = output / (IMAGE + ".xz")
    assert decompressed(sent, "xz") == (output / IMAGE).read_bytes()
    assert sums(output)[sent.name] == sha256(sent)
    index = json.loads((output / "index.json").read_text())
    [entry] = [e for e in index["images"] if e["file"] == IMAGE]
    assert (entry["format"], entry["verity_signed"]) == ("ddi", True)
    assert entry["sent"]["sha256"] == sha256(sent)

    ok(invoke(*build, "--output-dir=packed"))  # lz4hc inside: compressing it again is waste
    before = snapshot(tmp_path / "packed")
    error_line(
        invoke(*release, "--transport=xz", "--output-dir=packed"),
        "--transport=xz compresses images again that are already compressed (lz4hc",
        IMAGE,
    )
    assert snapshot(tmp_path / "packed") == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--transport-only",), "--transport-only without --transport"),
        (("--transport=gzip",), "unknown transport 'gzip'"),
        (("--transport-only", "--stream=1.10"), "--transport-only without --transport"),
    ],
)
def test_transport_options_that_make_no_sense_are_refused(
    invoke: Invoke, erofs_output: Path, args: tuple[str, ...], expected: str
) -> None:
    before = snapshot(erofs_output)
    error_line(invoke("release", f"--publish-url={PUBLISH_URL}", *args), expected)
    assert snapshot(erofs_output) == before


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_foreign_file_under_the_compressed_name_is_refused_before_compressing(
    invoke: Invoke, erofs_output: Path
) -> None:
    (erofs_output / (IMAGE + ".xz")).write_bytes(b"someone else's")
    before = snapshot(erofs_output)
    error_line(
        invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"),
        f"refusing to replace output/{IMAGE}.xz",
    )
    assert snapshot(erofs_output) == before


@pytest.mark.needs("mkfs.erofs", "xz", "zstd")
def test_a_second_release_keeps_what_an_earlier_one_compressed_and_removes_what_it_no_longer_sends(
    invoke: Invoke, erofs_output: Path
) -> None:
    xz, zst = erofs_output / (IMAGE + ".xz"), erofs_output / (IMAGE + ".zst")
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    made = xz.stat()
    listed = (erofs_output / "SHA256SUMS").read_bytes()
    again = ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    assert f"kept output/{xz.name}: compressed by an earlier release" in again.stdout
    assert (xz.stat().st_ino, xz.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert (erofs_output / "SHA256SUMS").read_bytes() == listed
    # Another transport: the .xz goes, as a file no transfer fetches any more.
    other = ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=zstd"))
    assert f"removed output/{xz.name} (not sent by this release)" in other.stdout
    assert not xz.exists() and zst.is_file() and "kept" not in other.stdout.split(zst.name)[0]
    # None again: as if --transport had never been given.
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert not zst.exists() and sorted(sums(erofs_output)) == sorted([COMPAT, IMAGE])
    assert "transport" not in json.loads((erofs_output / "index.json").read_text())
    assert transfer(erofs_output)["Source"]["MatchPattern"] == "alloy-@v-amd64.raw"


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_compressed_file_changed_since_is_compressed_again_never_reused(
    invoke: Invoke, erofs_output: Path
) -> None:
    xz = erofs_output / (IMAGE + ".xz")
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    first = sha256(xz)
    xz.write_bytes(b"changed by hand")
    # Not the tool's any more: refused, rather than overwritten or listed.
    error_line(
        invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"),
        f"refusing to replace output/{xz.name}",
    )
    xz.unlink()
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    assert sha256(xz) == first == sums(erofs_output)[xz.name]


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_compressed_file_of_another_image_under_the_same_name_is_never_kept(
    invoke: Invoke, erofs_output: Path, tmp_path: Path
) -> None:
    env, log = counted(tmp_path, "xz")
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz", env=env))
    # As after a rebuild of the image: index.json (the tool's, recorded) says the .xz holds
    # an image of other bytes than the one under that name now.
    index = erofs_output / "index.json"
    fields = json.loads(index.read_text())
    entry = next(e for e in fields["images"] if e["file"] == IMAGE)
    entry["sha256"] = "0" * 64
    index.write_text(json.dumps(fields, indent=2) + "\n")
    manifest.record(erofs_output, [index])
    again = ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz", env=env))
    assert runs(log) == 2 and "kept" not in again.stdout
    xz = erofs_output / (IMAGE + ".xz")
    assert decompressed(xz, "xz") == (erofs_output / IMAGE).read_bytes()


@pytest.mark.needs("mkfs.erofs", "xz")
def test_sums_over_a_release_sent_compressed_is_refused(invoke: Invoke, erofs_output: Path) -> None:
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    before = snapshot(erofs_output)
    error_line(
        invoke("sums"),
        "says the release sends its images compressed (xz)",
        "invoke release --transport=xz",
    )
    assert snapshot(erofs_output) == before


@pytest.mark.needs("mkfs.erofs", "xz")
def test_clean_removes_the_compressed_images_with_the_release_files(
    invoke: Invoke, erofs_output: Path
) -> None:
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    foreign = erofs_output / (IMAGE + ".zst")
    foreign.write_bytes(b"not the tool's")
    cleaned = ok(invoke("clean"))
    assert not (erofs_output / (IMAGE + ".xz")).exists()
    assert foreign.read_bytes() == b"not the tool's"  # never the tool's: kept, and said
    assert f"kept output/{foreign.name}" in cleaned.stdout


# A stream's feed (--stream=X.Y) sent compressed: its own compressed files beside its own
# SHA256SUMS in streams/X.Y/, where its transfers' Path= points and its plain images are linked.

STREAM = "1.10"
STREAM_URL = f"{PUBLISH_URL}streams/{STREAM}/"


def counted(tmp_path: Path, program: str, fail: bool = False) -> tuple[dict[str, str], Path]:
    """A PATH-front `program` that logs each compression it is asked for to a file (a work
    counter), then runs the real one; with `fail`, it fails them instead, saying so."""
    real = shutil.which(program)
    assert real is not None
    bin_dir, log = tmp_path / f"counted-{program}", tmp_path / f"{program}.log"
    bin_dir.mkdir()
    failing = 'echo "out of memory" >&2; exit 1' if fail else ":"
    script = bin_dir / program
    script.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" --compress "*) echo "$*" >> {log}; {failing};; esac\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def stream_release(invoke: Invoke, *args: str, env: dict[str, str] | None = None):
    return invoke("release", f"--publish-url={PUBLISH_URL}", f"--stream={STREAM}", *args, env=env)


@pytest.mark.needs("mkfs.erofs", "xz", "zstd")
@pytest.mark.parametrize("transport", ["xz", "zstd"])
def test_a_stream_is_sent_compressed_from_its_own_directory(
    invoke: Invoke, erofs_output: Path, transport: str
) -> None:
    suffix = TRANSPORTS[transport].suffix
    ok(stream_release(invoke, f"--transport={transport}"))
    feed = erofs_output / "streams" / STREAM
    sent = feed / (IMAGE + suffix)
    assert decompressed(sent, transport) == (erofs_output / IMAGE).read_bytes()
    # Beside the stream's SHA256SUMS, which lists it with its own hash: the default feed's
    # directory gets no compressed file from a stream's release.
    assert sums(feed) == {IMAGE: sha256(erofs_output / IMAGE), IMAGE + suffix: sha256(sent)}
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=feed, capture_output=True)
    assert checked.returncode == 0, checked.stdout
    assert not list(erofs_output.glob(f"*{suffix}")) and not (erofs_output / "SHA256SUMS").exists()
    leftovers = [p.name for p in (*feed.glob(".*"), *(erofs_output / ".staging").glob(".*.tmp"))]
    assert not leftovers, "temporaries left"
    # sysupdate fetches Path= + the name the source pattern matches: the stream's own file.
    text = (feed / "sysupdate/amd64/alloy.transfer").read_text()
    assert text == (feed / "sysupdate/amd64/alloy.conf").read_text()
    parsed = transfer(feed)
    assert parsed["Source"]["Path"] == STREAM_URL
    assert parsed["Source"]["MatchPattern"] == f"alloy-@v-amd64.raw{suffix}"
    assert parsed["Target"]["MatchPattern"] == "alloy-@v-amd64.raw"
    assert pattern_match(parsed["Source"]["MatchPattern"], sent.name) == VERSION
    index = json.loads((feed / "index.json").read_text())
    [entry] = index["images"]
    assert entry["file"] == IMAGE and entry["size"] == (erofs_output / IMAGE).stat().st_size
    assert entry["sent"] == {"file": sent.name, "size": sent.stat().st_size, "sha256": sha256(sent)}
    assert index["stream"] == STREAM and index["publish_url"] == STREAM_URL
    assert index["transport"]["format"] == transport and index["transport"]["plain_listed"]
    assert index["transport"]["systemd"] == TRANSPORTS[transport].systemd
    butane = (feed / "flatcar/alloy-amd64.bu").read_text()
    assert f"Updates arrive as {suffix} files" in butane and f"{STREAM_URL}{IMAGE}" in butane


@pytest.mark.needs("mkfs.erofs", "xz", "gpg", "gpgv")
def test_a_stream_sent_compressed_only_lists_and_signs_only_its_compressed_files(
    invoke: Invoke, erofs_output: Path, keys: Keys
) -> None:
    env = {"INVOKE_GNUPG_HOME": str(keys.home)}
    args = ("--transport=xz", "--transport-only", f"--sign-key={keys.plain}")
    ok(stream_release(invoke, *args, env=env))
    feed = erofs_output / "streams" / STREAM
    assert sorted(sums(feed)) == [IMAGE + ".xz"]
    assert os.path.samefile(feed / IMAGE, erofs_output / IMAGE)  # the Butane config's download
    signed = gpgv(feed / "alloy-release-key.gpg", feed / "SHA256SUMS.gpg", feed / "SHA256SUMS")
    assert signed.returncode == 0, signed.stderr
    assert json.loads((feed / "index.json").read_text())["transport"]["plain_listed"] is False


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_stream_links_the_file_the_default_feed_compressed_and_never_compresses_it_again(
    invoke: Invoke, erofs_output: Path, tmp_path: Path
) -> None:
    env, log = counted(tmp_path, "xz")
    root_xz, stream_xz = (
        erofs_output / (IMAGE + ".xz"),
        erofs_output / "streams/1.10" / (IMAGE + ".xz"),
    )
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz", env=env))
    assert runs(log) == 1
    linked = ok(stream_release(invoke, "--transport=xz", env=env))
    assert runs(log) == 1, "the stream compressed the same image again"
    assert os.path.samefile(stream_xz, root_xz)
    assert f"linked output/streams/1.10/{stream_xz.name} to output/{root_xz.name}" in linked.stdout
    assert sums(stream_xz.parent)[stream_xz.name] == sums(erofs_output)[root_xz.name]
    made = stream_xz.stat()
    again = ok(stream_release(invoke, "--transport=xz", env=env))
    assert runs(log) == 1
    assert f"kept output/streams/1.10/{stream_xz.name}: compressed by an earlier" in again.stdout
    assert (stream_xz.stat().st_ino, stream_xz.stat().st_mtime_ns) == (
        made.st_ino,
        made.st_mtime_ns,
    )
    # Other settings are other bytes: compressed afresh, never linked.
    ok(stream_release(invoke, "--transport=zstd", env=env))
    assert not stream_xz.exists() and root_xz.is_file()  # the default feed's stays
    assert (stream_xz.parent / (IMAGE + ".zst")).is_file() and runs(log) == 1


@pytest.mark.needs("mkfs.erofs", "xz")
def test_the_default_feed_links_the_file_a_stream_compressed_first(
    invoke: Invoke, erofs_output: Path, tmp_path: Path
) -> None:
    env, log = counted(tmp_path, "xz")
    ok(stream_release(invoke, "--transport=xz", env=env))
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz", env=env))
    assert runs(log) == 1
    root_xz = erofs_output / (IMAGE + ".xz")
    assert os.path.samefile(root_xz, erofs_output / "streams/1.10" / root_xz.name)
    assert sums(erofs_output)[root_xz.name] == sha256(root_xz)


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_stream_file_changed_since_is_never_linked_or_kept(
    invoke: Invoke, erofs_output: Path, tmp_path: Path
) -> None:
    env, log = counted(tmp_path, "xz")
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz", env=env))
    root_xz = erofs_output / (IMAGE + ".xz")
    first = sha256(root_xz)
    root_xz.unlink()
    root_xz.write_bytes(b"changed by hand")
    ok(stream_release(invoke, "--transport=xz", env=env))
    stream_xz = erofs_output / "streams/1.10" / root_xz.name
    assert runs(log) == 2 and sha256(stream_xz) == first == sums(stream_xz.parent)[root_xz.name]


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_stream_sent_plain_again_removes_its_compressed_files(
    invoke: Invoke, erofs_output: Path
) -> None:
    ok(stream_release(invoke, "--transport=xz"))
    feed = erofs_output / "streams" / STREAM
    plain = ok(stream_release(invoke))
    assert f"removed output/streams/1.10/{IMAGE}.xz (not sent by this release)" in plain.stdout
    assert sorted(sums(feed)) == [IMAGE] and not list(feed.glob("*.xz"))
    assert "transport" not in json.loads((feed / "index.json").read_text())
    assert transfer(feed)["Source"]["MatchPattern"] == "alloy-@v-amd64.raw"


@pytest.mark.needs("mkfs.erofs", "xz")
@pytest.mark.parametrize("args", [(), ("--version=1.10.2",)])
def test_clean_removes_what_a_streams_transport_wrote_and_keeps_what_it_did_not(
    invoke: Invoke, erofs_output: Path, args: tuple[str, ...]
) -> None:
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    ok(stream_release(invoke, "--transport=xz"))
    feed = erofs_output / "streams" / STREAM
    foreign = feed / (IMAGE + ".zst")
    foreign.write_bytes(b"not the tool's")
    cleaned = ok(invoke("clean", *args))
    assert sorted(p.name for p in (erofs_output / "streams").rglob("*")) == [STREAM, foreign.name]
    assert f"kept output/streams/1.10/{foreign.name}: not written by this tool" in cleaned.stdout
    assert not (erofs_output / (IMAGE + ".xz")).exists()


@pytest.mark.needs("mkfs.erofs", "xz")
def test_sums_of_a_stream_sent_compressed_is_refused(invoke: Invoke, erofs_output: Path) -> None:
    ok(stream_release(invoke, "--transport=xz"))
    before = snapshot(erofs_output)
    error_line(
        invoke("sums", f"--stream={STREAM}"),
        "streams/1.10/index.json says the release sends its images compressed (xz)",
        f"invoke release --transport=xz --stream={STREAM}",
    )
    assert snapshot(erofs_output) == before


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_foreign_file_under_a_streams_compressed_name_is_refused_before_compressing(
    invoke: Invoke, erofs_output: Path, tmp_path: Path
) -> None:
    ok(stream_release(invoke))
    (erofs_output / "streams/1.10" / (IMAGE + ".xz")).write_bytes(b"someone else's")
    before = snapshot(erofs_output)
    env, log = counted(tmp_path, "xz")
    error_line(
        stream_release(invoke, "--transport=xz", env=env),
        f"refusing to replace output/streams/1.10/{IMAGE}.xz",
    )
    assert snapshot(erofs_output) == before and runs(log) == 0


@pytest.mark.needs("mkfs.erofs", "xz")
@pytest.mark.parametrize("feed", [(), (f"--stream={STREAM}",)], ids=["default", "stream"])
def test_a_release_whose_compression_fails_changes_nothing_and_leaves_no_temporary(
    invoke: Invoke, erofs_output: Path, tmp_path: Path, feed: tuple[str, ...]
) -> None:
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    before = snapshot(erofs_output)
    env, log = counted(tmp_path, "xz", fail=True)
    error_line(
        invoke("release", f"--publish-url={PUBLISH_URL}", *feed, "--transport=xz", env=env),
        f"cannot compress {IMAGE} with xz",
        "out of memory",
    )
    assert runs(log) == 1
    # Every file as it was, no streams/ made: the temporary waited beside the image (the
    # default feed) or in .staging (a stream's, whose directory is not there yet), and is
    # gone; only .staging's time says it was there.
    after = snapshot(erofs_output)
    assert {k: v for k, v in after.items() if k != ".staging"} == {
        k: v for k, v in before.items() if k != ".staging"
    }


@pytest.mark.needs("mkfs.erofs", "xz")
def test_a_killed_stream_releases_temporary_in_staging_is_swept(
    invoke: Invoke, erofs_output: Path
) -> None:
    killed = erofs_output / ".staging" / f".{IMAGE}.xz.k1ll3d.tmp"  # where it waited
    killed.write_bytes(b"half")
    ok(stream_release(invoke, "--transport=xz"))
    assert not killed.exists()
    assert (erofs_output / "streams" / STREAM / (IMAGE + ".xz")).is_file()


def test_a_release_that_fails_after_compressing_leaves_the_files_the_tools(
    invoke: Invoke, erofs_output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compressed files are renamed before SHA256SUMS is written; a release failing there
    must leave them recorded, so the next release keeps them instead of refusing them as
    someone else's."""

    def disk_full(*_: object) -> None:
        raise BuildError("cannot write SHA256SUMS: no space left on device")

    monkeypatch.setattr(publish, "write_sums", disk_full)
    with pytest.raises(BuildError):
        publish.release(erofs_output, PUBLISH_URL, feed=publish.Feed(sending=SENT_XZ))
    sent = erofs_output / (IMAGE + ".xz")
    assert sent.is_file()
    assert manifest.load(erofs_output).owns_file(erofs_output, sent.name)
    monkeypatch.undo()
    said = ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--transport=xz"))
    assert f"kept {sent}" not in said.stdout  # index.json never said so: compressed again
    assert sums(erofs_output)[sent.name] == sha256(sent)
