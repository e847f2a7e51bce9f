"""Trust costs (issue 23): what a signed dm-verity DDI costs on the default stand-in. Its bytes
against the bare EROFS image the tool packs (build/formats/erofs.py's flags), the seconds signing
adds to assembling the DDI (build/formats/ddi.assemble, signed against unsigned, and the openssl
call alone), the seconds of the whole offline verify (`invoke verify --image --verity-cert`
against the bare image's) and of its DDI-only building blocks (the signature partition,
build/keys/veritysign.check_signature, build/read/ddi.check_ddi), and the peak memory of
check_ddi and of verify. `nox -s bench` measures it with the rest; `python -m benchmarks.trust`
measures only this and rewrites only its section of docs/benchmarks.md (between its markers).

The "merge seconds, signed vs unsigned, emulated x86-64" row comes from the e2e boot test, not
from here: it is written by hand, and a new run keeps the line the document has.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import docs  # noqa: E402
from benchmarks.common import BUILD_ARCH, Case, log, median_of, note_command, paired, timed  # noqa: E402
from benchmarks.formats import erofs_pack  # noqa: E402
from benchmarks.memory import polled  # noqa: E402
from benchmarks.table import TrustRow, format_trust_table  # noqa: E402
from build.alloy import NAME  # noqa: E402
from build.formats.ddi import assemble  # noqa: E402
from build.formats.erofs import PCLUSTER_BYTES  # noqa: E402
from build.formats.repart import why_not_repart  # noqa: E402
from build.formats.veritysig import certificate_fingerprint, signature_partition  # noqa: E402
from build.keys.veritycert import load_certificate  # noqa: E402
from build.keys.veritysign import check_signature, sign_root_hash  # noqa: E402
from build.model.ddi import build_seed  # noqa: E402
from build.read.ddi import check_ddi  # noqa: E402
from build.read.veritysig import parse_signature_partition  # noqa: E402

START = "<!-- trust: written by nox -s bench; python -m benchmarks.trust rewrites only this -->"
END = "<!-- /trust -->"
MERGE_FIGURE = "merge seconds, signed vs unsigned, emulated x86-64"
MERGE_PLACEHOLDER = (
    f"| {MERGE_FIGURE} | filled by hand from the e2e boot test (`nox -s e2e`) | — | — | — | — |"
)
KEY_BITS = 2048
ADDED_GOAL = "1 % + 1.1 MiB"  # issue 23: what the DDI may add to the bare EROFS image


def added_limit(bare_bytes: int) -> int:
    return bare_bytes // 100 + int(1.1 * (1 << 20))


def make_key(work: Path) -> tuple[Path, Path]:
    """A self-signed RSA key and certificate, as README's "Signed images" makes them."""
    key, cert = work / "verity.key", work / "verity.crt"
    timed(
        ["openssl", "req", "-x509", "-newkey", f"rsa:{KEY_BITS}", "-keyout", str(key),
         "-out", str(cert), "-days", "3650", "-subj", "/CN=alloy-sysext bench", "-nodes"]
    )  # fmt: skip
    return key, cert


def signer(key: Path, cert: Path) -> Callable[[bytes], bytes]:
    """The root hash to the signature partition, as a signed build makes it: openssl's
    signature (checked against the certificate before it is used), the certificate's
    fingerprint, the JSON."""

    def sign(root_hash: bytes) -> bytes:
        signature = sign_root_hash(root_hash, key, load_certificate(cert))
        return signature_partition(root_hash, signature, load_certificate(cert).der)

    return sign


