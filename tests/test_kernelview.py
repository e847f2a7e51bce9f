"""verify's kernel view: the image mounted alone must show the kernel what the reader read, or
verify fails in one line naming the path and both views."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from build.core.errors import BuildError
from build.core.report import listing
from build.image.content import IMAGE_BINARY, IMAGE_UNIT, STRICT_XATTR
from build.read.image import ReadImage
from build.verify import checks as verify
from build.verify import kernelview, machine
from tests.conftest import REPO, Invoke
from tests.trees import CAP_SYS_ADMIN, LAYOUTS, alloy_tree, packed

needs_mount = pytest.mark.needs("unshare", "mount", root="mounting images in a private namespace")
needs_tools = pytest.mark.needs("mksquashfs", "mkfs.erofs")


def image_of(tmp_path: Path, fmt: str = "squashfs", compression: str = "xz", **kw: object) -> Path:
    tree = alloy_tree(tmp_path / "tree", **kw)  # type: ignore[arg-type]
    return packed(tree, tmp_path / "image" / "alloy.raw", fmt, compression)


def expect(compression: str = "xz") -> verify.Expectations:
    """What verify expects of alloy_tree's image: the files every build of any release holds
    (--run-as=root's, without the restart unit)."""
    required = verify.required_files(
        autostart=False, trust_keys=False, run_as="root", built_now=False
    )
    return verify.Expectations(compression, ["alloy.raw"], [], required=required)


def lying(monkeypatch: pytest.MonkeyPatch, path: str, **changes: Any) -> None:
    """verify's reader shows `path` with `changes`, whatever the image holds."""
    real = verify.open_image

    def lie(image: Path) -> ReadImage:
        read = real(image)
        read.entries[path] = dataclasses.replace(read.entries[path], **changes)
        return read

    monkeypatch.setattr(verify, "open_image", lie)


def failed_line(capsys: pytest.CaptureFixture[str], image: Path, fmt: str = "squashfs") -> str:
    """The kernel view's FAIL line of a verify that must fail, and no merge run."""
    with pytest.raises(BuildError) as raised:
        verify.verify(image, expect("xz" if fmt == "squashfs" else "lz4hc"))
    lines = capsys.readouterr().out.splitlines()
    [line] = [line for line in lines if " kernel view: " in line]
    assert line.startswith("verify   FAIL kernel view: "), lines
    assert len(line) <= 400 and len(str(raised.value)) <= 400 + len(str(image))
    assert "kernel view: " in raised.value.message
    assert not any(" merge: as " in line for line in lines)
    assert f"skip merge: {verify.KERNEL_DIFFERS}" in "\n".join(lines)
    return line


@needs_tools
@needs_mount
@pytest.mark.parametrize(("fmt", "compression", "arch"), LAYOUTS)
def test_a_good_image_looks_the_same_to_the_kernel(
    invoke: Invoke, tmp_path: Path, fmt: str, compression: str, arch: str
) -> None:
    image = packed(
        alloy_tree(tmp_path / "tree", arch), tmp_path / "image/alloy.raw", fmt, compression, arch
    )
    flags = (f"--format={fmt}", f"--compression={compression}", f"--arch={arch}")
    result = invoke("verify", f"--image={image}", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if " kernel view: " in line]
    assert line == (
        "verify   ok   kernel view: mounted alone, the kernel lists and looks up the same 11 "
        "entries as the reader: types, modes, owners, sizes, xattrs, the sha256 of 3 files"
    )
    checks = [line.split()[2] for line in result.stdout.splitlines() if line[9:13] in ("ok  ",)]
    assert checks[0] == "kernel" and "superblock:" in checks  # first, before anything it vets


# A reader that lies: the image holds one thing, the reader (patched) says another.

LIAR = """
import dataclasses, sys
sys.path.insert(0, {repo!r})
from build.verify import checks as verify
real = verify.open_image
def lie(path):
    image = real(path)
    image.entries[{path!r}] = dataclasses.replace(image.entries[{path!r}], **{changes!r})
    return image
verify.open_image = lie
from invoke.main import program
program.run(["invoke", *sys.argv[1:]])
"""


@needs_tools
@needs_mount
@pytest.mark.parametrize(("fmt", "compression"), [("squashfs", "xz"), ("erofs", "lz4hc")])
def test_a_reader_hiding_a_setuid_bit_fails_verify_through_the_cli(
    cli_env: dict[str, str], tmp_path: Path, fmt: str, compression: str
) -> None:
    tree = alloy_tree(tmp_path / "tree")
    (tree / IMAGE_BINARY).chmod(0o4755)
    image = packed(tree, tmp_path / "image/alloy.raw", fmt, compression)
    liar = LIAR.format(repo=str(REPO), path=IMAGE_BINARY, changes={"permissions": 0o755})
    flags = (f"--image={image}", f"--format={fmt}", f"--compression={compression}")
    result = subprocess.run(
        [sys.executable, "-c", liar, "--search-root", str(REPO), "verify", *flags],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [error] = result.stderr.splitlines()
    assert error.startswith(f"error: {image} failed verification: kernel view: /{IMAGE_BINARY}: ")
    [line] = [line for line in result.stdout.splitlines() if " kernel view: " in line]
    assert line == (
        f"verify   FAIL kernel view: /{IMAGE_BINARY}: permissions is 4755 to the kernel (lookup "
        "and listing), 0755 to the reader"
    )
    # The lie fooled every other check: only the kernel view saw it.
    assert [row for row in result.stdout.splitlines() if " FAIL " in row] == [line]
    assert not any(" merge: as " in row for row in result.stdout.splitlines())


@needs_tools
@needs_mount
@pytest.mark.parametrize("fmt", ["squashfs", "erofs"])
def test_a_reader_hiding_a_capability_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    tree = alloy_tree(tmp_path / "tree")
    os.setxattr(tree / IMAGE_BINARY, "security.capability", CAP_SYS_ADMIN)
    image = packed(tree, tmp_path / "image/alloy.raw", fmt, "xz" if fmt == "squashfs" else "lz4hc")
    lying(monkeypatch, IMAGE_BINARY, xattrs={})
    line = failed_line(capsys, image, fmt)
    assert (
        f"/{IMAGE_BINARY}: xattrs is {{security.capability}} to the kernel (lookup and listing), "
        "none to the reader"
    ) in line


@needs_tools
@needs_mount
def test_a_reader_showing_another_xattr_value_shows_both(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    release = "usr/lib/extension-release.d/extension-release.alloy"
    lying(monkeypatch, release, xattrs={"user.extension-release.strict": b"true"})
    line = failed_line(capsys, image_of(tmp_path))
    assert (
        f"/{release}: xattrs is {{user.extension-release.strict=66616c7365}} to the kernel "
        "(lookup and listing), {user.extension-release.strict=74727565} to the reader"
    ) in line


@needs_tools
@needs_mount
@pytest.mark.parametrize("fmt", ["squashfs", "erofs"])
def test_a_file_whose_reader_hash_differs_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    image = image_of(tmp_path, fmt, "xz" if fmt == "squashfs" else "lz4hc")
    asked: list[tuple[str, int]] = []

    real = ReadImage.sha256

    def wrong(self: ReadImage, path: str, limit: int) -> str:
        asked.append((path, limit))
        return "0" * 64 if path == IMAGE_BINARY else real(self, path, limit)

    monkeypatch.setattr(ReadImage, "sha256", wrong, raising=False)
    line = failed_line(capsys, image, fmt)
    assert f"/{IMAGE_BINARY}: sha256 is sha256 " in line
    assert "to the kernel (lookup and listing), sha256 0000000000000000… to the reader" in line
    # Each file hashed once by the reader, with --max-binary-size's default as the limit.
    assert (
        sorted(asked) == sorted({(path, verify.MAX_BINARY_MIB << 20) for path, _ in asked})
        and len(asked) == 3
    )


@needs_tools
@needs_mount
def test_a_reader_that_cannot_hash_fails_rather_than_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def cannot(self: ReadImage, path: str, limit: int) -> str:
        raise BuildError(f"/{path} is too large to hash")

    monkeypatch.setattr(ReadImage, "sha256", cannot, raising=False)
    line = failed_line(capsys, image_of(tmp_path))
    release = "usr/lib/extension-release.d/extension-release.alloy"
    assert line.startswith(
        f"verify   FAIL kernel view: /{release}: the reader cannot hash it (/{release} is too large"
    )


@needs_tools
@needs_mount
def test_files_the_reader_hides_are_named_in_one_bounded_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tree = alloy_tree(tmp_path / "tree")
    generators = tree / "usr/lib/systemd/system-generators"
    generators.mkdir(mode=0o755)
    for number in range(40):
        (generators / f"gen{number:02}").write_bytes(b"\x7fELF")
    image = packed(tree, tmp_path / "image/alloy.raw", "squashfs", "xz")
    real = verify.open_image

    def hiding(path: Path) -> ReadImage:
        read = real(path)
        for name in [name for name in read.entries if "system-generators" in name]:
            del read.entries[name]
        return read

    monkeypatch.setattr(verify, "open_image", hiding)
    line = failed_line(capsys, image)
    assert line.startswith(
        "verify   FAIL kernel view: /usr/lib/systemd/system-generators is listed by the kernel, "
        "not by the reader; /usr/lib/systemd/system-generators/gen00 is listed by the kernel"
    )
    assert line.endswith(" more") and "… and " in line


@needs_tools
@needs_mount
def test_a_path_only_the_reader_finds_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = verify.open_image

    def inventing(path: Path) -> ReadImage:
        read = real(path)
        read.entries["usr/ghost"] = dataclasses.replace(read.entries["usr/local"], path="usr/ghost")
        return read

    monkeypatch.setattr(verify, "open_image", inventing)
    line = failed_line(capsys, image_of(tmp_path))
    assert "/usr/ghost is found by the reader, not listed by the kernel" in line
    assert "/usr/ghost: the kernel's lookup fails (No such file or directory)" in line
    assert "kernel's listing" not in line  # not listed: the first difference says so


@needs_tools
def test_without_root_the_check_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reason = "needs root (a private mount namespace and a loop device)"
    monkeypatch.setattr(kernelview, "cannot_mount", lambda fstype: reason)
    mounted: list[Path] = []
    monkeypatch.setattr(kernelview, "kernel_view", lambda image, *rest: mounted.append(image))
    monkeypatch.setattr(verify.merge, "cannot_merge", lambda arch: "no merges in this test")
    checks = verify.verify(image_of(tmp_path), expect())
    assert checks[0] == verify.Check("kernel view", "skip", reason)
    assert f"verify   skip kernel view: {reason}" in capsys.readouterr().out.splitlines()
    assert mounted == []


def test_cannot_mount_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine.os, "geteuid", lambda: 1000)
    assert kernelview.cannot_mount("squashfs") == (
        "needs root (a private mount namespace and a loop device)"
    )
    monkeypatch.setattr(machine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(machine.shutil, "which", lambda tool: None if tool == "mount" else "/x")
    assert kernelview.cannot_mount("squashfs") == "mount is not installed"
    monkeypatch.setattr(machine.shutil, "which", lambda tool: "/x")
    monkeypatch.setattr(machine, "kernel_has", lambda fstype: fstype != "erofs")
    assert kernelview.cannot_mount("erofs") == "this machine's kernel has no erofs driver"
    monkeypatch.setattr(machine, "namespace_refused", lambda: None)
    monkeypatch.setattr(machine, "LOOP_CONTROL", Path("/nonexistent/loop-control"))
    assert kernelview.cannot_mount("squashfs") == (
        "no loop devices here (/nonexistent/loop-control is missing)"
    )
    monkeypatch.setattr(machine, "LOOP_CONTROL", Path("/"))
    assert kernelview.cannot_mount("squashfs") is None
    # An unprivileged container's root: unshare -m is refused before any image is read.
    refused = "unshare: unshare failed: Operation not permitted"
    monkeypatch.setattr(machine, "namespace_refused", lambda: refused)
    assert kernelview.cannot_mount("squashfs") == f"no private mount namespace here ({refused})"
    # Without the probe (an up-to-date check), only what a stat tells: no unshare is run.
    assert machine.cannot_mount("squashfs", probe=False) is None


@needs_tools
@needs_mount
def test_a_mount_the_kernel_refuses_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = image_of(tmp_path)
    with pytest.raises(BuildError) as raised:
        kernelview.kernel_view(image, "erofs", [""], 1 << 20)  # a squashfs image
    assert raised.value.message.startswith(f"the kernel refuses to mount {image}: ")
    assert "\n" not in raised.value.message and len(raised.value.message) < 400
    real: Callable[..., kernelview.KernelView] = kernelview.kernel_view
    monkeypatch.setattr(
        kernelview, "kernel_view", lambda image, fstype, *rest: real(image, "erofs", *rest)
    )
    line = failed_line(capsys, image)
    assert line.startswith(f"verify   FAIL kernel view: the kernel refuses to mount {image}: ")


def test_a_long_list_ends_with_how_many_more() -> None:
    lines = [f"/usr/file{number}: differs" for number in range(100)]
    joined = listing(lines, most=120)
    assert len(joined) <= 120 and joined.endswith("; … and 95 more")
    assert joined.startswith("/usr/file0: differs; /usr/file1: differs")
    assert listing(lines[:2], most=120) == "/usr/file0: differs; /usr/file1: differs"
    assert listing(["x" * 200], most=120) == "x" * 119 + "…"
    assert listing(["x" * 200, "y"], most=120) == "x" * 105 + "…; y"


def test_names_with_control_characters_stay_on_one_line() -> None:
    view = kernelview.KernelView(listed={"usr\nevil": kernelview.Seen("usr\nevil")}, looked_up={})
    [line] = kernelview.differences({}, view, lambda path: "")
    assert line == "/usr\\x0aevil is listed by the kernel, not by the reader"


@needs_tools
@needs_mount
def test_the_unit_is_hashed_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Not only the binary: every regular file's content is compared."""

    real = ReadImage.sha256

    def wrong(self: ReadImage, path: str, limit: int) -> str:
        return "f" * 64 if path == IMAGE_UNIT else real(self, path, limit)

    monkeypatch.setattr(ReadImage, "sha256", wrong, raising=False)
    line = failed_line(capsys, image_of(tmp_path))
    assert line.startswith(f"verify   FAIL kernel view: /{IMAGE_UNIT}: sha256 is sha256 ")


def test_labels_a_security_module_gives_every_file_are_not_differences() -> None:
    """On an SELinux host the kernel shows a label on every file, whatever the image holds."""
    node = kernelview.Seen("usr", "directory", 0o755, xattrs={"user.a": b"1"})
    labelled = dataclasses.replace(
        node, xattrs={"user.a": b"1", "security.selinux": b"system_u:object_r:unlabeled_t:s0"}
    )
    view = kernelview.KernelView(listed={"usr": labelled}, looked_up={"usr": labelled})
    assert kernelview.differences({"usr": node}, view, lambda path: "") == [
        "/usr: xattrs is {security.selinux, user.a} to the kernel (lookup and listing), {user.a} "
        "to the reader"
    ]
    synthesized = dataclasses.replace(view, synthesized=frozenset({"security.selinux"}))
    assert kernelview.differences({"usr": node}, synthesized, lambda path: "") == []
    hidden = dataclasses.replace(node, xattrs={})  # but not what the reader hides besides
    assert kernelview.differences({"usr": hidden}, synthesized, lambda path: "") == [
        "/usr: xattrs is {user.a} to the kernel (lookup and listing), none to the reader"
    ]


@needs_tools
@needs_mount
@pytest.mark.parametrize(("fmt", "compression"), [("squashfs", "xz"), ("erofs", "lz4hc")])
def test_an_image_without_any_xattr_looks_the_same(
    tmp_path: Path, fmt: str, compression: str
) -> None:
    """No xattr table: the kernel answers listxattr with "not supported", which is none."""
    tree = alloy_tree(tmp_path / "tree")
    os.removexattr(tree / "usr/lib/extension-release.d/extension-release.alloy", STRICT_XATTR)
    image = packed(tree, tmp_path / "alloy.raw", fmt, compression)
    check = verify._kernel_view(verify.open_image(image), image, 1 << 20)
    assert check.status == "ok", check.detail


@needs_tools
@needs_mount
@pytest.mark.parametrize(
    ("renamed", "where", "error"),
    [
        (b"zzza", "usr/zzza", "listed 2 times"),
        # The kernel's VFS itself refuses a listing with a slash in a name.
        (b"z/za", "usr", "readdir: Input/output error"),
    ],
)
def test_names_the_kernel_lists_but_cannot_look_up_are_errors(
    tmp_path: Path, renamed: bytes, where: str, error: str
) -> None:
    """A listing with a name twice, or with a slash: the walk says so, never merges or follows
    them (the readers refuse such listings; a reader that took one would differ here)."""
    tree = tmp_path / "tree"
    (tree / "usr").mkdir(parents=True)
    (tree / "usr/zzza").write_bytes(b"a")
    (tree / "usr/zzzb").write_bytes(b"b")
    image = tmp_path / "image.raw"
    uncompressed = ("-noI", "-noD", "-noF", "-noX", "-all-root", "-noappend", "-no-progress")
    subprocess.run(["mksquashfs", tree, image, *uncompressed], check=True, capture_output=True)
    data = image.read_bytes()
    assert data.count(b"zzzb") == 1  # the listing's name, stored as it is
    image.write_bytes(data.replace(b"zzzb", renamed))
    view = kernelview.kernel_view(image, "squashfs", ["", "usr"], 1 << 20)
    assert view.listed[where] == kernelview.Seen(where, error=error)
    with pytest.raises(BuildError):
        verify.open_image(image)  # the reader refuses it


SWAPPER = """
import shutil, sys
sys.path.insert(0, {repo!r})
from build.verify import kernelview
real = kernelview.kernel_view
def swapped(*args, **kwargs):
    shutil.copyfile({evil!r}, {image!r})  # the user's file changes after the reader read it
    return real(*args, **kwargs)
kernelview.kernel_view = swapped
from invoke.main import program
program.run(["invoke", *sys.argv[1:]])
"""


@needs_tools
@needs_mount
def test_every_check_reads_the_bytes_the_reader_read(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """An image swapped between the reader and the kernel view (or the merges) is not what
    the checks see: they all read one private copy, whose sha256 verify gives."""
    image = image_of(tmp_path)
    honest = hashlib.sha256(image.read_bytes()).hexdigest()
    tree = alloy_tree(tmp_path / "evil-tree")
    (tree / IMAGE_BINARY).chmod(0o4755)
    evil = packed(tree, tmp_path / "evil/alloy.raw", "squashfs", "xz")
    swapper = SWAPPER.format(repo=str(REPO), evil=str(evil), image=str(image))
    result = subprocess.run(
        [sys.executable, "-c", swapper, "--search-root", str(REPO), "verify", f"--image={image}"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert image.read_bytes() == evil.read_bytes()  # the swap happened
    last = result.stdout.splitlines()[-1]
    assert last.endswith(f"; the bytes vetted have sha256 {honest}"), last


@needs_tools
@needs_mount
def test_the_kernel_view_hashes_each_inode_once_and_stops_at_its_total(tmp_path: Path) -> None:
    """However many names the kernel shows, what it hashes is bounded in all."""
    tree = alloy_tree(tmp_path / "tree")
    for number in range(3):
        (tree / f"usr/local/bin/copy{number}").write_bytes(os.urandom(300_000))
    image = packed(tree, tmp_path / "image/alloy.raw", "squashfs", "xz")
    paths = [f"usr/local/bin/copy{number}" for number in range(3)]
    view = kernelview.kernel_view(image, "squashfs", paths, 1 << 20, 700_000)
    errors = [view.listed[path].error for path in paths]
    assert errors.count(None) == 2 and "hold more than 700000 bytes" in str(errors)
    whole = kernelview.kernel_view(image, "squashfs", paths, 1 << 20)
    assert all(whole.looked_up[path].sha256 == whole.listed[path].sha256 for path in paths)
