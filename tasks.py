"""Build Grafana Alloy as a systemd-sysext image: `invoke all --version=1.10.2`.

Every option's default can also be set in invoke.yaml or as INVOKE_<OPTION>,
e.g. INVOKE_ARCH=arm64.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Context, Exit, Task, task

from build import publish, signing
from build.cache import adopt_older_default, clean_cache, refuse_untagged
from build.clean import clean_outputs
from build.errors import BuildError, one_line
from build.latest import spec_from_options
from build.pipeline import run_steps
from build.signals import Interrupted, signals_raise
from build.spec import DEFAULTS, BuildSpec, default_cache_dir, directory_option, flag_value
from build.verify import verify_any_image

HELP = {
    "version": "Alloy release to build, X.Y.Z or X.Y.Z-rc.N, or latest: the highest stable "
    f"release, asked of --api-url (default {DEFAULTS['version']})",
    "arch": f"amd64 or arm64 (default {DEFAULTS['arch']})",
    "base_url": "where releases live, GitHub's layout: {base-url}/vX.Y.Z/ASSET "
    f"(default {DEFAULTS['base_url']})",
    "api_url": "GitHub's releases API of Alloy, asked only for --version=latest (with "
    f"GITHUB_TOKEN when set) (default {DEFAULTS['api_url']})",
    "output_dir": f"where images go (default {DEFAULTS['output_dir']})",
    "cache_dir": "download cache (default $XDG_CACHE_HOME/alloy-sysext, ~/.cache/alloy-sysext)",
    "compression": "squashfs compression: xz (small); xz-bcj (xz plus the x86 BCJ filter: "
    "~2-3 % smaller on amd64 at ~2x the pack time; on arm64 the same as xz); or zstd (~12 % "
    f"larger, reads back ~10x faster) (default {DEFAULTS['compression']})",
    "config_path": f"Alloy config the unit runs (default {DEFAULTS['config_path']})",
    "unit_template": "your own alloy.service template, with @BINARY@, @CONFIG_PATH@, "
    "@STATE_DIR@, @VERSION@ placeholders (default build/templates/alloy.service)",
    "compat_arch": "the architecture that owns the compat name alloy-VERSION.raw "
    f"(default {DEFAULTS['compat_arch']})",
    "retries": f"retries of a failed download (default {DEFAULTS['retries']})",
    "autostart": "start alloy whenever the image is merged (Upholds= on multi-user.target), "
    "once its config exists (default off)",
    "max_binary_size": "refuse a zip member that unpacks to more MiB than this (a zip bomb) "
    f"(default {DEFAULTS['max_binary_size']})",
    "allow_http": "allow plain http:// for --base-url, --api-url and their redirects to another "
    "host than this machine (default off: refused; TLS is always verified)",
    "max_download_size": "refuse a release zip larger than this many MiB, by its "
    f"Content-Length or while streaming (default {DEFAULTS['max_download_size']})",
    "stall_timeout": "seconds in which a download must receive at least 1 KiB, or the attempt "
    f"is abandoned as stalled and retried (default {DEFAULTS['stall_timeout']})",
    "download_timeout": "seconds one download attempt may take in all, then it is abandoned "
    f"and retried (default {DEFAULTS['download_timeout']})",
    "trust_keys": "put this OpenPGP public keyring (binary or armored) in the image as the keys "
    "hosts trust next, for a key rotation: hosts add them to sysupdate's keyring once the "
    "image is merged (default: none)",
    "force": "rebuild even if up to date",
}


# Options that came after the others: no short flag, so the others keep the ones they had
# (Invoke hands them out in signature order: -i would move from verify --image to --api-url).
LONG_ONLY = {
    "api_url",
    "max_binary_size",
    "allow_http",
    "max_download_size",
    "stall_timeout",
    "download_timeout",
    "sign_key",
    "gnupg_home",
    "trust_keys",
}


class _Task(Task):
    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name in LONG_ONLY:
            opts["names"] = opts["names"][:1]
        return opts


def _clean_exit(body: Callable[..., None]) -> Callable[..., None]:
    """Whatever goes wrong ends in one line on stderr and exit code 1, never a traceback; a
    signal (SIGINT, SIGTERM, SIGHUP) ends it after removing temporary files, with 128 + signal."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            with signals_raise():
                body(*args, **kwargs)
        except BuildError as error:
            raise Exit(one_line(error), code=1) from None
        except OSError as error:
            raise Exit(one_line(error, _places(args, kwargs)), code=1) from None
        except KeyboardInterrupt as error:
            signum = error.signum if isinstance(error, Interrupted) else 2
            name = error.args[0] if isinstance(error, Interrupted) else "SIGINT"
            raise Exit(
                f"error: interrupted by {name}; partial files removed, run again to finish",
                code=128 + signum,
            ) from None

    return wrapper


