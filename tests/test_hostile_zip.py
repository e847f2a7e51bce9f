"""Hostile release zips (issue 11, §5): an entry that could be taken for the binary, an
encrypted or oddly stored member, headers that contradict each other, names that would write
escape sequences to the terminal. Each one ends in one exact line, exit code 1, and nothing
staged or packed. The zips are written by hand: zipfile refuses to write most of them."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from build.fetch.zipmember import could_be
from build.image.stage import ASSET_HINT
from tests.conftest import Invoke, Release
from tests.fakes import MACHINES, elf_binary, sums
from tests.runs import MEMBER, OTHER, ZIP, leftovers, outputs

GOOD = elf_binary(MACHINES["amd64"], seed=1)
EVIL = elf_binary(MACHINES["amd64"], seed=666)
STORED, DEFLATED = 0, 8
UTF8 = 0x0800
REGULAR = 0o100755


@dataclass
class Entry:
    name: bytes
    data: bytes = GOOD
    method: int = DEFLATED
    flags: int = 0
    mode: int = REGULAR
    local_name: bytes | None = None  # the local header's, where it differs
    local_crc: int | None = None
    packed: bytes | None = None  # the member's data as stored, where not `data` compressed
    crc: int | None = None


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def raw_zip(*entries: Entry) -> bytes:
    """A zip holding exactly `entries`, byte by byte as given."""
    body, central = bytearray(), bytearray()
    for entry in entries:
        packed = entry.packed
        if packed is None:
            packed = _deflate(entry.data) if entry.method == DEFLATED else entry.data
        crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc
        local_crc = crc if entry.local_crc is None else entry.local_crc
        local_name = entry.name if entry.local_name is None else entry.local_name
        offset = len(body)
        body += struct.pack(
            "<4s5H3L2H",
            *(b"PK\x03\x04", 20, entry.flags, entry.method, 0, 0x21),
            *(local_crc, len(packed), len(entry.data), len(local_name), 0),
        )
        body += local_name + packed
        central += struct.pack(
            "<4s6H3L5H2L",
            *(b"PK\x01\x02", 3 << 8 | 20, 20, entry.flags, entry.method, 0, 0x21),
            *(crc, len(packed), len(entry.data), len(entry.name), 0, 0, 0, 0),
            *(entry.mode << 16, offset),
        )
        central += entry.name
    count = len(entries)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(body), 0)
    return bytes(body + central + end)


def publish(release: Release, data: bytes) -> str:
    """Publish `data` as OTHER's amd64 zip, vouched for by SHA256SUMS; return its URL."""
    assets = {ZIP: data}
    assets["SHA256SUMS"] = sums(assets)
    release.publish(OTHER, assets)
    return f"{release.base_url}/v{OTHER}/{ZIP}"


def refused(result, tmp_path: Path, line: str) -> None:
    """Exactly `line` on stderr, exit code 1, and nothing staged, packed or left over."""
    where = f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stderr.splitlines() == [line], where
    assert result.returncode == 1, where
    for bad in ("<", "ZipInfo", "Traceback", "\x1b", "\x00"):
        assert bad not in result.stderr, where
    assert not list((tmp_path / "output" / ".staging").glob("*/rootfs"))
    assert not list((tmp_path / "output").rglob("alloy"))  # not a byte of a binary staged
    assert outputs(tmp_path) == {}
    assert leftovers(tmp_path) == []


def asset_line(url: str, problem: str) -> str:
    return f"error: {ZIP} from {url} {problem}; {ASSET_HINT}"


# Ambiguous names: each zip holds the good binary, and an evil one some tool could take for it.

