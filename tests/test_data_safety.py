"""Never touch what is not ours: clean, release and builds stay inside what the tool owns.

Each test builds its own sacrificial trees under tmp_path (a fake home with .ssh/id_rsa, a
fake checkout with .git, user files under the tool's names, symlinked subfolders, FIFOs) and
checks, byte for byte, what survived."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from build.core.fileio import file_lock
from tests.conftest import AMD64, VERSION, Invoke, Prebuilt, Release, copy_output
from tests.results import error_line, ok

PUBLISH_URL = "https://downloads.example.com/alloy/"
IMAGE = f"alloy-{VERSION}-amd64.raw"
CELL = f".staging/alloy-{VERSION}-amd64"


def contents(root: Path) -> dict[str, object]:
    """Every entry under root (root itself too), never following a symlink: a file's bytes, a
    symlink's target, or the kind of anything else."""
    found: dict[str, object] = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        name = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            found[name] = ("link", os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            found[name] = path.read_bytes()
        elif stat.S_ISFIFO(st.st_mode):
            found[name] = "fifo"
        else:
            found[name] = "dir"
    return found


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def fake_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    write(
        home,
        {
            ".ssh/id_rsa": b"-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n",
            ".ssh/authorized_keys": b"ssh-ed25519 AAAA user@host\n",
            "projects/notes.txt": b"mine\n",
        },
    )
    return home


def fake_checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    write(
        checkout,
        {
            ".git/HEAD": b"ref: refs/heads/main\n",
            ".git/config": b"[core]\n",
            "tasks.py": b"# a project of the user's\n",
            "src/main.c": b"int main(void) { return 0; }\n",
        },
    )
    return checkout


def untagged(tmp_path: Path) -> Path:
    directory = tmp_path / "downloads"
    write(directory, {"report.pdf": b"%PDF-1.7", "v1.10.2/alloy-linux-amd64.zip": b"PK\x03\x04"})
    return directory


# clean --cache: only a directory the tool tagged, only the tool's entries in it


@pytest.mark.parametrize("make", [fake_home, fake_checkout, untagged])
def test_clean_cache_refuses_a_directory_without_the_tag(
    invoke: Invoke, tmp_path: Path, make
) -> None:
    victim = make(tmp_path)
    before = contents(victim)
    result = invoke("clean", "--cache", f"--cache-dir={victim}")
    error_line(result, str(victim), "CACHEDIR.TAG", "nothing was removed")
    assert contents(victim) == before


def test_clean_cache_refuses_the_current_directory_of_a_checkout(
    invoke: Invoke, tmp_path: Path
) -> None:
    checkout = fake_checkout(tmp_path)
    before = contents(checkout)
    error_line(invoke("clean", "--cache", "--cache-dir=.", cwd=checkout), "CACHEDIR.TAG")
    assert contents(checkout) == before


def test_clean_cache_removes_only_the_tools_entries_of_a_tagged_cache(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "alloy-sysext"  # the default, under XDG_CACHE_HOME
    ok(invoke("fetch"))
    assert (
        (cache / "CACHEDIR.TAG")
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )
    ours = release.cached(cache)
    user_files = {
        # A user's file inside the tool's layout, and a user's folder that looks like it.
        str(ours.relative_to(cache) / "notes.txt"): b"mine\n",
        "projects/v1.10.2/src/main.c": b"int main(void) { return 0; }\n",
        "README": b"what this folder is\n",
    }
    write(cache, user_files)
    before = contents(cache)

    cleaned = ok(invoke("clean", "--cache", f"--version={VERSION}"))
    assert f"kept {ours / 'notes.txt'}" in cleaned.stdout
    after = contents(cache)
    for name, data in user_files.items():
        assert after[name] == data
    assert after["CACHEDIR.TAG"] == before["CACHEDIR.TAG"]
    assert not (ours / "alloy-linux-amd64.zip").exists()
    assert not (ours / "SHA256SUMS").exists()

    ok(invoke("clean", "--cache"))
    assert contents(cache) == after  # nothing else of ours was left, and the rest stays


def test_a_failed_download_leaves_no_version_folder_behind(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "alloy-sysext"
    for name in ("SHA256SUMS", "alloy-linux-amd64.zip"):
        release.server.expect_request(f"/v9.9.9/{name}").respond_with_data("gone", status=404)
    ok(invoke("fetch"))
    before = contents(cache)
    error_line(invoke("fetch", "--version=9.9.9"), "9.9.9", "404")
    assert contents(cache) == before  # no v9.9.9 with lock files in it

    fresh = tmp_path / "fresh-cache"
    error_line(invoke("fetch", "--version=9.9.9", f"--cache-dir={fresh}"), "404")
    assert contents(fresh) == {".": "dir", "CACHEDIR.TAG": (fresh / "CACHEDIR.TAG").read_bytes()}


def test_the_tool_never_tags_a_cache_directory_it_did_not_make(
    invoke: Invoke, tmp_path: Path
) -> None:
    home = fake_home(tmp_path)
    ok(invoke("fetch", f"--cache-dir={home}"))
    assert not (home / "CACHEDIR.TAG").exists()
    before = contents(home)
    error_line(invoke("clean", "--cache", f"--cache-dir={home}"), str(home))
    assert contents(home) == before


# clean: only what the manifest says the tool wrote, unchanged since


USER_FILES_UNDER_OUR_NAMES = {
    "alloy-1.0.0-amd64.raw": b"a user's own image\n",
    "alloy-1.0.0-amd64.raw.sha256": b"0" * 64 + b"  alloy-1.0.0-amd64.raw\n",
    "alloy-1.0.0.raw": b"a user's own compat image\n",
    "SHA256SUMS": b"a user's own sums\n",
    "index.json": b'{"mine": true}\n',
    "sysupdate/amd64/alloy.transfer": b"[Transfer]\n# mine\n",
    "flatcar/alloy-amd64.bu": b"variant: flatcar\n# mine\n",
    ".staging/alloy-1.0.0-amd64/stage.stamp": b"mine\n",
    ".staging/alloy-1.0.0-amd64/rootfs/usr/local/bin/alloy": b"\x7fELF mine",
    ".staging/alloy-1.0.0/alias.stamp": b"mine\n",
}


def test_clean_keeps_files_that_merely_have_our_names(invoke: Invoke, tmp_path: Path) -> None:
    output = tmp_path / "output"
    write(output, USER_FILES_UNDER_OUR_NAMES)
    before = contents(output)
    cleaned = ok(invoke("clean"))
    assert contents(output) == before
    for name in USER_FILES_UNDER_OUR_NAMES:
        assert f"kept output/{name}: not written by this tool" in cleaned.stdout


def test_clean_keeps_user_files_among_the_tools_and_removes_the_tools(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)  # `invoke all`
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    mine = {
        f"{CELL}/rootfs/usr/local/bin/mine.sh": b"#!/bin/sh\n",
        f"{CELL}/notes.txt": b"mine\n",
        "sysupdate/amd64/mine.conf": b"mine\n",
        "notes.txt": b"mine\n",
    }
    write(output, mine)
    cleaned = ok(invoke("clean"))
    assert _files(output) == mine
    assert f"kept output/{CELL}/notes.txt: not written by this tool" in cleaned.stdout


def test_clean_keeps_a_file_changed_since_the_tool_wrote_it(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)  # `invoke all`
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    changed = {
        f"{IMAGE}.sha256": b"edited by hand\n",
        "index.json": b'{"edited": true}\n',
        f"{CELL}/rootfs/usr/lib/systemd/system/alloy.service": b"[Service]\n# edited\n",
    }
    write(output, changed)
    cleaned = ok(invoke("clean"))
    assert _files(output) == changed
    for name in changed:
        assert f"kept output/{name}: changed since this tool wrote it" in cleaned.stdout
    assert not (output / IMAGE).exists()


def _files(output: Path) -> dict[str, object]:
    """The files left in `output`, but the manifest and its locks, which stay with them."""
    infrastructure = {".staging/manifest.json", ".staging/manifest.lock", ".staging/output.lock"}
    return {
        name: data
        for name, data in contents(output).items()
        if data != "dir" and name not in infrastructure
    }


def test_fifos_under_our_names_do_not_hang_clean(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)  # `invoke all`
    # A FIFO where the tool wrote a file (recorded in its manifest), and where it never did.
    for name in (IMAGE, "SHA256SUMS", f"{CELL}/stage.stamp"):
        (output / name).unlink(missing_ok=True)
        os.mkfifo(output / name)
    cleaned = ok(invoke("clean"))  # opening a FIFO to hash it would block here
    for name in (IMAGE, "SHA256SUMS", f"{CELL}/stage.stamp"):
        assert stat.S_ISFIFO((output / name).lstat().st_mode), name
        assert f"kept output/{name}:" in cleaned.stdout
    assert not (output / f"{IMAGE}.sha256").exists()


# Nothing is followed out of the output directory


def _sacrificial(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"elsewhere-{name.strip('.')}"
    write(
        target,
        {
            "amd64/alloy.transfer": b"someone else's\n",
            "alloy-amd64.bu": b"someone else's\n",
            f"alloy-{VERSION}-amd64/stage.stamp": b"someone else's\n",
            f"alloy-{VERSION}-amd64/rootfs/usr/local/bin/alloy": b"someone else's\n",
            "manifest.json": b"someone else's\n",
        },
    )
    return target


def _link_in_place_of(output: Path, name: str, target: Path) -> None:
    real = output / name
    if real.exists():
        os.rename(real, output.parent / f"moved-{name.strip('.')}")
    real.symlink_to(target)


@pytest.mark.parametrize("name", [".staging", "sysupdate", "flatcar"])
def test_clean_refuses_a_symlinked_subfolder(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path, name: str
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)  # `invoke all`
    ok(invoke("release", f"--publish-url={PUBLISH_URL}"))
    target = _sacrificial(tmp_path, name)
    _link_in_place_of(output, name, target)
    before, outside = contents(output), contents(target)
    error_line(invoke("clean"), f"output/{name} is a symbolic link")
    assert contents(target) == outside
    assert contents(output) == before


@pytest.mark.parametrize("name", ["sysupdate", "flatcar"])
def test_release_refuses_a_symlinked_subfolder(
    invoke: Invoke, prebuilt: Prebuilt, tmp_path: Path, name: str
) -> None:
    output = copy_output(prebuilt(*AMD64), tmp_path)  # `invoke all`
    target = _sacrificial(tmp_path, name)
    (output / name).symlink_to(target)
    before, outside = contents(output), contents(target)
    line = error_line(invoke("release", f"--publish-url={PUBLISH_URL}"))
    assert f"output/{name} is a symbolic link" in line
    assert contents(target) == outside
    assert contents(output) == before


def test_a_build_refuses_a_symlinked_staging(invoke: Invoke, tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    target = _sacrificial(tmp_path, ".staging")
    (output / ".staging").symlink_to(target)
    outside = contents(target)
    error_line(invoke("all"), "output/.staging is a symbolic link")
    assert contents(target) == outside
    assert sorted(p.name for p in output.iterdir()) == [".staging"]


def test_the_output_directory_itself_may_be_a_symlink(invoke: Invoke, tmp_path: Path) -> None:
    real = tmp_path / "real-output"  # made by the user: clean leaves it, empty
    real.mkdir()
    (tmp_path / "out").symlink_to(real)
    ok(invoke("all", "--output-dir=out"))
    ok(invoke("release", f"--publish-url={PUBLISH_URL}", "--output-dir=out"))
    assert (real / IMAGE).is_file()
    ok(invoke("clean", "--output-dir=out"))
    assert contents(real) == {".": "dir"}
    assert (tmp_path / "out").is_symlink()


# An empty directory option never means the current directory


@pytest.mark.parametrize("option", ["output_dir", "cache_dir"])
@pytest.mark.parametrize("source", ["flag", "invoke.yaml", "env"])
@pytest.mark.parametrize("task", ["clean", "all"])
def test_an_empty_directory_option_is_refused(
    invoke: Invoke, tmp_path: Path, option: str, source: str, task: str
) -> None:
    cwd = fake_checkout(tmp_path)
    write(cwd, USER_FILES_UNDER_OUR_NAMES)
    before = contents(cwd)
    flag = "--" + option.replace("_", "-")
    args, env = [task], {}
    if task == "clean":
        args.append("--cache")
    if source == "flag":
        args.append(f"{flag}=")
    elif source == "env":
        env[f"INVOKE_{option.upper()}"] = ""
    else:
        config = tmp_path / "invoke.yaml"
        config.write_text(f'{option}: ""\n')
        args = ["-f", str(config), *args]
    error_line(invoke(*args, env=env, cwd=cwd), f"empty {flag}")
    assert contents(cwd) == before


@pytest.mark.parametrize("task", ["sums", "release"])
def test_an_empty_output_dir_is_refused_by_sums_and_release(
    invoke: Invoke, tmp_path: Path, task: str
) -> None:
    cwd = fake_checkout(tmp_path)
    ok(invoke("all", f"--output-dir={cwd}"))
    before = contents(cwd)
    args = [task, "--output-dir="] + ([f"--publish-url={PUBLISH_URL}"] if task == "release" else [])
    error_line(invoke(*args, cwd=cwd), "empty --output-dir")
    error_line(invoke(task, *args[2:], env={"INVOKE_OUTPUT_DIR": ""}, cwd=cwd), "empty")
    assert contents(cwd) == before


# Lock files clean removes: a build waiting on one takes it anew


def _open_count(path: Path) -> int:
    """How many of this process's file descriptors are open on `path`."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path))


def test_a_lock_removed_while_waited_on_is_taken_anew(tmp_path: Path) -> None:
    lock = tmp_path / ".staging" / "output.lock"
    taken, release_it = threading.Event(), threading.Event()

    def waiter() -> None:
        with file_lock(lock):
            taken.set()
            release_it.wait(timeout=30)

    with file_lock(lock):
        thread = threading.Thread(target=waiter)
        thread.start()
        while _open_count(lock) < 2:  # the waiter has the file open, and waits on it
            time.sleep(0.01)
        lock.unlink()  # as clean does, holding it
    assert taken.wait(timeout=30)
    try:
        # The file the path names now is the one held.
        with lock.open("a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        release_it.set()
        thread.join(timeout=30)


def test_an_older_default_cache_is_tagged_only_if_it_holds_nothing_but_the_tools_files(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "alloy-sysext"  # the default, under XDG_CACHE_HOME
    ok(invoke("fetch"))
    (cache / "CACHEDIR.TAG").unlink()  # as an older version of the tool left it
    ok(invoke("fetch"))
    assert (cache / "CACHEDIR.TAG").is_file()
    (cache / "CACHEDIR.TAG").unlink()
    ok(invoke("clean", "--cache"))  # clean too knows it for the tool's
    assert contents(cache) == {".": "dir", "CACHEDIR.TAG": (cache / "CACHEDIR.TAG").read_bytes()}
    ok(invoke("fetch"))

    (cache / "CACHEDIR.TAG").unlink()
    write(cache, {"mine/notes.txt": b"mine\n"})
    before = contents(cache)
    ok(invoke("fetch"))
    assert contents(cache) == before  # not claimed: something in it is not the tool's
    error_line(invoke("clean", "--cache"), str(cache), "CACHEDIR.TAG")
    assert contents(cache) == before