def _places(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Path]:
    """The directories a run writes under, by the option that moves them: for the advice on
    an OSError (a full disk, a read-only directory)."""
    c = args[0] if args and isinstance(args[0], Context) else None

    def chosen(key: str) -> Any:
        return kwargs.get(key) or (c.config.get(key) if c is not None else None)

    return {
        "--output-dir": Path(str(chosen("output_dir") or DEFAULTS["output_dir"])),
        "--cache-dir": Path(str(chosen("cache_dir") or default_cache_dir())),
    }


def _spec(c: Context, flags: dict[str, Any]) -> BuildSpec:
    """A flag wins over invoke.yaml and INVOKE_* settings, which win over the defaults."""
    options = {}
    for key, default in DEFAULTS.items():
        given = flags[key]
        unset = given is None or (isinstance(default, bool) and given is False)
        options[key] = c.config.get(key) if unset else given
    return spec_from_options(options)  # resolves --version=latest


def _build_task(name: str, doc: str, extra: dict[str, tuple[Any, str]] | None = None) -> Any:
    """A task taking every build option (flags from DEFAULTS and HELP, declared once there),
    plus `extra` flags: name -> (default, help)."""
    extra = extra or {}

    def body(c: Context, **flags: Any) -> None:
        force = bool(flags.pop("force") or c.config.get("force"))
        if name == "verify" and flags.get("image"):
            # The image's own version counts, not --version: no API call for a "latest".
            verify_any_image(Path(flags["image"]), _spec(c, {**flags, "version": "0.0.0"}))
            return
        run_steps(_spec(c, flags), name, force=force, verify=flags.get("verify", True))

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter("c", positional)]
    parameters += [  # None: "not given", so invoke.yaml and INVOKE_* can fill it in
        inspect.Parameter(key, positional, default=False if isinstance(d, bool) else None)
        for key, d in DEFAULTS.items()
    ]
    parameters.append(inspect.Parameter("force", positional, default=False))
    parameters += [inspect.Parameter(key, positional, default=d) for key, (d, _) in extra.items()]
    body.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = name
    body.__doc__ = doc
    helps = {**HELP, **{key: text for key, (_, text) in extra.items()}}
    return task(name=name, help=helps, default=name == "all", klass=_Task)(_clean_exit(body))


fetch = _build_task("fetch", "Download the release zip and SHA256SUMS into the cache, verified.")
stage = _build_task(
    "stage", "Lay out the image tree: the binary, alloy.service, extension-release."
)
pack = _build_task("pack", "Pack the staged tree into output/alloy-VERSION-ARCH.raw (squashfs).")
checksum = _build_task("checksum", "Write the image's .sha256, checkable with sha256sum -c.")
alias = _build_task(
    "alias", "Link the compat name alloy-VERSION.raw to the image, with its .sha256."
)
verify = _build_task(
    "verify",
    "Check the image as a host takes it: layout, metadata, checksums, real merges.",
    {"image": (None, "check this image file instead (from anywhere)")},
)
all_ = _build_task(
    "all",
    "Build and verify everything: fetch, stage, pack, checksum, alias, verify (the default).",
    {"verify": (True, "run the verify step (--no-verify skips it)")},
)


@task(
    help={
        "version": "only this version (default: every version)",
        "arch": "only this architecture (default: both)",
        "output_dir": HELP["output_dir"],
        "cache_dir": HELP["cache_dir"],
        "compat_arch": HELP["compat_arch"],
        "cache": "also empty the download cache (with --version: only that version's)",
    }
)
@_clean_exit
def clean(
    c, version=None, arch=None, output_dir=None, cache_dir=None, compat_arch=None, cache=False
):
    """Remove built images, checksums and staging (and the download cache with --cache)."""
    # Only the options clean uses: a bad compression in invoke.yaml must not stop a clean-up.
    used = {
        "version": version,
        "arch": arch,
        "output_dir": output_dir,
        "cache_dir": cache_dir,
        "compat_arch": compat_arch,
    }
    options = {key: flag if flag is not None else c.config.get(key) for key, flag in used.items()}
    if version is None:  # every version: a configured one (maybe "latest") is not used
        options["version"] = None
    spec = spec_from_options({**options, "api_url": c.config.get("api_url")})
    version_only = spec.version if version else None
    arch_only = spec.arch.name if arch else None
    if cache:  # before anything goes
        adopt_older_default(spec.cache_dir)
        refuse_untagged(spec.cache_dir)
    cleaned = clean_outputs(spec.output_dir, version_only, arch_only, spec.compat_arch)
    print(f"clean    removed {len(cleaned.removed)} entries from {spec.output_dir}")
    for path, why in cleaned.kept:
        print(f"clean    kept {path}: {why}")
    if cache:
        emptied, kept = clean_cache(spec.cache_dir, version_only)
        print(f"clean    removed {len(emptied)} entries from the download cache {spec.cache_dir}")
        for path in kept:
            print(f"clean    kept {path}: not a file this tool downloads")


