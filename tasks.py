"""Build Grafana Alloy as a systemd-sysext image: `invoke all --version=1.10.2`.

Every option can also be set in invoke.yaml or as INVOKE_<OPTION>, e.g. INVOKE_ARCH=arm64; the
command line wins over both. The options are declared once, in build/config/options.py.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context, Exit, Task

# invoke turns off .pyc writing for every run (unless --write-pyc), so each run compiled every
# build.* module it imports again: a third of an up-to-date `invoke all` (200 ms against 300).
# Python's own switches still turn it off: -B, PYTHONDONTWRITEBYTECODE (the container sets it).
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

from build.config import options  # noqa: E402
from build.config.configkeys import refuse_unknown_settings  # noqa: E402
from build.core.cli import suggest_close_matches  # noqa: E402
from build.core.errors import BuildError, one_line  # noqa: E402
from build.core.pipes import quiet_broken_pipe, silence_stdout, stdout_gone  # noqa: E402
from build.core.report import say  # noqa: E402
from build.core.signals import Interrupted, signals_raise  # noqa: E402
from build.model.versions import LATEST  # noqa: E402

if TYPE_CHECKING:
    from build.keys import signing

# The modules that do the work are imported by the task that needs them, when it runs: every
# command (and each of the test suite's hundreds) starts 60 ms sooner, --list and --help too.

# `invoke --list | head -1`: the reader gone, stop quietly (SIGPIPE stays ignored: see pipes.py).
quiet_broken_pipe()
# "No idea what 'al' is!" also names the closest task or flag, or the tasks a flag belongs to.
suggest_close_matches(options.flag_owners)


class OptionTask(Task):
    """A task whose flags come from the option table, not from its signature."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Any]:
        return options.arguments(self.name)


def _clean_exit(body: Callable[..., None]) -> Callable[..., None]:
    """Whatever goes wrong ends in one line on stderr and exit code 1, never a traceback; a
    signal (SIGINT, SIGTERM, SIGHUP) ends it after removing temporary files, with 128 + signal."""

    @functools.wraps(body)
    def wrapper(c: Context, **flags: Any) -> None:
        try:
            with signals_raise():
                refuse_unknown_settings(c.config)  # a mistyped key must not build the default
                body(c, **flags)
        except BuildError as error:
            raise Exit(one_line(error), code=1) from None
        except OSError as error:
            if isinstance(error, BrokenPipeError) and stdout_gone():  # `invoke all | head -3`
                silence_stdout()
                raise Exit(
                    "error: stopped: the reader of its output (stdout) went away; partial files "
                    "removed, run again to finish",
                    code=1,
                ) from None
            raise Exit(one_line(error, _places(c, flags)), code=1) from None
        except KeyboardInterrupt as error:
            signum = error.signum if isinstance(error, Interrupted) else 2
            name = error.args[0] if isinstance(error, Interrupted) else "SIGINT"
            raise Exit(
                f"error: interrupted by {name}; partial files removed, run again to finish",
                code=128 + signum,
            ) from None

    return wrapper


def _places(c: Context, flags: dict[str, Any]) -> dict[str, Path]:
    """The directories a run writes under, by the option that moves them: for the advice on
    an OSError (a full disk, a read-only directory)."""

    def chosen(name: str) -> Path:
        given = flags.get(name) or c.config.get(name)
        if given:
            return Path(str(given))
        default = options.BY_NAME[name].default
        return Path(default.make({}) if isinstance(default, options.Computed) else default)

    return {"--output-dir": chosen("output_dir"), "--cache-dir": chosen("cache_dir")}


def _task(name: str, body: Callable[..., None]) -> OptionTask:
    return OptionTask(_clean_exit(body), name=name, positional=[], default=name == "all")


def _build_task(name: str, doc: str) -> OptionTask:
    """A build step: `invoke NAME` runs the steps up to NAME that are out of date."""

    def body(c: Context, **flags: Any) -> None:
        from build.pipeline.steps import run_steps, spec_for

        values = options.resolve(name, flags, c.config)
        if name == "verify" and values["image"] is not None:
            from build.verify.checks import verify_any_image

            # The image's own version counts, not --version: no API call for a "latest"; and
            # its own architecture (verify's --arch has no default: every image built).
            arch = values["arch"] or options.BY_NAME["arch"].default
            spec = spec_for({**values, "version": "0.0.0", "arch": arch})
            # Any compression a host mounts passes, unless --compression is given here (not
            # from invoke.yaml, which is for builds): then as this tool packs it.
            given = values["compression"] if flags.get("compression") is not None else None
            verify_any_image(
                values["image"],
                spec,
                given,
                values["expect_format"],
                values["expect_compression"],
                values["verity_cert"],
            )
            return
        if name == "verify":  # what is built, as it was built
            from build.pipeline.verifybuilt import refuse_expect_without_image, verify_built

            refuse_expect_without_image(values)
            verify_built(values, options.on_command_line(flags))
            return
        spec = spec_for(values)
        run_steps(spec, name, force=values["force"], verify=values.get("verify", True))

    body.__doc__ = doc
    return _task(name, body)


