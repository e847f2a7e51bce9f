"""invoke verify without --image: every image in the output directory, each checked as its build
info says it was built; a flag on the command line that the build did not use is refused in one
line, and nothing is checked or written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from build.alloy import DEFAULT_CONFIG_PATH
from tests.conftest import VERSION, Invoke, Prebuilt, Release, copy_output
from tests.fakes import release_assets
from tests.gpgkeys import Keys, export
from tests.results import error_line, ok

IMAGE = f"alloy-{VERSION}-amd64.raw"
OTHER_VERSION = "1.11.0"
BUILT_WITH = ("--compression=zstd", "--autostart")  # not the defaults


def info(output: Path, image: str = IMAGE) -> dict:
    return json.loads((output / f"{image}.buildinfo.json").read_text())


def snapshot(root: Path) -> list[tuple[str, int, bytes]]:
    """Every entry under `root`: its path, mtime and bytes (a file's): what a run changed."""
    return sorted(
        (str(path), path.lstat().st_mtime_ns, path.read_bytes() if path.is_file() else b"")
        for path in root.rglob("*")
    )


@pytest.fixture
def built(prebuilt: Prebuilt, tmp_path: Path) -> Path:
    """The output directory of `invoke all --compression=zstd --autostart`, a copy of the
    test's own."""
    return copy_output(prebuilt(BUILT_WITH), tmp_path)


def test_a_plain_verify_checks_the_image_as_it_was_built(
    invoke: Invoke, keys: Keys, tmp_path: Path
) -> None:
    keyring = tmp_path / "K2.gpg"
    keyring.write_bytes(export(keys.home, keys.next))
    ok(invoke("all", *BUILT_WITH, f"--trust-keys={keyring}"))
    output = tmp_path / "output"
    ok(invoke("verify", f"--trust-keys={keyring}"))  # the same keys: no contradiction
    keyring.unlink()  # verify needs no --trust-keys file: the build info names the keys
    result = ok(invoke("verify"))
    [fingerprint] = info(output)["trust_keys"]
    assert (
        f"verify   {IMAGE}, as built: --format=squashfs --compression=zstd --autostart "
        f"--config-path={DEFAULT_CONFIG_PATH} --run-as=alloy --trust-keys (keys {fingerprint})"
    ) in result.stdout.splitlines()
    assert f"{IMAGE}: " in result.stdout.splitlines()[-1], result.stdout
    assert " checks passed, " in result.stdout.splitlines()[-1]
    assert info(output)["verify"]["result"] == "passed"


def test_options_from_invoke_yaml_or_the_environment_do_not_contradict_the_build(
    invoke: Invoke, built: Path, tmp_path: Path
) -> None:
    """They say what to build next; the command line alone speaks for this verify. (Invoke reads
    the invoke.yaml beside tasks.py and the -f file, not one in the current directory.)"""
    config = tmp_path / "settings.yaml"
    config.write_text("compression: xz\nautostart: false\n")
    env = {"INVOKE_FORMAT": "squashfs", "INVOKE_CONFIG_PATH": "/etc/a.alloy"}
    ok(invoke("-f", str(config), "verify", env=env))
    assert info(built)["verify"]["result"] == "passed"


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (
            ("--compression=xz",),
            "was built with --compression=zstd, not --compression=xz as given",
        ),
        (
            ("--no-autostart", "--config-path=/etc/alloy/other.alloy", "--compression=zstd"),
            f"was built with --autostart, --config-path={DEFAULT_CONFIG_PATH}, not "
            "--no-autostart, --config-path=/etc/alloy/other.alloy as given",
        ),
        (
            ("--run-as=root",),
            "was built with --run-as=alloy, not --run-as=root as given",
        ),
    ],
    ids=["compression", "autostart and config path", "run as"],
)
def test_a_flag_the_build_did_not_use_is_refused_and_nothing_is_written(
    invoke: Invoke, built: Path, flags: tuple[str, ...], said: str
) -> None:
    before = snapshot(built)
    line = error_line(invoke("verify", *flags), f"{Path('output') / IMAGE} {said}")
    assert "; nothing was checked or written; leave th" in line, line
    given = [flag for flag in flags if flag != "--compression=zstd"]
    assert line.endswith(f"invoke all --version={VERSION} --arch=amd64 {' '.join(given)}"), line
    assert snapshot(built) == before
    # The flags it was built with are no contradiction.
    ok(invoke("verify", *BUILT_WITH, f"--config-path={DEFAULT_CONFIG_PATH}"))


def test_a_trust_keys_file_the_build_did_not_carry_is_refused(
    invoke: Invoke, built: Path, keys: Keys, tmp_path: Path
) -> None:
    (tmp_path / "K2.gpg").write_bytes(export(keys.home, keys.next))
    before = snapshot(built)
    error_line(
        invoke("verify", "--trust-keys=K2.gpg"),
        f"was built with no --trust-keys, not --trust-keys=K2.gpg (keys {keys.next}) as given",
        f"rebuild it with it: invoke all --version={VERSION} --arch=amd64 --trust-keys=K2.gpg",
    )
    assert snapshot(built) == before