SIGN_HELP = {
    "sign_key": "sign SHA256SUMS with this gpg key (id or fingerprint): writes SHA256SUMS.gpg "
    "and the public key, and hosts verify it (Verify=yes); a passphrase comes from "
    f"${signing.PASSPHRASE_ENV} (default: unsigned)",
    "gnupg_home": "the gpg home directory that holds --sign-key (default: gpg's, $GNUPGHOME "
    "or ~/.gnupg)",
}


def _signer(c: Context, sign_key: str | None, gnupg_home: str | None) -> signing.Signer | None:
    """The signing key from the flags, invoke.yaml or INVOKE_SIGN_KEY / INVOKE_GNUPG_HOME."""
    key = sign_key or c.config.get("sign_key")
    home = gnupg_home or c.config.get("gnupg_home")
    if not key:
        if gnupg_home:  # a configured home alone is fine: releases may be signed or not
            raise BuildError("--gnupg-home without --sign-key", "give the key to sign with too")
        return None
    return signing.signer(str(key), directory_option(home, "--gnupg-home") if home else None)


@task(help={"output_dir": HELP["output_dir"], **SIGN_HELP}, klass=_Task)
@_clean_exit
def sums(c, output_dir=None, sign_key=None, gnupg_home=None):
    """Write SHA256SUMS over every image in the output directory (for publishing a release);
    an earlier SHA256SUMS.gpg is signed again with --sign-key, or removed once it no longer
    matches."""
    directory = _output_dir(c, output_dir)
    path, count = publish.write_signed_sums(directory, _signer(c, sign_key, gnupg_home))
    print(f"sums     wrote {path} ({count} images)")


@task(
    help={
        "output_dir": HELP["output_dir"],
        "publish_url": "required: the http(s) URL of the directory the files will be served from, "
        "e.g. https://example.com/alloy/ (or INVOKE_PUBLISH_URL)",
        "update_url": "where hosts' systemd-sysupdate looks for newer images (default: the "
        "publish URL), e.g. https://github.com/OWNER/REPO/releases/latest/download/",
        "allow_http": "allow a plain http:// --publish-url or --update-url to another host than "
        "this machine (default off: refused; hosts would fetch root-run images unencrypted)",
        **SIGN_HELP,
        "health_url": "the URL an updated alloy must answer 200 on within "
        f"{publish.HEALTH_TIMEOUT} s, or the host rolls it back "
        f"(default {publish.DEFAULT_HEALTH_URL}, Alloy's default listen address)",
    },
    klass=_Task,
)
@_clean_exit
def release(
    c,
    output_dir=None,
    publish_url=None,
    update_url=None,
    allow_http=False,
    sign_key=None,
    gnupg_home=None,
    health_url=None,
):
    """Write the files to publish beside the images: SHA256SUMS, index.json, and per architecture
    systemd-sysupdate transfer files and a Flatcar Butane config with its Ignition JSON."""
    url = publish_url or c.config.get("publish_url")
    if not url:
        raise BuildError(
            "--publish-url is required",
            "give the URL the files will be published at, "
            "e.g. invoke release --publish-url=https://example.com/alloy/",
        )
    updates = update_url or c.config.get("update_url")
    plain = flag_value(allow_http or c.config.get("allow_http"), "allow_http")
    signer = _signer(c, sign_key, gnupg_home)
    health = health_url or c.config.get("health_url") or publish.DEFAULT_HEALTH_URL
    publish.release(
        _output_dir(c, output_dir), str(url), updates, plain, signer, health_url=str(health)
    )


def _output_dir(c: Context, flag: str | None) -> Path:
    return directory_option(
        flag if flag is not None else c.config.get("output_dir"), "--output-dir"
    )


ns = Collection(fetch, stage, pack, checksum, alias, verify, all_, clean, sums, release)
ns.configure(
    {
        **DEFAULTS,
        "force": False,
        "publish_url": None,
        "update_url": None,
        "sign_key": None,
        "gnupg_home": None,
        "health_url": None,
    }
)
