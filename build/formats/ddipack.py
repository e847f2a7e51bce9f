"""The format table's DDI entry (build/formats/table.py): the inner file system image packed by
its own format's packer (--ddi-filesystem, with --compression as that format takes it) into a
temporary file beside the image, then wrapped by build/formats/ddi.py assemble() into a GPT disk
image with its dm-verity hash partition and, signed, its signature partition. The seed comes
from the image's name, version and architecture (build/model/ddi.py build_seed()): the same
inputs anywhere give the same root hash, and with an RSA key the same bytes."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from build.core.errors import BuildError
from build.core.fileio import TEMP_SUFFIX, scratch_prefix
from build.core.run import run
from build.formats.ddi import assemble_recorded
from build.formats.recipe import Recipe
from build.model.ddi import build_seed
from build.read.verity import BLOCK_BYTES

OPENSSL = "openssl"
# The tools whose versions decide a DDI's bytes, beside the inner format's: openssl makes the
# signature (an RSA signature's bytes follow from the key and the root hash alone).
SIGNING_TOOLS = (OPENSSL,)
INNER_SUFFIX = ".inner" + TEMP_SUFFIX  # swept like any temporary beside the image


def _filesystem(recipe: Recipe) -> str:
    if recipe.filesystem is None:
        raise ValueError("a DDI's recipe names the file system it wraps")
    return recipe.filesystem


def pack(
    inner_pack: Callable[[Recipe, Path, Path], object], recipe: Recipe, tree: Path, image: Path
) -> dict[str, Any]:
    """Pack `tree` with `inner_pack` into a temporary file beside `image`, wrap it into the DDI
    at `image`; what the build info records of the result: the root hash, and what wrote the
    DDI (systemd-repart and its version, or python)."""
    fd, name = tempfile.mkstemp(prefix=scratch_prefix(image), suffix=INNER_SUFFIX, dir=image.parent)
    os.close(fd)
    inner = Path(name)
    try:
        inner_pack(recipe, tree, inner)
        seed = build_seed(recipe.name, recipe.version, recipe.arch.name)
        sign = recipe.signing.sign if recipe.signing is not None else None
        built = assemble_recorded(inner, image, recipe.arch.name, seed, sign)
    finally:
        inner.unlink(missing_ok=True)
    # Which way built it is for the record, not in args(): both give the same bytes.
    return {"root_hash": built.root_hash.hex(), "ddi_assembler": built.assembler}


def args(inner_args: Callable[[Recipe], dict[str, Any]], recipe: Recipe) -> dict[str, Any]:
    """What shapes the DDI beside the tree: the inner format's arguments, the file system it
    wraps, and the certificate that signs it (by fingerprint: a new key for the same
    certificate cannot exist, and the key's path is not what matters)."""
    signing = recipe.signing
    return {
        "--ddi-filesystem": _filesystem(recipe),
        **inner_args(recipe),
        "--verity-cert": signing.certificate_fingerprint if signing is not None else "unsigned",
    }


def fields(inner_fields: Callable[[Recipe], dict[str, Any]], recipe: Recipe) -> dict[str, Any]:
    """The build info's record of the packing (the root hash comes from pack()): the inner
    format's fields (its compression is the data partition's), the DDI's."""
    signing = recipe.signing
    return {
        "ddi_filesystem": _filesystem(recipe),
        **inner_fields(recipe),
        "verity_block_size": BLOCK_BYTES,
        "verity_signed": signing is not None,
        "verity_certificate_fingerprint": (
            signing.certificate_fingerprint if signing is not None else None
        ),
    }


def tool_versions(
    inner_versions: Callable[[Recipe], dict[str, str | None]],
    tools: tuple[str, ...],
    recipe: Recipe,
) -> dict[str, str | None]:
    """Every tool of `tools` (the DDI entry's: each inner format's and openssl), null where this
    DDI did not use it: the inner format's versions, openssl's when signed."""
    versions: dict[str, str | None] = dict.fromkeys(tools)
    versions.update(inner_versions(recipe))
    if recipe.signing is not None:
        versions[OPENSSL] = openssl_version()
    return versions


def openssl_version() -> str:
    """`openssl version`'s number, e.g. "3.0.17"."""
    said = run([OPENSSL, "version"], timeout=30)
    match = re.match(r"\S+ (\d\S*)", said)
    if match is None:
        raise BuildError(
            "openssl version does not say which version it is",
            "install openssl from your distribution (e.g. apt-get install openssl)",
        )
    return match.group(1)


def summary(
    inner_summary: Callable[[Recipe, Mapping[str, str | None]], str],
    recipe: Recipe,
    tools: Mapping[str, str | None],
) -> str:
    signing = recipe.signing
    signed = (
        f"signed (certificate {signing.certificate_fingerprint[:16]}…)"
        if signing is not None
        else "unsigned"
    )
    return f"DDI of {_filesystem(recipe)} ({inner_summary(recipe, tools)}), dm-verity, {signed}"