def test_verify_checks_every_version_and_arch_there(
    invoke: Invoke, release: Release, tmp_path: Path
) -> None:
    release.publish(OTHER_VERSION, release_assets(seed=2))
    ok(invoke("all", "--no-verify"))
    ok(invoke("all", "--no-verify", f"--version={OTHER_VERSION}", "--arch=arm64"))
    output = tmp_path / "output"
    images = [IMAGE, f"alloy-{OTHER_VERSION}-arm64.raw"]
    result = ok(invoke("verify"))
    lines = result.stdout.splitlines()
    assert lines[-1] == f"verify   checked 2 images in output: {', '.join(images)}"
    for image in images:
        assert any(line.startswith(f"verify   {image}, as built: ") for line in lines), lines
        summary = f"verify   {Path('output') / image}: "
        assert any(line.startswith(summary) and "checks passed" in line for line in lines)
        assert info(output, image)["verify"]["result"] == "passed"
    # --version or --arch on the command line narrows it.
    only = ok(invoke("verify", "--arch=arm64")).stdout
    assert f"{IMAGE}," not in only and f"alloy-{OTHER_VERSION}-arm64.raw, as built" in only
    assert "checked 2 images" not in only
    # One image that fails does not stop the others being checked; the error names it.
    (output / f"{IMAGE}.sha256").write_text("0" * 64 + f"  {IMAGE}\n")
    failed = invoke("verify")
    line = error_line(failed, f"{Path('output') / IMAGE} failed verification: checksum: ")
    assert "more of" not in line
    assert failed.stdout.splitlines()[-1].startswith("verify   checked 2 images in output: ")
    other = f"verify   {Path('output') / images[1]}: "
    assert any(row.startswith(other) for row in failed.stdout.splitlines()), failed.stdout
    assert info(output)["verify"]["result"] == "failed"
    assert info(output, images[1])["verify"]["result"] == "passed"


def test_the_compat_name_is_checked_with_the_image_it_holds(invoke: Invoke) -> None:
    """Built with --compat-arch=arm64, alloy-VERSION.raw is the arm64 image's: verify checks it
    with that image, without being told --compat-arch again."""
    ok(invoke("all", "--no-verify", "--arch=arm64", "--compat-arch=arm64"))
    result = ok(invoke("verify"))
    compat = f"alloy-{VERSION}.raw"
    assert f"verify   ok   checksum: {compat} matches {compat}.sha256" in result.stdout


def with_field(field: str, value: object) -> Callable[[dict], str]:
    return lambda built_info: json.dumps({**built_info, field: value})


# (the build info written, given the one built, what the refusal says after the path)
BAD_BUILD_INFOS = {
    "config_path": (
        with_field("config_path", "/etc/alloy\nExecStartPre=/bin/sh"),
        (" has a bad config_path: ", "nothing was written"),
    ),
    "compression": (
        with_field("compression", "lz4hc"),
        (" has a bad compression: ", "nothing was written"),
    ),
    "autostart": (
        with_field("autostart", "yes please"),
        (" has a bad autostart: ", "nothing was written"),
    ),
    "format": (with_field("format", "ext4"), (" has a bad format: ", "nothing was written")),
    # Past the JSON parser's recursion limit: one line, not a RecursionError's traceback.
    "nested": (lambda _: "[" * 5000, (": nested too deeply",)),
    # A build info as built, padded to 2 MiB: no build writes that much.
    "too large": (lambda built_info: json.dumps(built_info).ljust(2 << 20), (": larger than ",)),
}


@pytest.mark.parametrize(("written", "said"), BAD_BUILD_INFOS.values(), ids=BAD_BUILD_INFOS)
def test_a_bad_build_info_is_refused_before_anything_is_checked(
    invoke: Invoke, built: Path, written: Callable[[dict], str], said: tuple[str, ...]
) -> None:
    path = built / f"{IMAGE}.buildinfo.json"
    path.write_text(written(info(built)))
    before = snapshot(built)
    result = invoke("verify")
    error_line(result, f"{Path('output') / path.name}", *said, "rebuild")
    assert result.stdout == ""
    assert snapshot(built) == before


@pytest.mark.parametrize(
    ("flags", "said", "command"),
    [
        ((), "no image in output", f"invoke all --version={VERSION}"),
        (
            ("--version=1.11.0", "--output-dir=elsewhere"),
            "no image of version 1.11.0 in elsewhere",
            "invoke all --version=1.11.0 --output-dir=elsewhere",
        ),
        (("--arch=arm64",), "no image for arm64 in output", f"--version={VERSION} --arch=arm64"),
    ],
)
def test_with_no_image_there_verify_says_what_to_run(
    invoke: Invoke, tmp_path: Path, flags: tuple[str, ...], said: str, command: str
) -> None:
    (tmp_path / "elsewhere").mkdir()
    line = error_line(invoke("verify", *flags), f"nothing to verify: {said}", command)
    assert "build one first: invoke all" in line
    assert not (tmp_path / "output").exists()
    assert not list((tmp_path / "elsewhere").iterdir())
