"""The format table (build/formats/table.py) is the one place that knows the image formats:
nothing else in build/ branches on a format's name or on a reader's class, and each entry agrees
with its packer and its reader."""

from __future__ import annotations

import ast
import dataclasses
import json
import textwrap
from pathlib import Path

import pytest

from build.config import options
from build.core.errors import BuildError
from build.formats import erofs, squashfs
from build.formats.recipe import Recipe
from build.formats.table import (
    DEFAULT_FORMAT,
    FORMATS,
    MAX_IMAGE_BYTES,
    UNRECORDED_FORMAT,
    format_named,
    image_format,
    open_image,
)
from build.model.arch import ARCHES
from build.read.image import ReadImage
from tests.conftest import REPO
from tests.trees import alloy_tree

# Where the formats may be named: the table with its packers, and the readers.
ALLOWED = ("build/formats/", "build/read/")
READER_CLASSES = frozenset(cls.__name__ for cls in ReadImage.__subclasses__())
NAMES = frozenset(FORMATS) | READER_CLASSES


def format_branches(source: str) -> list[str]:
    """Where `source` tells formats apart itself: a string that is exactly a format's name (or
    a reader class's) outside a longer text, e.g. `fmt == "erofs"`, `case "erofs":`,
    `{"erofs": ...}`, `info.get("format", "squashfs")`; or an isinstance/issubclass/type() test
    against a reader's class. Error messages and docs naming a format in a sentence pass."""
    tree = ast.parse(source)
    in_text = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in in_text:
            if isinstance(node.value, str) and node.value.lower() in {n.lower() for n in NAMES}:
                found.append(f"line {node.lineno}: names {node.value!r}")
        elif isinstance(node, ast.Call) and _name(node.func) in ("isinstance", "issubclass"):
            if len(node.args) == 2 and _classes(node.args[1]) & READER_CLASSES:
                found.append(f"line {node.lineno}: {_name(node.func)} against a reader's class")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            typed = any(isinstance(o, ast.Call) and _name(o.func) == "type" for o in operands)
            if typed and any(_classes(o) & READER_CLASSES for o in operands):
                found.append(f"line {node.lineno}: type() against a reader's class")
    return found


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _classes(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Tuple):
        return {name for element in node.elts for name in _classes(element)}
    name = _name(node)
    return {name} if name else set()


def test_no_module_outside_the_table_and_the_readers_branches_on_a_format() -> None:
    found: list[str] = []
    for path in sorted((REPO / "build").rglob("*.py")):
        where = path.relative_to(REPO).as_posix()
        if not where.startswith(ALLOWED):
            found.extend(f"{where} {line}" for line in format_branches(path.read_text()))
    assert not found, "ask build/formats/table.py instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        'if spec.format == "erofs":\n    pass',
        'tool = "mkfs.erofs" if fmt != "squashfs" else "mksquashfs"',
        'ok = name in ("squashfs", "erofs")',
        'match fmt:\n    case "erofs":\n        pass',
        'TOOLS = {"squashfs": ("mksquashfs",)}',
        'packed_as = info.get("format", "squashfs")',
        'Option("format", default="squashfs")',
        "if isinstance(image, ErofsImage):\n    pass",
        "if isinstance(image, (read.SquashfsImage, Other)):\n    pass",
        "if type(image) is ErofsImage:\n    pass",
        'fstype = "erofs" if read.__class__.__name__ == "ErofsImage" else "squashfs"',
        'if fmt == "EROFS":\n    pass',
    ],
)
def test_the_scan_finds_each_way_of_branching_on_a_format(code: str) -> None:
    assert format_branches(code), code


def test_the_scan_lets_messages_and_docs_name_formats() -> None:
    code = textwrap.dedent(
        '''
        def check(image):
            """Refuse an erofs image a squashfs host cannot mount."""
            raise BuildError(f"{image} is erofs, not {fmt.name}", "use --format=squashfs")
            say("verify", f"{name}erofs")
            return FORMATS[image.format].fstype, isinstance(image, ReadImage)
        '''
    )
    assert format_branches(code) == []


def test_each_entry_is_named_as_the_table_lists_it() -> None:
    assert list(FORMATS) == ["squashfs", "erofs", "ddi"]  # --format's choices, in --help's order
    assert all(FORMATS[name].name == name for name in FORMATS)
    assert DEFAULT_FORMAT is UNRECORDED_FORMAT is FORMATS["squashfs"]
    # Exactly one format takes the files no magic claims.
    assert [fmt.name for fmt in FORMATS.values() if fmt.magic is None] == ["squashfs"]
    assert max(fmt.max_image_bytes for fmt in FORMATS.values()) == MAX_IMAGE_BYTES


