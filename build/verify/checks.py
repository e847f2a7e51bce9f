"""invoke verify: check an image the way a host will take it, one line per check."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from build import alloy
from build.config.options import MAX_BINARY_MIB
from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.core.report import listing, say
from build.core.report import printable as _printable
from build.core.safeio import private_copy
from build.formats.table import FORMATS, MAX_IMAGE_BYTES, open_image
from build.image import buildinfo, conflines, content
from build.image.checksum import file_sha256, read_checksum
from build.image.content import IMAGE_EXTENSION_RELEASE, RELEASE_DIR, STRICT_XATTR
from build.image.elf import HEADER_SIZE
from build.model.arch import ARCHES, ELF_MACHINE_NAMES, Arch
from build.model.check import Check
from build.model.names import checksum_file
from build.read.image import Entry, ReadImage
from build.verify import kernelview, merge
from build.verify.stepinputs import checksums_of, shipped
from build.verify.unwrap import (
    VerityExpectations,
    is_wrapped,
    plain_with_certificate,
    unwrapped,
)

if TYPE_CHECKING:
    from build.config.context import StepContext

_UNIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._:-]*\.(service|socket|timer|path|target)")
EXPECTED_FILE_MODES = {file.path: file.listed_mode for file in content.FILES}
FORBIDDEN = ("usr/sbin", "usr/local/sbin", "usr/lib/os-release")
BINARY_DIRS = ("usr/bin/", "usr/local/bin/")
# An SELinux label: a host's policy may give one to any file. Every other xattr but
# STRICT_XATTR (on the extension-release file) fails.
ALLOWED_XATTRS = ("security.selinux",)
MAX_RELEASE_BYTES = 64 << 10
CONTENT_SLACK = 1 << 20  # bytes, beyond the binary, of every other file an image holds
MAX_DETAIL = 300  # characters of a check's detail: its line, and the error line, stay under 400
KERNEL_DIFFERS = "the kernel sees another image than the reader (kernel view): not merged"
SHOWN_LINKS = 3  # other names of a hard link a message looks at (9,000 names: not each time)


def required_files(
    autostart: bool, trust_keys: bool, run_as: str, built_now: bool = True
) -> list[str]:
    """The files an image built with (or without) --autostart and --trust-keys, and with
    --run-as, holds, but the extension-release file, which the extension-release check looks
    for; `built_now` False: an image an earlier release may have built (content.held)."""
    held = content.held(autostart, trust_keys, run_as, built_now)
    return [file.path for file in held if file is not content.EXTENSION_RELEASE]


@dataclass(frozen=True)
class Expectations:
    # The --compression an image must be packed as, as this tool packs it (its format's
    # superblock_check); None: any a host mounts, as verify --image takes images made elsewhere
    # (its format's vet_superblock).
    compression: str | None
    names: Sequence[str]  # every file name a user may give the image, beside its own
    checksums: Sequence[tuple[Path, Path]]  # (file, its .sha256) that must exist and match
    # Paths the image must hold (the extension-release file has a check of its own); by
    # default those of a build with the default options.
    required: Sequence[str] = tuple(
        required_files(autostart=False, trust_keys=False, run_as=alloy.DEFAULT_RUN_AS)
    )
    # Paths it may hold. With `required` and the extension-release file, and the directories on
    # their way, they are all it may hold: any other entry fails.
    optional: Sequence[str] = ()
    # --max-binary-size: the largest file the kernel view hashes (a larger one fails).
    max_binary_size: int = MAX_BINARY_MIB << 20
    expect_format: str | None = None  # --expect-format: the image must be of this format
    expect_compression: str | None = None  # --expect-compression: compressed so
    # What a DDI must be (signed, by which certificate); the checks of its data partition
    # are the others, as for an image of that partition's format.
    verity: VerityExpectations = dataclasses.field(default_factory=VerityExpectations)
    # The architecture a DDI's partition types name (set once they passed): its binary's too.
    partition_arch: str | None = None


def verify(image: Path, expect: Expectations) -> list[Check]:
    """Run every check on `image`, report each as a line, raise BuildError if any failed."""
    if not image.is_file():
        raise BuildError(f"no image at {image}", "build it first, or check --image")
    checks = list(_checks(image, expect))
    for check in checks:
        say("verify", f"{check.status:<4} {check.name}: {check.detail}")
    failed = failure(image, checks)
    if failed:
        raise BuildError(failed)
    return checks


def failure(image: Path, checks: Sequence[Check]) -> str | None:
    """What `checks` of `image` found wrong, in a line (the first failure, and how many
    more), or None where none failed."""
    failed = [check for check in checks if check.status == "FAIL"]
    if not failed:
        return None
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"{image} failed verification: {first.name}: {first.detail}{more}"


def static_checks(path: Path, expect: Expectations) -> list[Check]:
    """The checks that read only the image and its files, without root and without merging
    it: superblock, entries, sysusers.d/tmpfiles.d lines, extension-release, architecture,
    name, checksums (a DDI's verity and signature first). invoke release runs them again on
    every image it publishes: an image swapped after its build fails them as it would fail
    verify."""
    with tempfile.TemporaryDirectory(prefix="alloy-sysext-ddi-") as scratch:
        return list(_static_all(path, expect, Path(scratch)))


def _static_all(path: Path, expect: Expectations, scratch: Path) -> Iterator[Check]:
    content, plain = yield from _data(path, expect, scratch)
    if content is not None:
        with _naming_the_ddi(content, path):
            yield from _static_checks(_opened(content, plain), content, plain)


@contextlib.contextmanager
def _naming_the_ddi(content: Path, path: Path) -> Iterator[None]:
    """A refusal of `content`, the data partition of the DDI at `path` copied to scratch, names
    that partition of `path` (the scratch copy is gone once the refusal is read)."""
    if content == path:
        yield
        return
    try:
        yield
    except BuildError as error:
        message = error.message.replace(str(content), f"the data partition of {path}")
        raise BuildError(message, error.hint) from None


def _data(
    path: Path, expect: Expectations, scratch: Path
) -> Generator[Check, None, tuple[Path | None, Expectations]]:
    """Yields a DDI's own checks; returns the file system image the other checks read (the
    DDI's data partition, copied into `scratch`; `path` itself for another format; None
    where the DDI failed) and what it must be (--expect-format was the DDI's)."""
    if not is_wrapped(path):
        unsigned = plain_with_certificate(path, expect.verity)
        if unsigned is not None:
            yield unsigned
            return None, expect
        return path, expect
    found = yield from unwrapped(path, expect.verity, scratch)
    if found is None:
        return None, expect
    return found.data, dataclasses.replace(expect, expect_format=None, partition_arch=found.arch)


def _opened(path: Path, expect: Expectations) -> ReadImage:
    """The image, read by its reader, whose files hold no more than one binary's worth of
    content in all: every check after this may read every file (the kernel view hashes them
    all), and each file is capped only by --max-binary-size, so without this a small image
    naming one big block twenty times would have them decompress it twenty times."""
    image = open_image(path)
    total = sum(entry.size for entry in image.entries.values() if entry.is_file)
    most = expect.max_binary_size + CONTENT_SLACK
    if total > most:
        raise BuildError(
            f"refusing {path}: its files hold {total} bytes in all, more than --max-binary-size "
            f"({expect.max_binary_size}) and {CONTENT_SLACK >> 20} MiB for the small ones",
            "an Alloy sysext holds one binary and a few small files: do not install it",
        )
    return image


def _checks(path: Path, expect: Expectations) -> Iterator[Check]:
    with tempfile.TemporaryDirectory(prefix="alloy-sysext-ddi-") as scratch:
        content, plain = yield from _data(path, expect, Path(scratch))
        if content is not None:
            with _naming_the_ddi(content, path):
                yield from _content_checks(content, plain)


def _content_checks(path: Path, expect: Expectations) -> Iterator[Check]:
    image = _opened(path, expect)
    # First: every other check reads the image through the reader, trustworthy only where the
    # kernel sees the same image.
    seen = _kernel_view(image, path, expect.max_binary_size)
    yield seen
    release = yield from _static_checks(image, path, expect)
    if seen.status == "FAIL":
        yield Check("merge", "skip", KERNEL_DIFFERS)
        return
    yield from _merges(image, path, release, expect.names)


def _static_checks(
    image: ReadImage, path: Path, expect: Expectations
) -> Generator[Check, None, dict[str, str]]:
    """Yields static_checks's checks; returns the extension-release fields (empty if
    unusable), which the merges need."""
    machines = _binary_machines(image)
    yield _superblock(image, expect, _arch_of(machines))
    yield from _entries(image, expect.required, expect.optional)
    yield _conf_lines(image)
    release = yield from _extension_release(image, path, machines, expect.partition_arch)
    yield from _checksums(expect.checksums)
    return release


def _kernel_view(image: ReadImage, path: Path, max_binary_size: int) -> Check:
    """The image mounted alone, as the kernel shows it (build/verify/kernelview.py), against the
    reader's entries: paths, types, modes, owners, sizes, xattrs, every file's sha256."""
    fstype = FORMATS[image.format].fstype
    reason = kernelview.cannot_mount(fstype)
    if reason is not None:
        return Check("kernel view", "skip", reason)
    try:
        view = kernelview.kernel_view(
            path, fstype, list(image.entries), max_binary_size, max_binary_size + CONTENT_SLACK
        )
    except BuildError as error:
        return Check("kernel view", "FAIL", listing([error.message], most=MAX_DETAIL))
    sha256 = kernelview.reader_sha256(image, max_binary_size)
    found = kernelview.differences(image.entries, view, sha256)
    if found:
        return Check("kernel view", "FAIL", listing(found, most=MAX_DETAIL))
    files = sum(entry.is_file for entry in image.entries.values())
    return Check(
        "kernel view",
        "ok",
        f"mounted alone, the kernel lists and looks up the same {len(image.entries)} entries "
        f"as the reader: types, modes, owners, sizes, xattrs, the sha256 of {files} files",
    )


def _superblock(image: ReadImage, expect: Expectations, arch: Arch | None) -> Check:
    """What the image's format packs for --compression on `arch`, the architecture of the
    image's binary (None: unknown, which the architecture check fails); without a
    --compression, anything a host mounts. Then what --expect-format and --expect-compression
    pin."""
    fmt = FORMATS[image.format]
    vetted = fmt.vet_superblock(image, expect.expect_compression, arch)
    if expect.compression is not None:
        status, detail = fmt.superblock_check(image, expect.compression, arch)
        if status == "ok" and vetted[0] == "FAIL":
            status, detail = vetted
    else:
        status, detail = vetted
    if expect.expect_format not in (None, image.format):
        return Check(
            "superblock",
            "FAIL",
            f"{detail}; expected {expect.expect_format} (--expect-format)",
        )
    return Check("superblock", status, detail)


def _partial_options(image: ReadImage, optional: Sequence[str]) -> list[str]:
    """An option's files come together (--run-as=alloy's user unit runs its sysusers.d and
    tmpfiles.d files): of an image from elsewhere, some of them without the rest."""
    problems = []
    for when in {content.BY_PATH[path].when for path in optional if path in content.BY_PATH}:
        files = [file.path for file in content.FILES if file.when is when]
        held = [path for path in files if path in image.entries]
        if held and len(held) < len(files):
            missing = ", ".join(f"/{path}" for path in files if path not in held)
            problems.append(
                f"{missing} missing beside /{held[0]} ({when.value} ships them together)"
            )
    return sorted(problems)


def _entries(image: ReadImage, required: Sequence[str], optional: Sequence[str]) -> Iterator[Check]:
    files = {*required, IMAGE_EXTENSION_RELEASE, *optional}
    directories = content.directories(files)
    links = image.hard_links()
    problems = [f"/{path} is missing" for path in required if path not in image.entries]
    problems.extend(_partial_options(image, optional))
    for entry in image.entries.values():
        where = _shown(entry.path)
        if not entry.path.isprintable():
            problems.append(f"{where} has a control character in its name")
        if entry.path and entry.path.split("/")[0] != "usr":
            problems.append(f"{where} is outside /usr (systemd-sysext ignores it)")
        if any(entry.path == bad or entry.path.startswith(bad + "/") for bad in FORBIDDEN):
            problems.append(f"{where} must not be shipped (it would hide or replace the host's)")
        problems.extend(
            f"{where} {problem}" for problem in _kind_problems(entry, files, directories, links)
        )
        if entry.owner != "0/0":
            problems.append(f"{where} is owned by {entry.owner}, not root")
        if entry.is_dir and entry.mode != content.DIR_LISTED_MODE:
            problems.append(
                f"directory {where} has mode {entry.mode}, not {content.DIR_LISTED_MODE}"
            )
        expected = EXPECTED_FILE_MODES.get(entry.path)
        if entry.is_file and expected and entry.mode != expected:
            problems.append(f"{where} has mode {entry.mode}, not {expected}")
        if entry.is_file and entry.permissions & 0o022:
            problems.append(f"{where} is writable by others ({entry.mode})")
        if entry.permissions & 0o7000:
            problems.append(f"{where} has a setuid, setgid or sticky bit ({entry.mode})")
        problems.extend(f"{where} {problem}" for problem in _xattr_problems(entry))
    if problems:
        yield Check("entries", "FAIL", listing(problems))
    else:
        yield Check(
            "entries",
            "ok",
            f"{len(image.entries)} entries, only the expected files and their directories, "
            "root-owned, under /usr, no xattrs but the expected",
        )


def _kind_problems(
    entry: Entry, files: set[str], directories: set[str], links: dict[str, list[str]]
) -> Iterator[str]:
    """What is wrong with the entry's type and place: only directories and regular files, each
    where an Alloy sysext has one, each with a single name."""
    if entry.kind == "symlink":
        yield f"is a symlink to {_printable(entry.target or '')}"
    elif entry.kind in ("block device", "character device"):
        major, minor = entry.device or (0, 0)
        yield f"is a {entry.kind} ({major}, {minor})"
    elif entry.kind in ("FIFO", "socket"):
        yield f"is a {entry.kind}"
    elif entry.path in links:
        names = links[entry.path]  # thousands in a hostile image: show a few, count the rest
        others = listing(
            (_shown(o) for o in islice((o for o in names if o != entry.path), SHOWN_LINKS)), ", "
        )
        if len(names) - 1 > SHOWN_LINKS:
            others += f", … and {len(names) - 1 - SHOWN_LINKS} more"
        yield f"is a hard link (one inode with {others})"
    elif entry.is_dir and entry.path in files:
        yield "is a directory, not a regular file"
    elif entry.is_file and entry.path in directories:
        yield "is a file where a directory belongs"
    elif entry.path not in files | directories:
        yield f"is an extra {'directory' if entry.is_dir else 'file'}, not part of an Alloy sysext"


def _xattr_problems(entry: Entry) -> Iterator[str]:
    for name in entry.xattrs:
        if name in ALLOWED_XATTRS:
            continue
        if name == STRICT_XATTR and entry.is_file and entry.path.startswith(RELEASE_DIR):
            continue
        if name == "security.capability":
            yield "has file capabilities (xattr security.capability)"
        else:
            yield f"has the xattr {_printable(name)}"


def _conf_lines(image: ReadImage) -> Check:
    """Every line of every sysusers.d and tmpfiles.d file in the image is one this build
    writes (build/image/conflines.py): systemd runs them as root on the host."""
    problems: list[str] = []
    read = 0
    for entry in image.entries.values():
        kind = conflines.format_of(entry.path)
        if kind is None:
            continue
        where = _shown(entry.path)
        if not entry.is_file:
            problems.append(f"{where} is a {entry.kind}: systemd would read what it points to")
        elif entry.size > conflines.MAX_BYTES:
            problems.append(f"{where} is {entry.size} bytes, over {conflines.MAX_BYTES}")
        else:
            text = image.head(entry.path, entry.size).decode("utf-8", errors="replace")
            problems += [f"{where} {why}" for why in conflines.refusals(entry.path, kind, text)]
            read += 1
    if problems:
        return Check("sysusers-tmpfiles", "FAIL", listing(problems))
    if not read:
        return Check("sysusers-tmpfiles", "ok", "no sysusers.d or tmpfiles.d file")
    files = f"{read} file{'s' if read > 1 else ''}"
    return Check("sysusers-tmpfiles", "ok", f"{files} read, every line one this build writes")


def _shown(path: str) -> str:
    """/path on one line, whatever bytes its names hold."""
    return "/" + _printable(path)


def _extension_release(
    image: ReadImage, path: Path, machines: dict[str, int | None], partition_arch: str | None
) -> Generator[Check, None, dict[str, str]]:
    """Yields its checks; returns the extension-release fields (empty if unusable)."""
    releases = [
        name for name in image.entries if name.startswith(RELEASE_DIR + "extension-release.")
    ]
    if len(releases) != 1:
        found = listing((_printable(name) for name in releases), ", ") or "none"
        yield Check(
            "extension-release",
            "FAIL",
            f"expected one {RELEASE_DIR}extension-release.NAME, found {found}",
        )
        return {}
    inside = releases[0]
    entry = image.entries[inside]
    if not entry.is_file:
        # Never followed: a symlink to /etc/os-release would report the host's ID.
        yield Check(
            "extension-release", "FAIL", f"{_shown(inside)} is a {entry.kind}, not a regular file"
        )
        return {}
    if entry.size > MAX_RELEASE_BYTES:
        yield Check(
            "extension-release",
            "FAIL",
            f"{_shown(inside)} is {entry.size} bytes; an extension-release file is a few lines",
        )
        return {}
    extension = inside.removeprefix(RELEASE_DIR + "extension-release.")
    fields = _parse_release(image.head(inside, entry.size).decode("utf-8", errors="replace"))
    strict = entry.xattrs.get(STRICT_XATTR)
    fields["_NAME"] = extension
    hangs = _restarted_at_merge(fields)
    if not fields.get("ID"):
        yield Check("extension-release", "FAIL", f"{inside} has no ID=")
    elif hangs:
        yield Check("extension-release", "FAIL", f"{inside}: {hangs}")
    else:
        yield Check("extension-release", "ok", f"{inside}: ID={fields['ID']}")
    yield _architecture(machines, fields.get("ARCHITECTURE", ""), partition_arch)
    stem = path.name.removesuffix(".raw")
    if stem == extension:
        yield Check("name", "ok", f"{path.name} matches extension-release.{extension}")
    elif strict == b"false":
        yield Check("name", "ok", f"{STRICT_XATTR}=false lets systemd accept {path.name}")
    else:
        yield Check(
            "name",
            "FAIL",
            f"{path.name} holds extension-release.{extension} without {STRICT_XATTR}=false: "
            f"systemd refuses it under this name (only {extension}.raw would merge)",
        )
    return fields


def _restarted_at_merge(fields: dict[str, str]) -> str | None:
    """Why the fields that have systemd 262+ restart units at a merge are wrong, or None: they
    must never name alloy.service itself (its start waits for sysinit.target, which waits for
    the merge at boot: the boot hangs; and a stopped alloy would be started)."""
    unit = content.IMAGE_UNIT.rsplit("/", 1)[1]
    for field in ("EXTENSION_RESTART_UNITS", "EXTENSION_RELOAD_OR_RESTART_UNITS"):
        if unit in fields.get(field, "").split():
            return (
                f"{field}= names {unit}: systemd 262 would start it at every merge, a stopped "
                "one too, and at boot wait for that start before sysinit.target, which never "
                f"comes (the boot hangs); name a unit that runs `systemctl --no-block "
                f"try-restart {unit}` instead, as /{content.RESTART_UNIT.path} does"
            )
    return None


def _binary_machines(image: ReadImage) -> dict[str, int | None]:
    """Each file in /usr/bin and /usr/local/bin -> its ELF machine (None: not an ELF file)."""
    machines: dict[str, int | None] = {}
    for entry in image.entries.values():
        if entry.is_file and entry.path.startswith(BINARY_DIRS):
            header = image.head(entry.path, HEADER_SIZE)
            elf = header[:4] == b"\x7fELF" and len(header) >= HEADER_SIZE
            machines[entry.path] = int.from_bytes(header[18:20], "little") if elf else None
    return machines


def _arch_of(machines: dict[str, int | None]) -> Arch | None:
    """The architecture every binary is built for; None if none, mixed, or not one of ours."""
    found = set(machines.values())
    if len(found) != 1:
        return None
    [machine] = found
    return next((a for a in ARCHES.values() if a.elf_machine == machine), None)


def _architecture(
    machines: dict[str, int | None], architecture: str, partition_arch: str | None
) -> Check:
    """ARCHITECTURE= against every binary's ELF machine, and a DDI's partition types
    (`partition_arch`) against both: no host merges a DDI whose types name another
    architecture (its systemd finds no root partition of its own, or refuses ARCHITECTURE=)."""
    arch = next((a for a in ARCHES.values() if a.systemd == architecture), None)
    if arch is None:
        valid = ", ".join(a.systemd for a in ARCHES.values())
        return Check(
            "architecture",
            "FAIL",
            f"ARCHITECTURE={architecture or '(missing)'} is not one of systemd's names ({valid})",
        )
    binaries = list(machines)
    for binary, machine in machines.items():
        if machine is None:
            return Check("architecture", "FAIL", f"/{binary} is not an ELF executable")
        if machine != arch.elf_machine:
            found = ELF_MACHINE_NAMES.get(machine, f"machine {machine}")
            return Check(
                "architecture",
                "FAIL",
                f"ARCHITECTURE={architecture} but /{binary} is built for {found}",
            )
    if not binaries:
        return Check("architecture", "FAIL", "no binary in /usr/bin or /usr/local/bin to check")
    if partition_arch is not None and partition_arch != arch.name:
        return Check(
            "architecture",
            "FAIL",
            f"ARCHITECTURE={architecture} and {listing(('/' + b for b in binaries), ', ')} "
            f"({arch.elf_name}), but the DDI's partition types are {partition_arch}'s",
        )
    return Check(
        "architecture",
        "ok",
        f"ARCHITECTURE={architecture} matches {listing(('/' + b for b in binaries), ', ')}",
    )


def _checksums(pairs: Sequence[tuple[Path, Path]]) -> Iterator[Check]:
    for file, checksum in pairs:
        if not checksum.exists():
            yield Check("checksum", "FAIL", f"{checksum} is missing")
            continue
        try:
            recorded = read_checksum(checksum)
        except BuildError as error:
            yield Check("checksum", "FAIL", str(error))
            continue
        listed = checksum.read_text(encoding="utf-8").split()[-1].lstrip("*")
        if listed != file.name:
            yield Check("checksum", "FAIL", f"{checksum.name} names {listed}, not {file.name}")
        elif recorded != file_sha256(file):
            yield Check("checksum", "FAIL", f"{file.name} does not match {checksum.name}")
        else:
            yield Check("checksum", "ok", f"{file.name} matches {checksum.name}")


def _merges(
    image: ReadImage, path: Path, release: dict[str, str], names: Sequence[str]
) -> Iterator[Check]:
    """Real merges under every name a host may give the image (`names`, then NAME.raw, the name
    the sysext-bakery's /etc/extensions symlink has), each in a scratch root, never over the
    live /usr; systemd-analyze checks the units while the last one is merged."""
    if "_NAME" not in release:
        yield Check("merge", "skip", "no usable extension-release")
        return
    link = f"{release['_NAME']}.raw"
    every_name = list(dict.fromkeys([*names, link]))
    reason = merge.cannot_merge(release.get("ARCHITECTURE", ""))
    if reason is not None:
        for name in every_name:
            yield Check("merge", "skip", f"as {name}: {reason}")
        yield Check("systemd-analyze", "skip", reason)
        return
    files = [entry.path for entry in image.entries.values() if entry.is_file]
    # Unit names come from the image: only plain ones go to systemd-analyze (the entries check
    # fails any other unit; a name like --generators=yes must never become an option).
    units = [
        f.removeprefix("usr/lib/systemd/system/")
        for f in files
        if f.startswith("usr/lib/systemd/system/")
        and _UNIT_NAME.fullmatch(f.removeprefix("usr/lib/systemd/system/"))
    ]
    os_release = _os_release_for(release)
    for name in every_name:
        analyze = units if name == link else ()
        merged = merge.merge_in_scratch_root(path, name, os_release, files, analyze)
        how = f"as {name}"
        if name == link and name not in names:
            how += " (the sysext-bakery link's name)"
        yield _merge_check(how, merged)
        if name != link:
            continue
        if merged.missing:
            yield Check("systemd-analyze", "skip", f"the image did not merge as {name}")
            continue
        for unit in units:
            output = merged.analyze.get(unit, ["(did not run)"])
            if output:
                yield Check("systemd-analyze", "FAIL", f"{unit}: " + listing(output, " / "))
            else:
                yield Check("systemd-analyze", "ok", f"verify {unit}: no warnings")


def _merge_check(how: str, merged: merge.Merged) -> Check:
    if merged.missing:
        why = listing((line for line in merged.log if line.strip()), " / ") or "no reason given"
        missing = listing(merged.missing, ", ", most=100)
        return Check("merge", "FAIL", f"{how}: {missing} did not appear ({why})")
    return Check("merge", "ok", f"{how}: {len(merged.present)} files appeared, unmerged again")


def _parse_release(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            fields[key] = value.strip().strip("\"'")
    return fields


def _os_release_for(release: dict[str, str]) -> str:
    """A scratch root's os-release that the image's extension-release accepts."""
    lines = [f"ID={release['ID'] if release.get('ID') not in (None, '_any') else 'scratch'}"]
    for key in ("VERSION_ID", "SYSEXT_LEVEL"):
        if key in release:
            lines.append(f"{key}={release[key]}")
    return "\n".join(lines) + "\n"


def make(runner: StepContext) -> str:
    """Verify the newest files (pending ones, deferred, where a step just made them) and record
    the result in the image's build info."""
    spec = runner.spec
    names = shipped(spec)
    info = buildinfo.read(runner)
    expect = Expectations(
        compression=spec.compression,
        names=[path.name for path in names],
        checksums=[(runner.current(f), runner.current(c)) for f, c in checksums_of(names)],
        # The keys' presence as built: invoke verify without --trust-keys checks the image's.
        required=required_files(spec.autostart, bool(info.get("trust_keys")), spec.run_as),
        max_binary_size=spec.max_binary_size,
        # Unsigned as built, or not a DDI: a certificate in invoke.yaml is for other builds.
        verity=VerityExpectations(
            spec.verity_cert if spec.verity_signature else None,
            spec.verity_signature,
            spec.arch.name,
        )
        if FORMATS[spec.format].inner
        else VerityExpectations(),
    )
    _refuse_signed_without_certificate(spec, info)
    image = runner.current(spec.image)
    # Built with other options, the image would fail checks it need not pass: say so, and
    # leave its record as it is.
    differ = buildinfo.options_differ(
        info, spec, FORMATS[spec.format].used_compression(spec.compression, spec.arch)
    )
    if differ:
        raise BuildError(
            f"{spec.image} was built with {', '.join(differ)}, unlike this verify; its build "
            "info is left as it was",
            "verify it with the options it was built with, or rebuild it with these: invoke all",
        )
    try:
        checks = verify(image, expect)
    except BuildError as error:
        if runner.deferred:
            raise BuildError(
                error.message.replace(str(image), f"the new {spec.image}", 1),
                "the new image was not installed: every earlier output in "
                f"{spec.output_dir} is as it was",
            ) from None
        buildinfo.record_verify(runner, {"result": "failed", "error": error.message})
        raise
    # verify passed, so the .sha256 is the image's: the record names the bytes it vetted.
    sha256 = read_checksum(runner.current(checksum_file(spec.image)))
    buildinfo.record_verify(runner, buildinfo.verified(checks, sha256))
    return _summary(image, checks)


def _refuse_signed_without_certificate(spec: BuildSpec, info: dict[str, Any]) -> None:
    if FORMATS[spec.format].inner and spec.verity_signature and spec.verity_cert is None:
        fingerprint = info.get("verity_certificate_fingerprint")
        raise BuildError(
            f"{spec.image} is a signed DDI (certificate fingerprint {fingerprint}, as its "
            "build info says) and no --verity-cert was given to check its signature against; "
            "nothing was checked",
            "give --verity-cert=CRT (PEM), the certificate it was signed with, or set "
            "verity_cert in invoke.yaml",
        )


def _summary(image: Path, checks: list[Check]) -> str:
    skipped = sum(check.status == "skip" for check in checks)
    return f"{image}: {len(checks) - skipped} checks passed, {skipped} skipped"


def verify_any_image(
    image: Path,
    spec: BuildSpec,
    compression: str | None = None,
    expect_format: str | None = None,
    expect_compression: str | None = None,
    verity_cert: Path | None = None,
) -> None:
    """invoke verify --image: an image from anywhere, named as its owner named it, of either
    format, packed with any compression and block size a host mounts (said in the superblock
    line); `compression` (--compression given on the command line) holds it to what this
    tool packs for it, `expect_format` and `expect_compression` pin those; a DDI must be
    signed by `verity_cert` where given (and is refused signed without it). Every check reads
    one private copy of it, whose sha256 the last line gives: the bytes vetted."""
    if not image.is_file():
        raise BuildError(f"no image at {image}", "build it first, or check --image")
    with private_copy(image, MAX_IMAGE_BYTES) as copy:
        expect = Expectations(
            compression=compression,
            names=[image.name],
            checksums=[(copy, sums) for _, sums in checksums_of([image]) if sums.exists()],
            # An image from elsewhere may be built with or without --autostart and --trust-keys,
            # and with either --run-as: it must hold what every image holds.
            required=required_files(
                autostart=False, trust_keys=False, run_as="root", built_now=False
            ),
            optional=[file.path for file in content.optional()],
            max_binary_size=spec.max_binary_size,
            expect_format=expect_format,
            expect_compression=expect_compression,
            verity=VerityExpectations(
                verity_cert, True if verity_cert is not None else None, None, expect_format
            ),
        )
        try:
            checks = verify(copy, expect)
        except BuildError as error:
            raise BuildError(error.message.replace(str(copy), str(image)), error.hint) from None
        vetted = file_sha256(copy)
    say("verify", f"{_summary(image, checks)}; the bytes vetted have sha256 {vetted}")