def seconds_of(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def openssl_sign_seconds(case: Case, key: Path, cert: Path, root_hash: bytes) -> float:
    """The openssl call a signed build makes, alone (build/keys/veritysign.py's argv)."""
    text = case.work / "roothash.txt"
    text.write_bytes(root_hash.hex().encode("ascii"))
    cmd = ["openssl", "smime", "-sign", "-binary", "-noattr", "-outform", "DER",
           "-signer", str(cert), "-inkey", str(key), "-passin", "pass:",
           "-in", str(text), "-out", str(case.work / "roothash.p7s")]  # fmt: skip
    return median_of(case.runs + 2, lambda _: timed(cmd))


def check_signature_part(image: Path, signature_region: tuple[int, int], cert: Path) -> bytes:
    """What verify does before it trusts a root hash: the signature partition parsed, its
    certificate fingerprint compared with --verity-cert's, the signature checked. The root
    hash it vouches for."""
    offset, size = signature_region
    with image.open("rb") as stream:
        stream.seek(offset)
        found = parse_signature_partition(stream.read(size))
    if found.certificate_fingerprint != certificate_fingerprint(load_certificate(cert).der):
        raise SystemExit(f"bench: {image} was signed with another certificate than {cert}")
    check_signature(found.root_hash, found.signature, load_certificate(cert))
    return found.root_hash


# A fresh Python process: its peak RSS (VmHWM) after the imports, then after check_ddi.
_PEAK_RSS = """
import re, sys
from pathlib import Path
from build.read.ddi import check_ddi
def hwm():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\\s+(\\d+) kB", status, re.M).group(1))
before = hwm()
check_ddi(Path(sys.argv[1]), sys.argv[2], True, bytes.fromhex(sys.argv[3]))
print(before, hwm())
"""


def check_ddi_peak_rss_mb(image: Path, root_hash: bytes) -> tuple[float, float]:
    """(peak RSS MB of a Python process before check_ddi, after it)."""
    cmd = [sys.executable, "-c", _PEAK_RSS, str(image), BUILD_ARCH, root_hash.hex()]
    note_command(f"{sys.executable} -c '<VmHWM; check_ddi(IMAGE, {BUILD_ARCH}, ...); VmHWM>'")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    before, after = (int(kb) / 1024 for kb in out.split())
    return before, after


def whole_verify(
    case: Case, peaks: dict[Path, float], image: Path, *flags: str
) -> Callable[[int], float]:
    """`invoke verify --image IMAGE FLAGS` as a user runs it: one run's wall seconds; the
    highest peak RSS of its Python process goes to peaks[image] (mount and systemd-sysext are
    children, not counted)."""
    cmd = [*case.invoke, "--search-root", str(ROOT), "verify", "--image", str(image), *flags]

    def once(_: int) -> float:
        seconds, peak = polled(cmd)
        peaks[image] = max(peaks.get(image, 0.0), peak)
        return seconds

    return once


def measure_trust(case: Case, tree: Path) -> list[TrustRow]:
    """Every trust cost on `tree` (the stand-in's staged tree)."""
    key, cert = make_key(case.work)
    bare = erofs_pack(case, tree, "lz4hc")
    seed = build_seed(NAME, case.version, BUILD_ARCH)
    signed_ddi, unsigned_ddi = case.work / "signed.ddi.raw", case.work / "unsigned.ddi.raw"
    sign = signer(key, cert)
    log(f"trust: assemble a DDI signed and unsigned, in pairs ({case.runs + 2}x)")
    signed_s, unsigned_s, ratios = paired(
        case.runs + 2,
        lambda _: seconds_of(lambda: assemble(bare.image, signed_ddi, BUILD_ARCH, seed, sign)),
        lambda _: seconds_of(lambda: assemble(bare.image, unsigned_ddi, BUILD_ARCH, seed, None)),
    )
    root_hash = check_ddi(signed_ddi, BUILD_ARCH, signed=True).root_hash
    bare_bytes = bare.image.stat().st_size
    log(f"trust: openssl alone, the offline checks, check_ddi's memory ({case.runs + 2}x)")
    sign_s = openssl_sign_seconds(case, key, cert, root_hash)
    signature = check_ddi(signed_ddi, BUILD_ARCH, True, root_hash).signature
    assert signature is not None
    region = (signature.offset, signature.size)
    signature_s = median_of(
        case.runs + 2, lambda _: seconds_of(lambda: check_signature_part(signed_ddi, region, cert))
    )
    check_s = median_of(
        case.runs + 2,
        lambda _: seconds_of(lambda: check_ddi(signed_ddi, BUILD_ARCH, True, root_hash)),
    )
    rss_before, rss_after = check_ddi_peak_rss_mb(signed_ddi, root_hash)
    log(f"trust: invoke verify --image, the signed DDI and the bare image in pairs ({case.runs}x)")
    peaks: dict[Path, float] = {}
    verify_ddi = whole_verify(case, peaks, signed_ddi, "--verity-cert", str(cert))
    verify_bare = whole_verify(case, peaks, bare.image)
    verify_s, verify_bare_s, verify_ratios = paired(case.runs, verify_ddi, verify_bare)
    limit = added_limit(bare_bytes)
    return [
        TrustRow(
            f"bare EROFS image, as --format=erofs packs it (lz4hc, {PCLUSTER_BYTES >> 10} KiB "
            "pclusters)",
            bare_bytes,
            "B",
        ),
        TrustRow(
            f"signed DDI (RSA {KEY_BITS}) vs the bare EROFS image",
            signed_ddi.stat().st_size,
            "B",
            bare_bytes,
            limit,
            ADDED_GOAL,
        ),
        TrustRow(
            "unsigned verity DDI vs the bare EROFS image",
            unsigned_ddi.stat().st_size,
            "B",
            bare_bytes,
            limit,
            ADDED_GOAL,
        ),
        TrustRow("mkfs.erofs pack of that bare image, for scale", bare.seconds),
        TrustRow(
            "assemble the DDI, signed vs unsigned (hash tree, GPT, copy; signing: openssl sign, "
            "its check, the certificate's DER)",
            signed_s,
            "s",
            unsigned_s,
            ratios=ratios,
        ),
        TrustRow(f"openssl smime -sign of the root hash alone (RSA {KEY_BITS})", sign_s),
        TrustRow(
            "offline verify: signature partition parsed, fingerprint, check_signature",
            signature_s,
        ),
        TrustRow(
            "offline verify: check_ddi (GPT, types, UUIDs, superblock, whole hash tree; "
            "page cache warm)",
            check_s,
        ),
        TrustRow(
            "offline verify, these building blocks together (the DDI's own checks)",
            signature_s + check_s,
        ),
        TrustRow(
            "whole `invoke verify --image DDI --verity-cert CRT` vs `invoke verify --image` of the "
            "bare EROFS image (as root: kernel view and merges included)",
            verify_s,
            "s",
            verify_bare_s,
            ratios=verify_ratios,
        ),
        TrustRow(
            "peak RSS of `invoke verify`, the signed DDI vs the bare EROFS image",
            peaks[signed_ddi],
            "MB",
            peaks[bare.image],
        ),
        TrustRow(
            "peak RSS of a Python process running check_ddi vs before the call",
            rss_after,
            "MB",
            rss_before,
        ),
    ]


def hand_rows(old_text: str) -> list[str]:
    """The merge row as the document has it (filled by hand), else its placeholder."""
    found = re.search(rf"^\| {re.escape(MERGE_FIGURE)} \|.*$", old_text, re.M)
    return [found.group(0) if found else MERGE_PLACEHOLDER]


ABOUT = (
    "What a signed dm-verity DDI (issue 23) costs on the same stand-in. The EROFS image the "
    "tool packs of the same tree (mkfs.erofs with build/formats/erofs.py's flags) is assembled "
    "into an x86-64 DDI by assemble() of build/formats/ddi.py with the build's seed, "
    f"signed with a self-signed RSA {KEY_BITS} key (`openssl req -x509 -newkey rsa:{KEY_BITS} "
    "-nodes`) through sign_root_hash() of build/keys/veritysign.py; {how}. The offline verify is "
    "measured whole (`invoke verify --image`, as root, so with its kernel view and merges, "
    "against the same command on the bare EROFS image) and in the building blocks that are the "
    "DDI's own. Peak RSS is a Python process's own (VmHWM): a fresh one's after importing "
    "build.read.ddi and after check_ddi (mmap'd pages it touched count), and invoke verify's "
    "(mount and systemd-sysext are children, not counted). Timings are medians of {runs} runs "
    "(--runs + 2; the whole verifies: {pairs} pairs, --runs); signed and unsigned assembles "
    "ran in pairs, one after the other, and so did the two verifies. The merge row comes from "
    "the emulated x86-64 machine's boot test and is kept by hand."
)


def trust_section(rows: list[TrustRow], old_text: str, runs: int) -> str:
    """The docs' trust costs section, between its markers; `runs` is --runs."""
    version, why_not = why_not_repart()
    how = f"it ran in Python here: {why_not}" if why_not else f"systemd-repart {version} ran it"
    return "\n".join(
        [
            START,
            "## Trust costs",
            "",
            textwrap.fill(
                ABOUT.format(runs=runs + 2, pairs=runs, how=how),
                width=100,
                break_on_hyphens=False,
            ),
            "",
            format_trust_table(rows, hand_rows(old_text)),
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    from benchmarks.standin import VERSION, fetch_binary, make_release, serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure, less 2")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--cache", type=Path, default=default_cache / "alloy-sysext-bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    cache = args.cache.resolve()
    binary = fetch_binary(cache)
    release = cache / "release"
    make_release(release, VERSION, binary)
    server = serve(release)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        case = Case(cache / "run" / "trust", url, VERSION, args.runs, 1)
        log("trust: invoke stage of the stand-in")
        timed(case.inv("stage", "cold0"), cwd=ROOT)
        rows = measure_trust(case, case.tree("cold0"))
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(cache / "run" / "trust", ignore_errors=True)  # as bench.py leaves no run
    section = trust_section(rows, args.docs.read_text(encoding="utf-8"), case.runs)
    print(section)
    docs.replace_section(args.docs, START, END, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