def test_the_option_table_takes_its_choices_and_defaults_from_the_format_table() -> None:
    by_name = {option.name: option for option in options.OPTIONS}
    assert by_name["format"].default == DEFAULT_FORMAT.name
    default = by_name["compression"].default
    # --help's words, as before, and a DDI's
    assert default.text == "xz for squashfs, lz4hc for erofs; for a DDI its --ddi-filesystem's"
    for fmt in FORMATS.values():
        assert default.make({"format": fmt.name}) == fmt.default_compression
        for inner in fmt.inner.values() or [None]:
            values = {"format": fmt.name, "ddi_filesystem": inner.name if inner else None}
            given = options.Given(by_name["compression"], "--compression", values, {})
            for choice in (inner or fmt).compressions:
                assert options.compression(choice, given) == choice
            if inner is not None:
                assert default.make(values) == inner.default_compression
    assert FORMATS["squashfs"].compressions == ("xz", "xz-bcj", "zstd", "none")
    assert FORMATS["erofs"].compressions == ("lz4hc", "none")


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [("erofs", "erofs"), ("squashfs", "squashfs"), ("ext4", None), (["erofs"], None), (1, None)],
)
def test_a_format_read_from_a_file_is_looked_up_without_crashing(
    raw: object, wanted: str | None
) -> None:
    fmt = format_named(json.loads(json.dumps(raw)))
    assert (fmt.name if fmt else None) == wanted


def test_the_build_info_fields_of_each_packer_keep_their_order() -> None:
    amd64 = ARCHES["amd64"]
    squash = squashfs.fields(Recipe("alloy", "1.10.2", ARCHES["arm64"], "xz-bcj"))
    assert list(squash) == ["compression", "block_size", "mksquashfs_args"]
    assert squash["compression"] == "xz"  # arm64 has no BCJ filter: what packed it is plain xz
    assert list(erofs.fields(Recipe("alloy", "1.10.2", amd64, "lz4hc"))) == [
        "compression",
        "block_size",
        "mkfs_erofs_args",
        "uuid",
    ]
    recipe = Recipe("alloy", "1.10.2", amd64, "xz-bcj")
    assert FORMATS["squashfs"].args(recipe) == {
        "mksquashfs": squashfs.mksquashfs_args("xz-bcj", amd64)
    }
    erofs_recipe = Recipe("alloy", "1.10.2", amd64, "lz4hc")
    image_id = erofs.image_uuid("alloy", "1.10.2", "amd64")
    assert FORMATS["erofs"].args(erofs_recipe) == {
        "mkfs.erofs": erofs.mkfs_erofs_args("lz4hc", image_id)
    }


@pytest.mark.needs("mksquashfs", "mkfs.erofs")
def test_each_entry_agrees_with_its_packer_and_its_reader(tmp_path: Path) -> None:
    tree = alloy_tree(tmp_path / "tree")
    for fmt in FORMATS.values():
        for inner in fmt.inner.values() or [fmt]:
            recipe = Recipe("alloy", "1.10.2", ARCHES["amd64"], inner.default_compression)
            if fmt.inner:
                recipe = dataclasses.replace(recipe, filesystem=inner.name)
            assert tuple(fmt.tool_versions(recipe)) == fmt.tools
            image = tmp_path / f"{fmt.name}-{inner.name}.raw"
            fmt.pack(recipe, tree, image)
            assert image_format(image) == fmt.name
            if fmt.inner:  # read through its data partition, once checked (tests/test_ddi*.py)
                with pytest.raises(BuildError, match="is a DDI"):
                    open_image(image)
                continue
            read = open_image(image)
            assert read.format == fmt.name and isinstance(read, ReadImage)
            status, detail = fmt.superblock_check(read, fmt.default_compression, ARCHES["amd64"])
            assert status == "ok", detail


def test_a_file_no_magic_claims_is_read_as_squashfs(tmp_path: Path) -> None:
    neither = tmp_path / "neither.raw"
    neither.write_bytes(bytes(4096))
    assert image_format(neither) == "squashfs"
    short = tmp_path / "short.raw"
    short.write_bytes(b"x")
    assert image_format(short) == "squashfs"
