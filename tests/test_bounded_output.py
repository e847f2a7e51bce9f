"""No line a task prints passes 400 characters (issue 20): an image of 9,000 extra files made
verify print one of ~600,000; long lists now end in "… and N more"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from build.core.errors import BuildError, one_line
from build.core.report import MAX_ITEM, MAX_LINE, listing
from tests import verifying
from tests.conftest import Invoke
from tests.verifying import fails_because, repack, verify

built = verifying.built  # fixtures
tree = verifying.tree

EXTRA = 9000


@pytest.mark.needs("mksquashfs", "unsquashfs")
def test_an_image_of_9000_extra_files_prints_bounded_lines(
    invoke: Invoke, tree: Path, tmp_path: Path
) -> None:
    # A hundred to a directory: one listing over 8 KiB gets a directory index, which the
    # reader refuses before any check runs.
    for number in range(EXTRA):
        extra = tree / f"usr/share/extra/d{number // 100:02}"
        extra.mkdir(parents=True, mode=0o755, exist_ok=True)
        (extra / f"file{number:05}").touch(mode=0o644)
    for directory in (tree / "usr/share", tree / "usr/share/extra"):
        directory.chmod(0o755)
    result = verify(invoke, repack(tree, tmp_path / "bad" / "alloy.raw"))
    lines = [*result.stdout.splitlines(), *result.stderr.splitlines()]
    assert max(len(line) for line in lines) <= MAX_LINE, max(lines, key=len)[:500]
    fails_because(
        result,
        "entries",
        # (/usr/share itself holds /usr/share/factory/etc/default/alloy)
        "/usr/share/extra is an extra directory, not part of an Alloy sysext",
        "… and ",
    )
    [row] = [line for line in result.stdout.splitlines() if "FAIL entries:" in line]
    more = int(re.search(r"… and (\d+) more", row)[1])  # type: ignore[index]
    assert EXTRA - 10 < more < EXTRA + EXTRA // 100 + 2  # all but the first few, counted
    assert "failed verification: entries: /usr/share/extra is an extra directory" in result.stderr


def test_listing_keeps_the_first_items_and_counts_the_rest() -> None:
    items = [f"/usr/share/extra/file{n:05} is an extra file" for n in range(EXTRA)]
    text = listing(items)
    assert text.startswith(items[0] + "; " + items[1])
    shown = text.count("is an extra file")
    assert text.endswith(f"; … and {EXTRA - shown} more")
    assert len(text) <= 300
    assert listing(items[:2]) == "; ".join(items[:2])  # short lists as they are
    assert listing([]) == ""


def test_one_long_item_is_cut_and_the_next_still_shown() -> None:
    text = listing(["/" + "a" * 5000, "/b"], ", ")
    assert text.endswith("…, /b") and len(text) <= MAX_ITEM + len(", /b")


def test_an_error_line_is_cut_before_its_hint() -> None:
    line = one_line(BuildError("refusing " + "x" * 5000, "do this instead"))
    assert len(line) <= MAX_LINE
    assert line.startswith("error: refusing xxx") and line.endswith("…; do this instead")


def test_an_unknown_task_of_3000_characters_is_one_short_line(invoke: Invoke) -> None:
    result = invoke("x" * 3000)
    assert result.returncode != 0
    assert result.stderr.strip() and all(
        len(line) <= MAX_LINE for line in result.stderr.splitlines()
    )
    assert "No idea what 'xxx" in result.stderr
