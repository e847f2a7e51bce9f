"""verify's merge and unit-check step never runs what the image brings (issue 11, §1).

The image carries its own copies of the programs verify's merge step runs (and of a shared
library one of them loads), each leaving a marker when run. Such an image fails verify's entry
checks first, so the step is driven by itself here: the merges must happen (else this proves
nothing) and no marker may appear."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from build.image.content import STRICT_XATTR
from build.read.image import SquashfsImage
from build.verify import checks as verify
from tests.fakes import MACHINES, elf_binary

pytestmark = [
    pytest.mark.needs(
        "systemd-sysext", "unshare", "mksquashfs", "gcc", root="real merges: mount namespaces"
    ),
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="the test image is for x86-64"),
]

# Every program the merge step could run while the image is merged, under both bin directories.
PROGRAMS = (
    "sh", "dash", "bash", "sed", "grep", "head", "ln", "rm", "test", "[", "mount", "umount",
    "systemd-analyze", "systemd-sysext", "systemctl", "man", "unshare", "env", "cat",
)  # fmt: skip
MARKER_C = r"""
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, argv[0], strlen(argv[0])); write(fd, "\n", 1); close(fd); }
    return 0;
}
"""
UNIT = """[Unit]
Description=stand-in
[Service]
ExecStart=/usr/local/bin/alloy
[Install]
WantedBy=multi-user.target
"""


def _compile(source: str, output: Path, marker: Path, *flags: str) -> None:
    c_file = output.with_suffix(".c")
    c_file.write_text(source)
    subprocess.run(
        ["gcc", "-O1", f'-DMARKER="{marker}"', *flags, "-o", str(output), str(c_file)],
        check=True,
        capture_output=True,
    )


def _library_shim(work: Path, marker: Path) -> tuple[str, Path] | None:
    """A stand-in for a library sed loads (libacl.so.1 on Debian): the same versioned symbols,
    and a constructor that leaves the marker. (soname path inside the image, built file)"""
    sed = shutil.which("sed")
    if sed is None or shutil.which("objdump") is None:
        return None
    symbols: dict[str, list[str]] = {}
    dump = subprocess.run(["objdump", "-T", sed], capture_output=True, text=True).stdout
    for match in re.finditer(r"\*UND\*\s+\S+\s+\((ACL_[0-9.]+)\)\s+(\w+)", dump):
        symbols.setdefault(match[1], []).append(match[2])
    ldd = subprocess.run(["ldd", sed], capture_output=True, text=True).stdout
    found = re.search(r"libacl\.so\.1 => (\S+)", ldd)
    if not symbols or found is None:
        return None
    where = Path(found[1]).parent.name  # x86_64-linux-gnu
    stubs = "".join(f"int {name}(void) {{ return -1; }}\n" for v in symbols.values() for name in v)
    source = (
        "#include <fcntl.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void mark(void) {\n"
        "    int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0644);\n"
        '    if (fd >= 0) { write(fd, "libacl.so.1\\n", 12); close(fd); }\n}\n' + stubs
    )
    script = work / "acl.map"
    script.write_text(
        "".join(f"{v} {{ global: {'; '.join(names)}; }};\n" for v, names in symbols.items())
        + "ACL_local { local: *; };\n"
    )
    library = work / "libacl.so.1"
    _compile(
        source,
        library,
        marker,
        "-shared",
        "-fPIC",
        "-Wl,-soname,libacl.so.1",
        f"-Wl,--version-script={script}",
    )
    return f"usr/lib/{where}/libacl.so.1", library


def _hostile_image(tmp_path: Path, marker: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    program = work / "marker"
    _compile(MARKER_C, program, marker, "-static")
    tree = tmp_path / "tree"
    for directory in ("usr/bin", "usr/local/bin", "usr/lib/systemd/system"):
        (tree / directory).mkdir(parents=True)
    for directory in ("usr/bin", "usr/local/bin"):
        for name in PROGRAMS:
            shutil.copy(program, tree / directory / name)
    (tree / "usr/local/bin/alloy").write_bytes(elf_binary(MACHINES["amd64"]))
    (tree / "usr/local/bin/alloy").chmod(0o755)
    (tree / "usr/lib/systemd/system/alloy.service").write_text(UNIT)
    # A generator, and a "unit" whose name would turn generators on if taken for an option.
    (tree / "usr/lib/systemd/system-generators").mkdir()
    shutil.copy(program, tree / "usr/lib/systemd/system-generators/alloy-generator")
    (tree / "usr/lib/systemd/system/--generators=yes").write_text(UNIT)
    release = tree / "usr/lib/extension-release.d/extension-release.alloy"
    release.parent.mkdir(parents=True)
    release.write_text("ID=_any\nARCHITECTURE=x86-64\n")
    os.setxattr(release, STRICT_XATTR, b"false")
    shim = _library_shim(work, marker)
    if shim is not None:
        inside, built = shim
        (tree / inside).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(built, tree / inside)
    image = tmp_path / "out" / "alloy-1.10.2-amd64.raw"
    image.parent.mkdir()
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-all-root", "-noappend", "-no-progress"],
        check=True,
        capture_output=True,
    )
    return image


def test_merge_step_runs_nothing_the_image_brings(tmp_path: Path) -> None:
    marker = tmp_path / "marker.log"
    image = _hostile_image(tmp_path, marker)
    release = {"_NAME": "alloy", "ID": "_any", "ARCHITECTURE": "x86-64"}
    names = [image.name, "alloy-1.10.2.raw"]
    checks = list(verify._merges(SquashfsImage(image), image, release, names))
    merges = [check for check in checks if check.name == "merge"]
    # The image did merge under every name (or the absent marker would prove nothing)...
    assert len(merges) == 3 and all(check.status == "ok" for check in merges), checks
    assert any(check.name == "systemd-analyze" and check.status != "skip" for check in checks)
    # ...and nothing it brought ran.
    assert not marker.exists(), f"ran from the image: {marker.read_text().split()}"


def test_the_marker_programs_would_leave_a_marker(tmp_path: Path) -> None:
    """The fixture's own check: each stand-in does leave the marker when run."""
    marker = tmp_path / "marker.log"
    image = _hostile_image(tmp_path, marker)
    tree = tmp_path / "check"
    subprocess.run(["unsquashfs", "-d", str(tree), str(image)], check=True, capture_output=True)
    subprocess.run([str(tree / "usr/bin/systemd-analyze")], check=True)
    assert marker.read_text().split() == [str(tree / "usr/bin/systemd-analyze")]
    library = next(tree.glob("usr/lib/*/libacl.so.1"), None)
    if library is not None:  # sed with the stand-in library: the constructor runs first
        sed = shutil.which("sed")
        assert sed is not None
        env = {**os.environ, "LD_LIBRARY_PATH": str(library.parent)}
        subprocess.run([sed, "--version"], env=env, capture_output=True)
        assert "libacl.so.1" in marker.read_text().split()