LOOKALIKES = {
    "duplicate": (MEMBER.encode(), MEMBER),
    "nul": (MEMBER.encode() + b"\x00evil", MEMBER + "\\x00evil"),
    "control-char": (MEMBER.encode() + b"\r", MEMBER + "\\x0d"),
    "escape-seq": (b"alloy-linux-\x1bamd64", "alloy-linux-\\x1bamd64"),
    "dot-slash": (b"./" + MEMBER.encode(), "./" + MEMBER),
    "dot-dot": (b"dir/../" + MEMBER.encode(), "dir/../" + MEMBER),
    "trailing-slash": (MEMBER.encode() + b"/", MEMBER + "/"),
    "backslash": (b".\\" + MEMBER.encode(), ".\\x5c" + MEMBER),
    "in-a-directory": (b"bin/" + MEMBER.encode(), "bin/" + MEMBER),
    "upper-case": (MEMBER.upper().encode(), MEMBER.upper()),
    "trailing-dot": (MEMBER.encode() + b".", MEMBER + "."),
    "fullwidth": ("\uff41lloy-linux-amd64".encode(), "\uff41lloy-linux-amd64"),
}


@pytest.mark.parametrize("evil_first", [False, True], ids=["evil-last", "evil-first"])
@pytest.mark.parametrize(("raw", "shown"), LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_second_entry_that_could_be_taken_for_the_binary_is_refused(
    invoke: Invoke, release: Release, tmp_path: Path, raw: bytes, shown: str, evil_first: bool
) -> None:
    flags = UTF8 if not raw.isascii() else 0
    good, evil = Entry(MEMBER.encode()), Entry(raw, EVIL, flags=flags)
    names = [MEMBER, shown]
    if evil_first:
        good, evil, names = evil, good, names[::-1]
    url = publish(release, raw_zip(good, evil))
    problem = f"has 2 entries that could each be taken for {MEMBER}: {', '.join(names)}"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_many_lookalikes_are_listed_as_far_as_the_line_allows(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    entries = [Entry(MEMBER.encode()), *(Entry(f"d{n}/{MEMBER}".encode()) for n in range(7))]
    url = publish(release, raw_zip(*entries))
    shown = f"{MEMBER}, d0/{MEMBER}, … and 6 more"
    problem = f"has 8 entries that could each be taken for {MEMBER}: {shown}"
    line = asset_line(url, problem)
    assert len(line) <= 400  # no line longer (issue 20)
    refused(invoke("all", f"--version={OTHER}"), tmp_path, line)


@pytest.mark.parametrize(
    "name",
    [MEMBER, f"./{MEMBER}", f"a/b/../../{MEMBER}", f"/{MEMBER}", f"{MEMBER}\x00.txt",
     f"{MEMBER}\u200b", f"{MEMBER} ", f"C:\\{MEMBER}", "Alloy-Linux-AMD64"],
)  # fmt: skip
def test_names_that_could_be_taken_for_the_binary(name: str) -> None:
    assert could_be(name, MEMBER)


@pytest.mark.parametrize(
    "name",
    ["alloy-linux-arm64", f"{MEMBER}.sig", f"{MEMBER}/README", "alloy", f"x{MEMBER}", "README.md"],
)
def test_names_that_could_not(name: str) -> None:
    assert not could_be(name, MEMBER)


# The member itself


def test_encrypted_member_is_one_line_without_a_python_object(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    url = publish(release, raw_zip(Entry(MEMBER.encode(), flags=0x1)))
    problem = f"holds {MEMBER} encrypted, which no release binary is"
    line = asset_line(url, problem)
    assert "invoke clean" not in line and "run again" not in line
    refused(invoke("all", f"--version={OTHER}"), tmp_path, line)


def test_member_compressed_with_a_method_release_zips_never_use(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    url = publish(release, raw_zip(Entry(MEMBER.encode(), method=99, packed=b"\x00" * 64)))
    problem = f"holds {MEMBER} compressed with method 99, where release zips use stored or deflate"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_member_that_is_a_symbolic_link(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    url = publish(release, raw_zip(Entry(MEMBER.encode(), b"/bin/sh", mode=0o120777)))
    problem = f"holds {MEMBER} as a symbolic link, not a regular file"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_member_whose_data_fails_its_crc(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    url = publish(release, raw_zip(Entry(MEMBER.encode(), crc=zlib.crc32(GOOD) ^ 1)))
    problem = "has a binary that fails its CRC-32 check"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_member_whose_compressed_data_is_corrupt(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    packed = b"\x07" + _deflate(GOOD)[1:]  # a first block of the reserved type 3
    url = publish(release, raw_zip(Entry(MEMBER.encode(), packed=packed)))
    problem = "has corrupt compressed data in the binary"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


# The archive's structure


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (Entry(MEMBER.encode(), local_name=b"alloy-linux-amd6X"), "name"),
        (Entry(MEMBER.encode(), local_crc=zlib.crc32(EVIL)), "CRC-32"),
    ],
    ids=["name", "crc"],
)
def test_local_header_that_contradicts_the_central_directory(
    invoke: Invoke, release: Release, tmp_path: Path, entry: Entry, field: str
) -> None:
    url = publish(release, raw_zip(entry))
    problem = (
        f"has a local header and a central directory entry for {MEMBER} that disagree on its "
        f"{field}"
    )
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_entry_hidden_behind_another_name_in_the_central_directory(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    # A streaming extractor (reading local headers in order) sees the evil alloy-linux-amd64
    # first; the central directory calls that entry README.md.
    hidden = Entry(b"README.md", EVIL, local_name=MEMBER.encode())
    url = publish(release, raw_zip(hidden, Entry(MEMBER.encode())))
    problem = (
        "has a local header and a central directory entry for README.md that disagree on its name"
    )
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_entries_that_share_their_bytes(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    # README.md is stored, and its data is a whole entry of its own: LICENSE, which the
    # central directory lists too, pointing inside README.md's bytes.
    inner = raw_zip(Entry(b"LICENSE", b"Apache-2.0\n", method=STORED))
    inner = inner[: inner.index(b"PK\x01\x02")]
    data = raw_zip(Entry(b"README.md", inner, method=STORED), Entry(MEMBER.encode()))
    at = data.index(b"PK\x01\x02")
    nested = raw_zip(Entry(b"LICENSE", b"Apache-2.0\n", method=STORED))
    extra = nested[nested.index(b"PK\x01\x02") : nested.index(b"PK\x05\x06")]
    extra = extra[:42] + struct.pack("<L", 30 + len(b"README.md")) + extra[46:]
    central = data[at : data.index(b"PK\x05\x06")] + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 3, 3, len(central), at, 0)
    url = publish(release, data[:at] + central + end)
    problem = "has entries that overlap: README.md, LICENSE"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_not_a_zip_at_all(invoke: Invoke, release: Release, tmp_path: Path) -> None:
    url = publish(release, b"PK\x03\x04" + bytes(200))  # a zip's first bytes; no directory
    problem = "is not a zip archive, or a damaged one"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_name_that_is_not_the_utf8_its_flag_claims(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    url = publish(release, raw_zip(Entry(MEMBER.encode()), Entry(b"\xff\xfe", flags=UTF8)))
    problem = "has a central directory this tool cannot read"
    refused(invoke("all", f"--version={OTHER}"), tmp_path, asset_line(url, problem))


def test_names_of_a_zip_without_the_binary_cannot_drive_the_terminal(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    url = publish(release, raw_zip(Entry(b"\x1b]0;pwned\x07README", b"hello\n")))
    line = (
        f"error: {ZIP} from {url} has no {MEMBER}; it holds: \\x1b]0;pwned\\x07README; "
        "check --arch and --base-url"
    )
    refused(invoke("all", f"--version={OTHER}"), tmp_path, line)


def test_the_hand_written_zip_of_one_good_member_builds(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    """The writer above makes zips the build takes: the refusals are the entries' doing."""
    publish(release, raw_zip(Entry(MEMBER.encode()), Entry(b"LICENSE", b"Apache-2.0\n")))
    result = invoke("stage", f"--version={OTHER}")
    assert result.returncode == 0, result.stdout + result.stderr
    staged = tmp_path / "output" / ".staging" / f"alloy-{OTHER}-amd64" / "rootfs"
    assert (staged / "usr/local/bin/alloy").read_bytes() == GOOD