fetch = _build_task("fetch", "Download the release zip and SHA256SUMS into the cache, verified.")
stage = _build_task("stage", "Lay out the image tree: the binary, its unit, extension-release.")
pack = _build_task("pack", "Pack the staged tree into output/alloy-VERSION-ARCH.raw.")
checksum = _build_task("checksum", "Write the image's .sha256, checkable with sha256sum -c.")
alias = _build_task("alias", "Link the compat name alloy-VERSION.raw to the image.")
verify = _build_task("verify", "Check the image as a host takes it, real merges included.")
all_ = _build_task("all", "Build and verify everything (the default task).")


def _clean(c: Context, **flags: Any) -> None:
    """Remove what the tool built (images, checksums, staging; the cache with --cache).

    Only the options clean uses are read: a bad compression in invoke.yaml must not stop a
    clean-up. --version and --arch narrow it; without them it cleans every version."""
    from build.fetch.cache import adopt_older_default, clean_cache, refuse_untagged
    from build.fetch.latest import resolve as resolve_latest
    from build.pipeline.clean import cache_kinds, clean_outputs, removed_line

    values = options.resolve("clean", flags, c.config)
    version_only, arch_only = values["version"], values["arch"]
    if version_only == LATEST:  # the cached answer, as the build that used it had
        version_only = resolve_latest(values["api_url"], values["cache_dir"], retries=3).version
    cache_dir = values["cache_dir"]
    if values["cache"]:  # before anything goes
        adopt_older_default(cache_dir)
        refuse_untagged(cache_dir)
    output_dir = values["output_dir"]
    cleaned = clean_outputs(output_dir, version_only, arch_only, values["compat_arch"])
    say("clean", removed_line(cleaned.kinds, str(output_dir)))
    for path, why in cleaned.kept:
        say("clean", f"kept {path}: {why}")
    if values["cache"]:
        emptied, kept = clean_cache(cache_dir, version_only)
        where = f"the download cache {cache_dir}"
        say("clean", removed_line(cache_kinds(emptied, cache_dir), where))
        for path in kept:
            say("clean", f"kept {path}: not a file this tool downloads")


def _signer(values: dict[str, Any], flags: dict[str, Any]) -> signing.Signer | None:
    from build.keys import signing

    key, home = values["sign_key"], values["gnupg_home"]
    if not key:
        if flags.get("gnupg_home"):  # a configured home alone is fine: releases may be unsigned
            raise BuildError("--gnupg-home without --sign-key", "give the key to sign with too")
        return None
    return signing.signer(str(key), home)


def _sums(c: Context, **flags: Any) -> None:
    """Write SHA256SUMS over every image in the output directory (--stream: a stream's).

    An earlier SHA256SUMS.gpg is signed again with --sign-key, or removed once it no longer
    matches. With --stream=X.Y, the SHA256SUMS of the feed release wrote in streams/X.Y/, over
    that line's images."""
    from build.release import publish

    values = options.resolve("sums", flags, c.config)
    signer = _signer(values, flags)
    path, count = publish.write_signed_sums(values["output_dir"], signer, values["stream"])
    say("sums", f"wrote {path} ({count} images)")


def _release(c: Context, **flags: Any) -> None:
    """Write the files to publish beside the images (SHA256SUMS, index.json, sysupdate, Butane).

    Per architecture: systemd-sysupdate transfer files and a Flatcar Butane config with its
    Ignition JSON. With --stream=X.Y, the feed of that minor line instead, in streams/X.Y/."""
    from build.release import publish
    from build.release.compressed import Sending

    values = options.resolve("release", flags, c.config)
    publish.release(
        values["output_dir"],
        values["publish_url"],
        values["update_url"],
        _signer(values, flags),
        health_url=values["health_url"],
        verity_cert=values["verity_cert"],
        require_signed_images=values["require_signed_images"],
        feed=publish.Feed(
            values["stream"],
            values["min_version"],
            Sending(values["transport"], values["transport_only"]),
        ),
    )


clean = _task("clean", _clean)
sums = _task("sums", _sums)
release = _task("release", _release)

ns = Collection(fetch, stage, pack, checksum, alias, verify, all_, clean, sums, release)
ns.configure(options.config_keys())
