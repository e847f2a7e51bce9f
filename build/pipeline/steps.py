"""The steps of a build, in order: for each, what it makes, from what, after which step, and the
function that makes it. build/pipeline/runner.py runs them, each only when out of date."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from build.config.spec import BuildSpec
from build.core.errors import BuildError
from build.core.report import say
from build.fetch import cache, releasesums
from build.image import alias, packrecipe, stagedfiles
from build.image.content import IMAGE_BINARY
from build.model.names import buildinfo_file, checksum_file, lock_file
from build.model.versions import LATEST
from build.pipeline.runner import Entry, Runner
from build.verify import stepinputs

# A step's `make` imports what makes its targets when it runs: an up-to-date build decides from
# records and stats alone, without the downloader, the packers or the checkers (issue 26).


def _fetch(r: Runner) -> str:
    from build.fetch import upstream

    return upstream.fetch(r.spec, force="fetch" in r.force)


def _stage(r: Runner) -> str:
    from build.fetch import upstream
    from build.image import stage

    return stage.make(r, upstream.verify_cached_zip(r.spec))


def _pack(r: Runner) -> str:
    from build.image import pack

    return pack.make(r, stagedfiles.trust_fingerprints(r))


def _checksum(r: Runner) -> str:
    from build.image import checksum

    return checksum.make(r)


def _verify(r: Runner) -> str:
    from build.verify import checks

    return checks.make(r)


TABLE = (
    Entry(
        "fetch",
        needs=None,
        makes=lambda s: (s.cached_zip,),
        shares=lambda s: (s.cached_sums,),
        lock=lambda s: lock_file(s.cached_zip),
        guard=cache.fetching,
        make=_fetch,
    ),
    Entry(
        "stage",
        needs="fetch",
        before=stagedfiles.trust_keys,
        makes=lambda s: (s.rootfs / IMAGE_BINARY,),
        params=lambda r: stagedfiles.params(r, releasesums.expected_sha256(r.spec)),
        stamp=lambda s: s.stamp("stage"),
        make=_stage,
    ),
    Entry(
        "pack",
        needs="stage",
        before=packrecipe.check_tools,
        makes=lambda s: (s.image, buildinfo_file(s.image)),
        sources=lambda r: (r.spec.rootfs / IMAGE_BINARY, r.spec.stamp("stage")),
        params=packrecipe.params,
        stamp=lambda s: s.stamp("pack"),
        make=_pack,
        deferrable=True,
    ),
    Entry(
        "checksum",
        needs="pack",
        makes=lambda s: (checksum_file(s.image),),
        sources=lambda r: (r.spec.image,),
        make=_checksum,
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
        sources=lambda r: stepinputs.sources(r.spec),
        params=lambda r: stepinputs.params(r.spec),
        stamp=lambda s: s.stamp("verify"),
        make=_verify,
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
    from build.fetch import latest  # the GitHub API's client: only for --version=latest

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
