"""The prototypes benchmarks/overlap.py measures against the pipeline (issue 26), in the bench
only, never in build/: a server throttled to a realistic link, the binary inflated from the zip
as its bytes arrive (zlib from the local header on, fed by the real downloader), and mksquashfs
given the binary as a pseudo file read from a pipe instead of from the staged tree."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import shlex
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from build.alloy import IMAGE_BINARY
from build.core.run import tool_environment
from build.fetch import http as build_http
from build.fetch import zipmember
from build.formats.squashfs import MKSQUASHFS, SOURCE_DATE_EPOCH

_LOCAL = struct.Struct("<4s2B4HL2L2H")  # a zip entry's local header (zipfile.structFileHeader)
_SEND = 64 << 10  # bytes the throttled server sends between two looks at the clock


class _Throttled(http.server.SimpleHTTPRequestHandler):
    """Files sent at most `rate` bytes a second (None: as fast as the socket takes them)."""

    def __init__(self, rate: float | None, *args: Any, **kwargs: Any) -> None:
        self.rate = rate  # before the base class, which handles the request in __init__
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if self.rate is None:
            super().copyfile(source, outputfile)
            return
        started, sent = time.monotonic(), 0
        while data := source.read(_SEND):
            outputfile.write(data)
            sent += len(data)
            ahead = started + sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def serve_at(directory: Path, rate: float | None) -> http.server.ThreadingHTTPServer:
    """`directory` on 127.0.0.1 at `rate` bytes a second (None: full speed)."""
    handler = functools.partial(_Throttled, rate, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class StreamingInflater:
    """The zip's first entry inflated into `out` as the zip's bytes arrive: its local header
    parsed, then its data through zlib.decompressobj(-15) (or copied, if stored). A prototype:
    it parses the download before its sha256 is checked, which the pipeline never does."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.held = bytearray()  # the local header, until it is whole
        self.inflater: Any = None  # a zlib decompressobj, or None while in the header
        self.left = 0  # compressed bytes of the entry not seen yet
        self.size = 0
        self.crc = 0
        self.digest = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        if self.inflater is None:
            self.held += data
            if len(self.held) < _LOCAL.size:
                return
            fields = _LOCAL.unpack_from(self.held)
            method, packed, name_length, extra_length = fields[4], fields[8], *fields[10:12]
            start = _LOCAL.size + name_length + extra_length
            if len(self.held) < start:
                return
            self.inflater = zlib.decompressobj(-15) if method == 8 else _Stored()
            self.left = packed
            data, self.held = bytes(self.held[start:]), bytearray()
        if self.left <= 0:
            return
        taken = data[: self.left]
        self.left -= len(taken)
        self._write(self.inflater.decompress(taken))
        if self.left <= 0:
            self._write(self.inflater.flush())

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        self.digest.update(data)


class _Stored:
    def decompress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


@contextlib.contextmanager
def inflating_while_downloading(dest: Path) -> Iterator[StreamingInflater]:
    """The real downloader (build/fetch/http.py) with every chunk it writes to the cached zip
    also fed to a StreamingInflater writing `dest`."""
    original = build_http._Download._write

    with dest.open("wb") as out:
        inflater = StreamingInflater(out)

        def write(self: Any, handle: Any, data: bytes, bar: Any) -> None:
            original(self, handle, data, bar)
            if self.url.endswith(".zip"):  # not SHA256SUMS, fetched first
                inflater.feed(data)

        build_http._Download._write = write  # type: ignore[method-assign,assignment]
        try:
            yield inflater
        finally:
            build_http._Download._write = original  # type: ignore[method-assign]


def inflate_to(zip_path: Path, member: str, out: BinaryIO | None) -> int:
    """`member` read from the zip with the pipeline's zip reader (build/fetch/zipmember.py), its
    bytes written to `out` (None: dropped); how many."""
    total = 0
    with zip_path.open("rb") as raw, zipmember.open_archive(zip_path) as archive:
        info = zipmember.select(archive, raw, member)
        assert info is not None, f"{member} not in {zip_path}"
        for chunk in zipmember.read_chunks(archive.open(info), zip_path):
            total += len(chunk)
            if out is not None:
                out.write(chunk)
    return total


def inflate_command(zip_path: Path, member: str) -> str:
    """A shell command that writes `member` of the (verified) zip to stdout with our own zip
    reader: what a pseudo file fed by the pipeline itself would run."""
    code = (
        "import sys; from pathlib import Path; from benchmarks.overlap_proto import inflate_to; "
        f"inflate_to(Path({str(zip_path)!r}), {member!r}, sys.stdout.buffer)"
    )
    root = Path(__file__).resolve().parent.parent
    return f"cd {shlex.quote(str(root))} && {shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def pack_argv(tree: Path, image: Path, args: list[str], pseudo: str | None = None) -> list[str]:
    """mksquashfs as pack_squashfs runs it (`args`: mksquashfs_args), and with `pseudo` the
    binary given as a pseudo file whose bytes are that shell command's output."""
    extra = ["-p", f"{IMAGE_BINARY} f 755 0 0 {pseudo}"] if pseudo is not None else []
    return [MKSQUASHFS, str(tree), str(image), *args, *extra, "-no-progress"]


def pack(argv: list[str]) -> float:
    """Seconds mksquashfs took, in pack_squashfs's environment."""
    started = time.monotonic()
    subprocess.run(
        argv,
        env=tool_environment(SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH),
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started
