"""invoke release on an output directory someone changed after the build (issue 20): a build
info whose fields the build's options would refuse, an image swapped for a doctored one with
its .sha256 and build info made to match, and two releases into one directory at once."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AMD64, INVOKE_CLI, VERSION, Invoke, Prebuilt, copy_output
from tests.gpgkeys import Keys
from tests.image import extract
from tests.results import error_line, ok
from tests.verifying import repack

PUBLISH = "--publish-url=https://downloads.example.com/alloy/"
IMAGE = f"alloy-{VERSION}-amd64.raw"
COMPAT = f"alloy-{VERSION}.raw"
RELEASE_FILES = ("SHA256SUMS", "SHA256SUMS.gpg", "index.json", "sysupdate", "flatcar")


@pytest.fixture
def output(prebuilt: Prebuilt, tmp_path: Path) -> Path:
    """The test's own copy of what `invoke all` built."""
    return copy_output(prebuilt(*AMD64), tmp_path)


def state(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root` and a file's bytes: what a refused release must leave as is."""
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def edit_buildinfo(output: Path, **fields: Any) -> Path:
    path = output / f"{IMAGE}.buildinfo.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}, indent=2))
    return path


# (field, a value the build's option would refuse, what the refusal says)
BAD_FIELDS = [
    ("config_path", "/etc/alloy/config.alloy\nExecStartPre=/bin/sh -c evil", "invalid config"),
    ("autostart", "yes please", "invalid autostart value"),
    ("compression", "lz4hc", "does not fit format 'squashfs'"),
    ("compression", "xz -Xbcj x86", "unknown compression"),
    ("trust_keys", ["0123 not a fingerprint"], "not a list of key fingerprints"),
    ("version", "1.10/2", "invalid version"),
    ("arch", "amd64\nExecStartPre=/bin/sh", "unknown architecture"),
    ("mksquashfs", "4.5.1\nrelease  wrote output/SHA256SUMS", "not the version of a tool"),
]


@pytest.mark.parametrize(
    ("field", "value", "why"), BAD_FIELDS, ids=[f"{f}-{n}" for n, (f, *_) in enumerate(BAD_FIELDS)]
)
def test_a_build_info_field_the_build_would_refuse_is_refused(
    invoke: Invoke, output: Path, field: str, value: object, why: str
) -> None:
    """Each field is read back through the parser of the option it came from: a config_path
    with a newline never becomes an ExecStartPre= of a root unit in the Butane config."""
    path = edit_buildinfo(output, **{field: value})
    before = state(output)
    line = error_line(invoke("release", PUBLISH), f"{path.name} has a bad {field}: ", why)
    assert "nothing was written" in line
    assert state(output) == before  # nothing written, nothing removed
    for name in RELEASE_FILES:
        assert not (output / name).exists(), name


def test_a_build_info_nested_past_the_parsers_limit_is_refused(
    invoke: Invoke, output: Path
) -> None:
    """Under the size cap, brackets alone still recurse past the JSON parser's limit: one line
    naming the file, not a RecursionError's traceback."""
    path = output / f"{IMAGE}.buildinfo.json"
    path.write_text("[" * ((1 << 20) - 1))
    before = state(output)
    result = invoke("release", PUBLISH)
    error_line(result, f"{path.name}: nested too deeply", "rebuild the image")
    assert result.stdout == ""
    assert state(output) == before


def test_a_build_info_that_is_all_right_still_publishes(invoke: Invoke, output: Path) -> None:
    """The same parsers take what a build writes: an unchanged output directory is released,
    and every image's static checks pass again."""
    result = ok(invoke("release", PUBLISH))
    assert f"{IMAGE}: " in result.stdout and "static checks of verify passed again" in result.stdout
    assert (output / "SHA256SUMS").is_file()


def doctor(output: Path, tmp_path: Path, *extra: str) -> None:
    """Swap the verified image (and its compat copy) for a repack of its tree with `extra`
    mksquashfs arguments, and make the .sha256 files and the build info say the new sha256:
    everything release compared before now matches the doctored image."""
    tree = extract(output / IMAGE, tmp_path / "tree")
    doctored = repack(tree, tmp_path / "doctored" / IMAGE, extra=extra)
    sha256 = hashlib.sha256(doctored.read_bytes()).hexdigest()
    for name in (IMAGE, COMPAT):
        shutil.copyfile(doctored, output / name)
        (output / f"{name}.sha256").write_text(f"{sha256}  {name}\n")
    path = output / f"{IMAGE}.buildinfo.json"
    info = json.loads(path.read_text())
    edit_buildinfo(output, verify={**info["verify"], "sha256": sha256})


@pytest.mark.needs("mksquashfs", "unsquashfs")
@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (
            (
                "-p",
                "usr/lib/systemd/system-generators d 755 0 0",
                "-p",
                "usr/lib/systemd/system-generators/alloy f 755 0 0 echo '#!/bin/sh'",
            ),
            ("entries: ", "/usr/lib/systemd/system-generators/alloy is an extra file"),
        ),
        (("-p", "usr/local/bin/alloy m 4755 0 0"), ("has a setuid, setgid or sticky bit",)),
        (("-Xbcj", "x86"), ("superblock: xz compression, BCJ filter x86",)),
    ],
    ids=["generator", "setuid", "filter"],
)
def test_an_image_swapped_after_its_build_is_refused(
    invoke: Invoke, output: Path, tmp_path: Path, extra: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    """The CI release job merges every uploaded image artifact: release runs verify's static
    checks again on each image, so one doctored after verify passed is never published."""
    doctor(output, tmp_path, *extra)
    before = state(output)
    line = error_line(invoke("release", PUBLISH), f"{IMAGE} failed verification", *fragments)
    assert "not published" in line and "nothing was written" in line
    assert state(output) == before
    for name in RELEASE_FILES:
        assert not (output / name).exists(), name


# Two releases into one directory.


@pytest.mark.parametrize("task", [("release", PUBLISH), ("sums",)])
def test_release_and_sums_wait_for_a_shared_holder_of_the_output_lock(
    output: Path, tmp_path: Path, cli_env: dict[str, str], task: tuple[str, ...]
) -> None:
    """A build holds .staging/output.lock shared (and so did release and sums, before): a
    release or sums started meanwhile waits for it, writing nothing, then runs."""
    with (output / ".staging/output.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_SH)
        started = subprocess.Popen(
            [*INVOKE_CLI, *task],
            cwd=tmp_path,
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            started.wait(timeout=4)  # waiting for the lock
        assert not (output / "SHA256SUMS").exists()
    _, stderr = started.communicate(timeout=120)
    assert started.returncode == 0, stderr
    assert (output / "SHA256SUMS").is_file()


SLOW_GPG = """#!/bin/sh
# gpg, but a detached signature takes a while: the release stays in its critical section.
case " $* " in *" --detach-sign "*) : >"$SIGNING_MARK"; sleep 6; : >"$SIGNING_MARK.done" ;; esac
exec {gpg} "$@"
"""


@pytest.mark.needs("gpg", "gpgv")
def test_two_releases_with_different_keys_never_interleave(
    output: Path, tmp_path: Path, cli_env: dict[str, str], keys: Keys
) -> None:
    """While one release signs (inside the lock), a second one with another key cannot start
    writing; it runs once the first is done, and the directory ends with its signature and
    its own key, which verify each other."""
    slow = tmp_path / "slow-gpg"
    slow.mkdir()
    (slow / "gpg").write_text(SLOW_GPG.format(gpg=shutil.which("gpg")))
    (slow / "gpg").chmod(0o755)
    mark = tmp_path / "signing"
    env = {**cli_env, "INVOKE_GNUPG_HOME": str(keys.home)}

    def start(key: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*INVOKE_CLI, "release", PUBLISH, f"--sign-key={key}"],
            cwd=tmp_path,
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start(keys.plain, PATH=f"{slow}:{os.environ['PATH']}", SIGNING_MARK=str(mark))
    deadline = time.monotonic() + 60
    while not mark.exists():  # the first release is signing, holding the lock
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = start(keys.vendor)
    while not Path(f"{mark}.done").exists():  # the first one is still signing
        assert second.poll() is None, "the second release ran while the first one held the lock"
        assert not (output / "SHA256SUMS").exists(), "the second release wrote meanwhile"
        time.sleep(0.05)
    assert first.wait(timeout=120) == 0, first.communicate()
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    index = json.loads((output / "index.json").read_text())
    assert index["signature"]["fingerprint"] == keys.vendor  # the second one's, whole
    (tmp_path / "gpgv-home").mkdir(mode=0o700)
    verified = subprocess.run(
        [
            "gpgv",
            f"--homedir={tmp_path / 'gpgv-home'}",
            f"--keyring={output / 'alloy-release-key.gpg'}",
            str(output / "SHA256SUMS.gpg"),
            str(output / "SHA256SUMS"),
        ],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
