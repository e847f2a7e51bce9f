"""build/config/options.py: one table gives every task its flags, defaults, parsing and help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tasks
from build.config import options
from build.core.errors import BuildError
from build.image.content import IMAGE_AUTOSTART
from tests.conftest import VERSION, Invoke
from tests.results import error_line, ok

# The short flags each task had before the table pinned them (Invoke handed them out in
# signature order): they must never move, whatever options are added.
SHORT_FLAGS = {
    **{
        task: {
            "version": "v",
            "arch": "a",
            "base-url": "b",
            "output-dir": "o",
            "cache-dir": "c",
            "compression": "m",
            "config-path": "n",
            "unit-template": "u",
            "compat-arch": "p",
            "retries": "r",
            "autostart": "t",
            "force": "f",
        }
        for task in options.BUILD_TASKS
    },
    "clean": {
        "version": "v",
        "arch": "a",
        "output-dir": "o",
        "cache-dir": "c",
        "compat-arch": "m",
        "cache": "h",
    },
    "sums": {"output-dir": "o"},
    "release": {"output-dir": "o", "publish-url": "p", "update-url": "u", "health-url": "h"},
}
SHORT_FLAGS["verify"]["image"] = "i"
SHORT_FLAGS["all"]["verify"] = "e"


def flags_of(task: str) -> dict[str, str | None]:
    made = tasks.ns[task].get_arguments()
    return {arg.names[0]: next((n for n in arg.names[1:] if len(n) == 1), None) for arg in made}


@pytest.mark.parametrize("task", sorted(SHORT_FLAGS))
def test_short_flags_are_pinned_and_unique(task: str) -> None:
    flags = flags_of(task)
    shorts = {name: short for name, short in flags.items() if short}
    assert shorts == SHORT_FLAGS[task]
    assert len(set(shorts.values())) == len(shorts)


def test_every_task_takes_its_flags_from_the_table() -> None:
    assert set(tasks.ns.task_names) == {task for o in options.OPTIONS for task in o.tasks}
    for task in tasks.ns.task_names:
        names = set(flags_of(task))
        for option in options.options_of(task):
            dashed = option.flag[2:]
            assert dashed in names
            assert (f"no-{dashed}" in names) == option.switch
        assert len(names) == sum(1 + o.switch for o in options.options_of(task))
    assert len(options.BY_NAME) == len(options.OPTIONS)  # each option once


def test_configuration_knows_every_option_unset() -> None:
    # Unset: Invoke then reads INVOKE_RETRIES=abc as text, and the parser says what is wrong.
    assert tasks.ns.configuration() == {o.name: None for o in options.OPTIONS}


@pytest.mark.parametrize(
    ("flags", "config", "expected"),
    [
        ({}, {}, False),
        ({}, {"autostart": "true"}, True),
        ({}, {"autostart": True}, True),
        ({"no_autostart": True}, {"autostart": "true"}, False),
        ({"autostart": True}, {"autostart": "false"}, True),
        ({"autostart": True}, {}, True),
    ],
)
def test_a_switch_goes_both_ways_and_the_command_line_wins(
    flags: dict[str, bool], config: dict[str, object], expected: bool
) -> None:
    assert options.resolve("all", flags, config)["autostart"] is expected


def test_a_switch_given_both_ways_is_refused() -> None:
    with pytest.raises(BuildError, match="--autostart and --no-autostart together"):
        options.resolve("all", {"autostart": True, "no_autostart": True})


def test_a_default_may_depend_on_an_earlier_option() -> None:
    seen: list[object] = []
    computed = options.Computed(lambda values: seen.append(dict(values)) or "x", "x")
    table = (
        options.Option("first", "", ("t",), options.text, default="one"),
        options.Option("second", "", ("t",), options.text, default=computed),
    )
    original = options.OPTIONS
    try:
        options.OPTIONS = table
        assert options.resolve("t", {}) == {"first": "one", "second": "x"}
    finally:
        options.OPTIONS = original
    assert seen == [{"first": "one"}]


@pytest.mark.parametrize("config", [{}, {"publish_url": ""}])
def test_a_required_option_left_out_or_empty_is_refused_by_the_table(
    config: dict[str, str],
) -> None:
    with pytest.raises(BuildError) as caught:
        options.resolve("release", {}, config)
    assert caught.value.message == "--publish-url is required"
    assert caught.value.hint == (
        "give the URL the files will be published at, "
        "e.g. invoke release --publish-url=https://example.com/alloy/"
    )
    assert options.resolve("release", {"publish_url": "https://example.com/a/"})["publish_url"]


def test_a_bad_value_is_said_before_a_missing_required_one() -> None:
    with pytest.raises(BuildError, match="empty --gnupg-home"):
        options.resolve("release", {"gnupg_home": " "})


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"publish_url": "ftp://example.com/alloy/"}, "invalid publish URL 'ftp://example.com/"),
        ({"publish_url": "https://example.com/%41/"}, "invalid publish URL"),
        (
            {"update_url": "https://example.com/a b/"},
            "invalid publish URL 'https://example.com/a b/'",
        ),
        ({"update_url": "http://example.com/u/"}, "refusing plain http:// --update-url http://"),
        ({"publish_url": "http://example.com/"}, "refusing plain http:// --publish-url http://"),
        ({"health_url": "http://127.0.0.1:12345/?x"}, "invalid health URL"),
        ({"health_url": ""}, "invalid health URL ''"),
    ],
)
def test_the_table_checks_the_release_urls(flags: dict[str, str], expected: str) -> None:
    with pytest.raises(BuildError, match=re.escape(expected)):
        options.resolve("release", {"publish_url": "https://example.com/alloy", **flags})


def test_release_urls_come_out_as_hosts_take_them() -> None:
    values = options.resolve(
        "release", {"publish_url": "http://example.com/a", "update_url": "", "allow_http": True}
    )
    assert values["publish_url"] == "http://example.com/a/"
    assert values["update_url"] == ""  # the publish URL's, said by release()
    local = options.resolve("release", {"publish_url": "http://127.0.0.1:8080/a//"})
    assert local["publish_url"] == "http://127.0.0.1:8080/a/"


def test_clean_takes_version_only_from_the_command_line() -> None:
    # invoke.yaml's version says what to build, not that clean may keep the other versions.
    values = options.resolve("clean", {}, {"version": "1.9.0", "arch": "arm64"})
    assert values["version"] is None and values["arch"] is None
    assert options.resolve("clean", {"version": "1.9.0"}, {})["version"] == "1.9.0"


def test_no_autostart_wins_over_the_environment_and_invoke_yaml(
    invoke: Invoke, tmp_path: Path
) -> None:
    dropin = tmp_path / "output/.staging" / f"alloy-{VERSION}-amd64/rootfs" / IMAGE_AUTOSTART
    ok(invoke("stage", env={"INVOKE_AUTOSTART": "true"}))
    assert dropin.is_file()
    ok(invoke("stage", "--no-autostart", env={"INVOKE_AUTOSTART": "true"}))
    assert not dropin.exists()
    config = tmp_path / "invoke.yaml"
    config.write_text("autostart: true\n")
    ok(invoke("-f", str(config), "stage"))
    assert dropin.is_file()
    ok(invoke("-f", str(config), "stage", "--no-autostart"))
    assert not dropin.exists()


def test_a_mistyped_task_or_flag_names_the_closest(invoke: Invoke) -> None:
    typo = invoke("al")
    assert typo.returncode != 0 and "Traceback" not in typo.stderr
    assert "No idea what 'al' is! Did you mean 'all'?" in typo.stderr
    flag = invoke("all", "--outptu-dir=x")
    assert "Did you mean '--output-dir'?" in flag.stderr
    nothing = invoke("zzzzzz")
    assert "See invoke --list for the tasks." in nothing.stderr


def test_an_output_dir_that_is_a_file_is_named_as_the_option(
    invoke: Invoke, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("mine\n")
    line = error_line(invoke("all", "--output-dir=afile"), "--output-dir afile is not a directory")
    assert "(from --output-dir)" in line
    assert (tmp_path / "afile").read_text() == "mine\n"
    from_env = error_line(invoke("pack", env={"INVOKE_OUTPUT_DIR": "afile"}))
    assert "from INVOKE_OUTPUT_DIR" in from_env


def test_a_v_before_the_version_is_said(invoke: Invoke) -> None:
    out = ok(invoke("fetch", f"--version=v{VERSION}")).stdout
    assert f"v{VERSION} taken as {VERSION}" in out


def test_list_lines_are_whole_sentences(invoke: Invoke) -> None:
    listed = ok(invoke("--list")).stdout.split("Default task")[0]
    described: dict[str, str] = {}
    task = ""
    for line in listed.splitlines()[1:]:
        if line.startswith("  ") and not line.startswith("   "):
            task, _, text = line.strip().partition(" ")
            described[task] = text.strip()
        elif line.strip():
            described[task] += " " + line.strip()
    assert set(described) == set(tasks.ns.task_names)
    for name, text in described.items():
        assert text.endswith("."), f"{name}: {text}"


@pytest.mark.parametrize(
    ("flags", "config", "fragments"),
    [
        (
            {"format": "erofs"},
            {"compression": "xz"},
            ["compression 'xz' (from compression in invoke.yaml", "format 'erofs' (from --format)"],
        ),
        (
            {"compression": "lz4hc"},
            {},
            ["compression 'lz4hc' (from --compression)", "format 'squashfs' (from the default)"],
        ),
        ({"format": "erofs", "compression": "gzip"}, {}, ["unknown compression 'gzip'"]),
    ],
)
def test_a_compression_that_does_not_fit_the_format_names_where_each_came_from(
    flags: dict[str, str], config: dict[str, str], fragments: list[str]
) -> None:
    with pytest.raises(BuildError) as caught:
        options.resolve("all", flags, config)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert "lz4hc, none" in str(caught.value) or "xz, xz-bcj, zstd" in str(caught.value)


def test_each_format_has_its_own_default_compression() -> None:
    assert options.resolve("all", {})["compression"] == "xz"
    assert options.resolve("all", {"format": "erofs"})["compression"] == "lz4hc"
    assert options.resolve("all", {}, {"format": "erofs"})["compression"] == "lz4hc"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--publish-url=ftp://example.com/alloy/", "--sign-key=NOPEKEY"],
            "error: invalid publish URL 'ftp://example.com/alloy/'",
        ),
        (
            ["--publish-url=ftp://example.com/alloy/", "--gnupg-home=/nonexistent"],
            "error: invalid publish URL 'ftp://example.com/alloy/'",
        ),
        (["--health-url=http://127.0.0.1:1/?x"], "error: invalid health URL"),
    ],
)
def test_release_refuses_a_bad_url_before_it_asks_gpg_or_reads_images(
    invoke: Invoke, tmp_path: Path, cli_env: dict[str, str], flags: list[str], expected: str
) -> None:
    """The option table checks the release URLs while it parses: before the signing key is looked
    up (gpg never runs) and before any image is read; nothing is written."""
    tools = tmp_path / "tools"
    tools.mkdir()
    ran = tmp_path / "gpg-ran"
    gpg = tools / "gpg"
    gpg.write_text(f"#!/bin/sh\ntouch {ran}\nexit 2\n")
    gpg.chmod(0o755)
    output = tmp_path / "output"
    output.mkdir()
    env = {**cli_env, "PATH": f"{tools}:{cli_env['PATH']}"}
    result = invoke("release", f"--output-dir={output}", *flags, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(expected), result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert not ran.exists()
    assert list(output.iterdir()) == []


def test_all_with_systemd_s_arch_name_builds_the_image_under_ours(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("all", "--arch=aarch64", "--no-verify"))
    assert (tmp_path / f"output/alloy-{VERSION}-arm64.raw").is_file()
    assert not list((tmp_path / "output").glob("*aarch64*"))


@pytest.mark.parametrize(
    ("args", "said", "never"),
    [
        (
            ("all", "--sign-key=ABC"),
            "'--sign-key' is a flag of invoke sums or invoke release, not of invoke all.",
            "--trust-keys",
        ),
        (
            ("release", "--trust-keys=keys.gpg"),
            "'--trust-keys' is a flag of invoke all (and its steps), not of invoke release.",
            "--sign-key",
        ),
        (
            ("clean", "--no-autostart"),
            "'--no-autostart' is a flag of invoke all (and its steps), not of invoke clean.",
            "Did you mean",
        ),
    ],
)
def test_a_flag_of_another_task_names_its_tasks_never_a_near_flag_of_this_one(
    invoke: Invoke, tmp_path: Path, args: tuple[str, ...], said: str, never: str
) -> None:
    """--sign-key and --trust-keys are near in spelling and opposite in role: a near match
    must not be offered in place of a flag that belongs to another task."""
    result = invoke(*args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.stderr
    assert never not in lines[0]
    assert not (tmp_path / "output").exists()
