"""sysusers.d and tmpfiles.d files in an image (issue 20): systemd runs their lines as root on
the host, so verify allows only the lines this build writes (build/image/conflines.py BUILD_WRITES),
read with systemd's own syntax: comments, blank lines, quoting, escapes, no continuation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from build.image import conflines
from tests import verifying
from tests.conftest import VERSION, Invoke
from tests.results import ok
from tests.verifying import fails_because, repack, verify

tree = verifying.tree  # the built image unpacked (a fixture)

TMPFILES = "tmpfiles copies, chowns and chmods as root"
SYSUSERS = "sysusers creates users and groups as root"


def image_with(tree: Path, tmp_path: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.write_bytes(data)
        target.chmod(0o644)
    return repack(tree, tmp_path / "bad" / "alloy.raw")


def setup_row(stdout: str) -> str:
    [row] = [line for line in stdout.splitlines() if " sysusers-tmpfiles: " in line]
    return row


@pytest.mark.needs("mksquashfs", "unsquashfs")
@pytest.mark.parametrize(
    ("path", "text", "fragments"),
    [
        (
            "usr/lib/tmpfiles.d/x.conf",
            b"C /etc/shadow - - - - /tmp/x\n",
            (
                "/usr/lib/tmpfiles.d/x.conf line 1: 'C /etc/shadow - - - - /tmp/x' is not a line "
                f"this build writes ({TMPFILES})",
            ),
        ),
        (
            "usr/local/lib/tmpfiles.d/alloy.conf",
            b"# made by alloy\n\n   \n\t# indented comment\n'z' \"/etc/sudoers\" 0666 - - -\n",
            ("/usr/local/lib/tmpfiles.d/alloy.conf line 5: ", "is not a line this build writes"),
        ),
        (
            "usr/lib/sysusers.d/alloy.conf",
            b'u root2 0 "Another root" /root /bin/sh\n',
            ("/usr/lib/sysusers.d/alloy.conf line 1: 'u root2 0", f"({SYSUSERS})"),
        ),
        (
            # No line continuation in either format: the backslash ends line 1 (an error),
            # and line 2 is a line of its own.
            "usr/lib/tmpfiles.d/x.conf",
            b"d /run/a 0755 root \\\nL+ /etc/x\n",
            (
                "line 1: 'd /run/a 0755 root \\' does not parse (a backslash ends the line",
                "line 2: 'L+ /etc/x' is not a line this build writes",
            ),
        ),
        (
            # systemd ends a line at \r and NUL too (\r\0 is one end): this is line 2.
            "usr/lib/tmpfiles.d/x.conf",
            b"# harmless\r\0w /etc/motd - - - - owned\n",
            ("line 2: 'w /etc/motd - - - - owned' is not a line this build writes",),
        ),
        (
            "usr/lib/tmpfiles.d/x.conf",
            b'f "/etc/cron.d/x 0644\n',
            ("line 1: 'f \"/etc/cron.d/x 0644' does not parse (unterminated \" quote",),
        ),
    ],
    ids=["copy-shadow", "comments-and-quotes", "sysusers", "no-continuation", "cr-nul", "quote"],
)
def test_a_line_this_build_does_not_write_fails(
    invoke: Invoke, tree: Path, tmp_path: Path, path: str, text: bytes, fragments: tuple[str, ...]
) -> None:
    result = verify(invoke, image_with(tree, tmp_path, {path: text}))
    fails_because(result, "sysusers-tmpfiles", *fragments)


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_a_file_of_only_comments_has_no_line_to_refuse(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    image = image_with(tree, tmp_path, {"usr/lib/tmpfiles.d/x.conf": b"# nothing\n\n"})
    result = verify(invoke, image)
    # x.conf and the two the build writes (--run-as=alloy, the default).
    assert "ok   sysusers-tmpfiles: 3 files read, every line one this build writes" in setup_row(
        result.stdout
    )
    fails_because(result, "entries", "/usr/lib/tmpfiles.d/x.conf is an extra file")


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_a_large_file_is_not_read(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    big = b"# padding\n" * (conflines.MAX_BYTES // 10 + 1)
    result = verify(invoke, image_with(tree, tmp_path, {"usr/lib/sysusers.d/x.conf": big}))
    fails_because(
        result, "sysusers-tmpfiles", f"/usr/lib/sysusers.d/x.conf is {len(big)} bytes, over 65536"
    )


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_a_symlinked_file_is_refused_unread(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    directory = tree / "usr/lib/tmpfiles.d"
    directory.mkdir(parents=True, mode=0o755, exist_ok=True)
    os.symlink("/etc/tmpfiles.d/host.conf", directory / "x.conf")
    result = verify(invoke, repack(tree, tmp_path / "bad" / "alloy.raw"))
    fails_because(
        result, "sysusers-tmpfiles", "/usr/lib/tmpfiles.d/x.conf is a symlink: systemd would read"
    )


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_the_built_image_has_only_its_own(invoke: Invoke, tree: Path, tmp_path: Path) -> None:
    result = verify(invoke, repack(tree, tmp_path / "good" / "alloy.raw"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   sysusers-tmpfiles: 2 files read, every line one this build writes" in setup_row(
        result.stdout
    )
    assert (tree / "usr/lib/sysusers.d/alloy.conf").read_text().splitlines()[-3:] == [
        'u alloy - "Grafana Alloy" /var/lib/alloy -',
        "m alloy adm",
        "m alloy systemd-journal",
    ]
    assert (tree / "usr/lib/tmpfiles.d/alloy.conf").read_text().splitlines()[-1] == (
        "C /etc/default/alloy - - - - /usr/share/factory/etc/default/alloy"
    )


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_a_root_image_has_none(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("all", "--run-as=root"))
    result = verify(invoke, tmp_path / "output" / f"alloy-{VERSION}-amd64.raw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   sysusers-tmpfiles: no sysusers.d or tmpfiles.d file" in setup_row(result.stdout)


# The reader alone: systemd's syntax.


@pytest.mark.parametrize(
    ("line", "words", "rest"),
    [
        ("d /run/x 0755 - - -", ["d", "/run/x", "0755", "-", "-", "-"], ""),
        ("  f   '/a b'  0644", ["f", "/a b", "0644"], ""),
        ("f \"/a\"b'c d'", ["f", "/abc d"], ""),  # quotes within a word
        (r"f /a\x41\101\u00e9\s\\", ["f", "/aAAé \\"], ""),  # C escapes (tmpfiles)
        (r"f '/a\'b'", ["f", "/a'b"], ""),  # a backslash escapes inside quotes too
        ("w /a - - - - some text  here", ["w", "/a", "-", "-", "-", "-"], "some text  here"),
    ],
)
def test_words_split_as_systemd_does(line: str, words: list[str], rest: str) -> None:
    assert conflines.split_words(line, 6, c_escapes=True) == (words, rest)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("f '/a", "unterminated ' quote"),
        ("f /a\\", "a backslash ends the line"),
        (r"f /a\q", r"unknown escape \q"),
        (r"f /a\x0", "bad escape"),
        (r"f /a\000", "escape of an invalid character"),
        ("f", "at least a type and a path"),
    ],
)
def test_lines_systemd_refuses_say_why(line: str, problem: str) -> None:
    [parsed] = conflines.parse(line, "tmpfiles.d")
    assert parsed.problem is not None and problem in parsed.problem


def test_sysusers_takes_no_c_escapes_and_no_seventh_field() -> None:
    [plain] = conflines.parse(r"u alloy - Alloy\x41 /var/lib/alloy", "sysusers.d")
    assert plain.fields == ("u", "alloy", "-", "Alloyx41", "/var/lib/alloy")
    [long] = conflines.parse("u alloy - x /home /bin/sh extra", "sysusers.d")
    assert long.problem is not None and "trailing garbage" in long.problem


def test_line_numbers_count_as_systemd_counts() -> None:
    text = "a\r\nb\n\rc\0d\n\ne\r\r f"
    numbered = list(conflines.lines(text))
    assert numbered == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (6, "e"), (8, "f")]


def test_only_the_directories_systemd_reads_under_usr() -> None:
    assert conflines.format_of("usr/lib/tmpfiles.d/a.conf") == "tmpfiles.d"
    assert conflines.format_of("usr/local/lib/sysusers.d/a.conf") == "sysusers.d"
    for other in ("usr/lib/tmpfiles.d/a.txt", "usr/lib/tmpfiles.d/d/a.conf", "etc/a.conf"):
        assert conflines.format_of(other) is None
