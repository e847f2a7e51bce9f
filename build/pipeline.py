"""The chain fetch -> stage -> pack -> checksum -> alias: each step declared as what it makes
from what (a targets.Step) and the action that makes it, run only when out of date."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path

from . import pack as packing
from . import release, render
from . import stage as staging
from .checksum import file_sha256, read_checksum, write_checksum
from .errors import BuildError
from .merge import cannot_merge
from .report import human_size, say
from .run import require
from .spec import (
    IMAGE_AUTOSTART,
    IMAGE_BINARY,
    IMAGE_EXTENSION_RELEASE,
    IMAGE_UNIT,
    BuildSpec,
    buildinfo_file,
    checksum_file,
)
from .targets import (
    Step,
    atomic_dir,
    atomic_path,
    file_lock,
    forget,
    lock_file,
    record,
    sweep_temps,
    why_out_of_date,
    write_text_atomic,
)
from .verify import Expectations, checksums_of, verify

STEPS = ("fetch", "stage", "pack", "checksum", "alias", "verify")


class Pipeline:
    """Runs the steps for one BuildSpec, each at most once, each after the ones it needs."""

    def __init__(self, spec: BuildSpec, force: Collection[str] = ()) -> None:
        unknown = set(force) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown steps: {unknown}")
        self.spec = spec
        self.force = set(force)
        self.done: set[str] = set()

    def _run(self, step: Step, action: Callable[[], str]) -> None:
        if step.name in self.done:
            return
        forced = step.name in self.force
        reason = "forced" if forced else why_out_of_date(step)
        if reason is not None:
            # Only a step that must run takes its lock: an unchanged run touches no file. Two
            # builds of the same cell then make each target once; the second waits, then finds
            # it up to date.
            with file_lock(self._lock(step)):
                if not forced:  # another build may have made the targets while we waited
                    reason = why_out_of_date(step)
                self._make(step, action, reason)
        else:
            self._make(step, action, reason)
        self.done.add(step.name)

    def _lock(self, step: Step) -> Path:
        """The step's own lock (the fetch's, shared across output directories), else one per
        step and cell beside its record in .staging (the alias's: per version)."""
        if step.lock is not None:
            return step.lock
        return (step.stamp or self.spec.stamp(step.name)).with_suffix(".lock")

    def _make(self, step: Step, action: Callable[[], str], reason: str | None) -> None:
        if reason is None:
            say(step.name, f"{step.targets[0]}: up to date")
            return
        started = time.monotonic()
        # Leftovers of a killed run (under the lock, so no other build's files in use); the
        # fetch's SHA256SUMS has a lock of its own, taken in release.fetch.
        shared = step.targets[1:] if step.name == "fetch" else ()
        for path in (*step.targets, *([step.stamp] if step.stamp else [])):
            if path not in shared:
                sweep_temps(path)
        forget(step)
        outcome = action()
        record(step)
        say(step.name, f"{outcome} ({time.monotonic() - started:.1f} s; {reason})")

    def fetch(self) -> None:
        spec = self.spec
        step = Step(
            "fetch", targets=(spec.cached_zip, spec.cached_sums), lock=lock_file(spec.cached_zip)
        )
        self._run(step, lambda: release.fetch(spec, force=step.name in self.force))

    def stage(self) -> None:
        self.fetch()
        spec = self.spec
        template_path = render.unit_template_path(spec)
        template = render.read_template(template_path)
        texts = {
            IMAGE_UNIT: render.unit(spec, template, str(template_path)),
            IMAGE_EXTENSION_RELEASE: render.extension_release(spec),
        }
        if spec.autostart:
            texts[IMAGE_AUTOSTART] = render.autostart_dropin()
        step = Step(
            "stage",
            targets=(spec.rootfs / IMAGE_BINARY,),
            # Contents, not times: a re-download of the same zip or a checkout that touches the
            # templates changes nothing in the tree.
            params={
                "version": spec.version,
                "arch": spec.arch.name,
                "zip": release.expected_sha256(spec),
                "files": {path: _sha256(text) for path, text in texts.items()},
            },
            stamp=spec.stamp("stage"),
        )

        def action() -> str:
            zip_path = release.verify_cached_zip(spec)
            sweep_temps(spec.rootfs)  # a killed run's half-staged trees (under the stage lock)
            with atomic_dir(spec.rootfs) as tree:
                staging.stage(spec, zip_path, tree, texts)
            return f"staged {spec.rootfs}"

        self._run(step, action)

    def pack(self) -> None:
        spec = self.spec
        step = Step(
            "pack",
            targets=(spec.image, buildinfo_file(spec.image)),
            sources=(spec.rootfs / IMAGE_BINARY, spec.stamp("stage")),
            params={"mksquashfs": packing.mksquashfs_args(spec.compression, spec.arch)},
            stamp=spec.stamp("pack"),
        )
        if "pack" in self.force or why_out_of_date(step) is not None:
            require("mksquashfs")  # before a download and a staging that could not be packed
        self.stage()

        def action() -> str:
            with atomic_path(spec.image) as tmp:
                packing.pack(spec.rootfs, tmp, spec.compression, spec.arch)
            tools = packing.tool_versions()
            buildinfo = {
                "image": spec.image.name,
                "version": spec.version,
                "arch": spec.arch.name,
                "compression": spec.compression,
                "block_size": packing.BLOCK_SIZE_BYTES,
                "mksquashfs_args": packing.mksquashfs_args(spec.compression, spec.arch),
                "autostart": spec.autostart,
                "config_path": spec.config_path,
                **tools,
            }
            write_text_atomic(buildinfo_file(spec.image), json.dumps(buildinfo, indent=2) + "\n")
            size = spec.image.stat().st_size
            flags = (
                f"{spec.compression}, {packing.BLOCK_SIZE} blocks, mksquashfs {tools['mksquashfs']}"
            )
            return f"packed {spec.image}: {human_size(size)} ({flags})"

        self._run(step, action)

    def checksum(self) -> None:
        self.pack()
        image = self.spec.image
        step = Step("checksum", targets=(checksum_file(image),), sources=(image,))

        def action() -> str:
            write_checksum(checksum_file(image), file_sha256(image), image.name)
            return f"wrote {checksum_file(image)}"

        self._run(step, action)

    def alias(self) -> None:
        self.checksum()
        spec = self.spec
        if not spec.owns_compat_name:
            say(
                "alias",
                f"skipped: {spec.compat_image.name} belongs to --compat-arch={spec.compat_arch}",
            )
            self.done.add("alias")
            return
        compat = spec.compat_image
        image_checksum = checksum_file(spec.image)
        step = Step(
            "alias",
            targets=(compat, checksum_file(compat)),
            # Not the image's .sha256: it is always newer than the image, which the link shares.
            sources=(spec.image,),
            # One record per compat name, whichever architecture made it: building another
            # --compat-arch into the same directory takes the name, and the owner takes it back.
            params={"of": spec.image.name},
            stamp=spec.compat_stamp,
        )

        def action() -> str:
            sha256 = read_checksum(image_checksum)
            how = _link_or_copy(spec.image, compat)
            write_checksum(checksum_file(compat), sha256, compat.name)
            return f"{how} {compat}"

        self._run(step, action)

    def verify(self) -> None:
        self.alias()
        spec = self.spec
        shipped = [spec.image, *([spec.compat_image] if spec.owns_compat_name else [])]
        checksums = checksums_of(shipped)
        merge_blocked = cannot_merge(spec.arch.systemd)
        step = Step(
            "verify",
            targets=(spec.stamp("verify"),),
            sources=tuple(path for pair in checksums for path in pair),
            # A check skipped for want of root runs once root is there.
            params={"compression": spec.compression, "merge": merge_blocked or "real"},
            stamp=spec.stamp("verify"),
        )
        expect = Expectations(
            compression=spec.compression,
            names=[spec.image.name, spec.compat_image.name],
            checksums=checksums,
            required=[IMAGE_BINARY, IMAGE_UNIT, *([IMAGE_AUTOSTART] if spec.autostart else [])],
        )

        def action() -> str:
            checks = verify(spec.image, expect)
            skipped = sum(check.status == "skip" for check in checks)
            return f"{spec.image}: {len(checks) - skipped} checks passed, {skipped} skipped"

        self._run(step, action)

    def all(self, verify: bool = True) -> None:
        if verify:
            self.verify()
        else:
            self.alias()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _link_or_copy(source: Path, final: Path) -> str:
    """Same content under a second name: a hard link where the filesystem allows it."""
    with atomic_path(final) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
            how = "linked"
        except OSError:
            shutil.copy2(source, tmp)
            how = "copied"
    return how


def run_steps(spec: BuildSpec, last: str, force: bool, verify: bool = True) -> None:
    """Run the steps up to `last` ("all": every one); with `force`, rebuild `last` (with "all":
    every step) even if up to date."""
    if last not in STEPS and last != "all":
        raise BuildError(f"unknown step {last!r}")
    forced = (STEPS if last == "all" else (last,)) if force else ()
    pipeline = Pipeline(spec, forced)
    if last == "all":
        pipeline.all(verify=verify)
    else:
        getattr(pipeline, last)()


def verify_any_image(image: Path, spec: BuildSpec) -> None:
    """invoke verify --image: an image from anywhere, named as its owner named it."""
    names = [image.name]
    expect = Expectations(
        compression=spec.compression,
        names=names,
        checksums=[pair for pair in checksums_of([image]) if pair[1].exists()],
        optional=[IMAGE_AUTOSTART],  # an image from elsewhere may be built with or without it
    )
    checks = verify(image, expect)
    skipped = sum(check.status == "skip" for check in checks)
    say("verify", f"{image}: {len(checks) - skipped} checks passed, {skipped} skipped")
