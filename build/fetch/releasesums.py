"""The release's SHA256SUMS as the cache holds it: the zip's expected sha256, read on every run
(the stage step records it) without the download code."""

from __future__ import annotations

from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.core.sums import parse_sums

MIRROR_HINT = "check --base-url: it must serve GitHub's release layout (vX.Y.Z/ASSET)"
CLEAN_HINT = "remove it (invoke clean --cache) and run again"
SUMS_MAX = 1 << 20  # bytes: Alloy's SHA256SUMS is a few KiB


def sums_of(spec: BuildSpec, text: str) -> dict[str, str]:
    sums = parse_sums(text, spec.sums_url)
    if not sums:
        raise BuildError(
            f"{spec.sums_url} is not a SHA256SUMS file (no 'HASH  NAME' line)", MIRROR_HINT
        )
    return sums


def expected_sha256(spec: BuildSpec) -> str:
    # Read no more than a download may bring: the cache is a directory others can write to.
    with spec.cached_sums.open("rb") as stream:
        data = stream.read(SUMS_MAX + 1)
    if len(data) > SUMS_MAX:
        raise BuildError(f"cached {spec.cached_sums} is larger than {SUMS_MAX} bytes", CLEAN_HINT)
    sums = sums_of(spec, data.decode(errors="replace"))
    try:
        return sums[spec.zip_name]
    except KeyError:
        raise BuildError(
            f"{spec.sums_url} has no line for {spec.zip_name}",
            "the download cannot be verified, so nothing was built",
        ) from None
