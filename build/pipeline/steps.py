"""The steps of a build, in order: for each, what it makes, from what, after which step, and the
function that makes it. build/pipeline/runner.py runs them, each only when out of date."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.core.report import say
from build.fetch import cache, latest, upstream
from build.image import alias
from build.image import checksum as checksumming
from build.image import pack as packing
from build.image import stage as staging
from build.image.content import IMAGE_BINARY
from build.model.names import buildinfo_file, checksum_file, lock_file
from build.model.versions import LATEST
from build.pipeline.runner import Entry, Runner
from build.verify import checks as verify

TABLE = (
    Entry(
        "fetch",
        needs=None,
        makes=lambda s: (s.cached_zip,),
        shares=lambda s: (s.cached_sums,),
        lock=lambda s: lock_file(s.cached_zip),
        guard=cache.fetching,
        make=lambda r: upstream.fetch(r.spec, force="fetch" in r.force),
    ),
    Entry(
        "stage",
        needs="fetch",
        before=staging.trust_keys,
        makes=lambda s: (s.rootfs / IMAGE_BINARY,),
        params=lambda r: staging.params(r, upstream.expected_sha256(r.spec)),
        stamp=lambda s: s.stamp("stage"),
        make=lambda r: staging.make(r, upstream.verify_cached_zip(r.spec)),
    ),
    Entry(
        "pack",
        needs="stage",
        before=packing.check_tools,
        makes=lambda s: (s.image, buildinfo_file(s.image)),
        sources=lambda r: (r.spec.rootfs / IMAGE_BINARY, r.spec.stamp("stage")),
        params=packing.params,
        stamp=lambda s: s.stamp("pack"),
        make=lambda r: packing.make(r, staging.trust_fingerprints(r)),
        deferrable=True,
    ),
    Entry(
        "checksum",
        needs="pack",
        makes=lambda s: (checksum_file(s.image),),
        sources=lambda r: (r.spec.image,),
        make=checksumming.make,
        deferrable=True,
    ),
    Entry(
        "alias",
        needs="checksum",
        skip=alias.not_ours,
        makes=lambda s: (s.compat_image, checksum_file(s.compat_image)),
        # Not the image's .sha256: it is always newer than the image, which the link shares.
        sources=lambda r: (r.spec.image,),
        # One record per compat name, whichever architecture made it: building another
        # --compat-arch into the same directory takes the name, and the owner takes it back.
        params=lambda r: {"image": r.spec.image.name},
        stamp=lambda s: s.compat_stamp,
        make=alias.make,
        deferrable=True,
    ),
    Entry(
        "verify",
        needs="alias",
        makes=lambda s: (s.stamp("verify"),),
        sources=lambda r: verify.sources(r.spec),
        params=lambda r: verify.params(r.spec),
        stamp=lambda s: s.stamp("verify"),
        make=verify.make,
        deferrable=True,
        optional=True,
        alone="build it first with the same options: invoke all (or invoke alias, which does "
        "not verify)",
    ),
)
STEPS = tuple(entry.name for entry in TABLE)


def spec_for(values: Mapping[str, Any]) -> BuildSpec:
    """The build's BuildSpec from the option table's values (build/config/options.py resolve()),
    with --version=latest resolved first (and said so, once)."""
    return BuildSpec.from_values({**values, "version": resolved_version(values)})


def resolved_version(values: Mapping[str, Any]) -> str:
    """--version, or for latest the version it names now (said so)."""
    if values["version"] != LATEST:
        return str(values["version"])
    found = latest.resolve(
        values["api_url"],
        values["cache_dir"],
        values["retries"],
        allow_http=values["allow_http"],
        stall_timeout=values["stall_timeout"],
        download_timeout=values["download_timeout"],
    )
    say(LATEST, found.describe())
    return found.version


def run_steps(spec: BuildSpec, last: str, force: bool, verify: bool = True) -> None:
    """Run the steps up to `last` ("all": every one); with `force`, rebuild `last` (with "all":
    every step) even if up to date."""
    if last not in STEPS and last != "all":
        raise BuildError(f"unknown step {last!r}")
    forced = (STEPS if last == "all" else (last,)) if force else ()
    runner = Runner(TABLE, spec, forced)
    try:
        if last == "all":
            runner.all(verify=verify)
        else:
            runner.ask(last)
    finally:
        runner.close()
