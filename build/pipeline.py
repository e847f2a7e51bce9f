"""The chain fetch -> stage -> pack -> checksum -> alias: each step declared as what it makes
from what (a targets.Step) and the action that makes it, run only when out of date."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from . import cache, manifest, release, render
from . import pack as packing
from . import stage as staging
from .checksum import file_sha256, read_checksum, sums_line
from .errors import BuildError
from .fileio import atomic_dir, atomic_path, file_lock, fsync_dir, sweep_temps
from .merge import cannot_merge
from .names import buildinfo_file, checksum_file, lock_file
from .report import human_size, say
from .rule import Step, forget, record, why_out_of_date
from .run import require
from .spec import (
    IMAGE_AUTOSTART,
    IMAGE_BINARY,
    IMAGE_EXTENSION_RELEASE,
    IMAGE_TRUST_KEYS,
    IMAGE_UNIT,
    BuildSpec,
)
from .trustkeys import TrustKeys, read_trust_keys
from .verify import Check, Expectations, checksums_of, verify

STEPS = ("fetch", "stage", "pack", "checksum", "alias", "verify")
# The steps whose files are the build's outputs: with `all` (verified), what they make takes its
# final name only once verify passed on it.
OUTPUT_STEPS = ("pack", "checksum", "alias", "verify")


class Pipeline:
    """Runs the steps for one BuildSpec, each at most once, each after the ones it needs.

    With `deferred` (invoke all, verifying), the outputs go to a pending directory in .staging
    first and replace the earlier ones only once verify passed on them (commit()); until then
    the step records stay as they were, so a failed verify leaves every earlier output as it
    was."""

    def __init__(self, spec: BuildSpec, force: Collection[str] = (), deferred: bool = False):
        unknown = set(force) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown steps: {unknown}")
        self.spec = spec
        self.force = set(force)
        self.done: set[str] = set()
        self.deferred = deferred
        self.pending: dict[Path, Path] = {}  # final name -> the file waiting to take it
        self.unrecorded: list[Step] = []  # steps made into pending files: recorded at commit
        self._cell_lock: contextlib.ExitStack | None = None
        self._output_lock = contextlib.ExitStack()
        self._new_locks: list[Path] = []  # lock files made in .staging, recorded with outputs
        self._output_locked = False
        self._trust_keys: TrustKeys | None = None

    @property
    def pending_dir(self) -> Path:
        return self.spec.work_dir / "pending"

    def current(self, final: Path) -> Path:
        """Where the newest version of the output `final` is: pending, or in place."""
        return self.pending.get(final, final)

    @contextlib.contextmanager
    def output(self, final: Path) -> Iterator[Path]:
        """A temporary path for the output `final`, renamed into place when the block succeeds,
        or, deferred, to a pending file that takes the final name at commit()."""
        if not self.deferred:
            with atomic_path(final) as tmp:
                yield tmp
            self._record(final)
            return
        self._own_dirs(self.pending_dir)
        target = self.pending_dir / final.name
        with atomic_path(target) as tmp:
            yield tmp
        self._record(target)
        self.pending[final] = target

    def _own_dirs(self, directory: Path) -> None:
        """Make `directory` (in the output directory) and its parents, recorded as the tool's."""
        output_dir = self.spec.output_dir
        manifest.make_dirs(output_dir, *directory.relative_to(output_dir).parts)

    def _record(self, *paths: Path) -> None:
        """Files the tool wrote in the output directory, for clean; with the lock files taken
        since the last record (not recorded at once: a full disk must fail the step's own
        write, which names the file that matters)."""
        manifest.record(self.spec.output_dir, [*self._new_locks, *paths])
        self._new_locks.clear()

    def write_output(self, final: Path, text: str) -> None:
        with self.output(final) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def _why(self, step: Step) -> str | None:
        rebuilt = next((source for source in step.sources if source in self.pending), None)
        if rebuilt is not None:
            return f"{rebuilt.name} was rebuilt"
        return why_out_of_date(step)

    def _hold_output_lock(self) -> None:
        """The output directory's lock, shared with other builds and releases (clean waits for
        all of them), and the cell's directory: taken once a step must write there."""
        if self._output_locked:
            return
        spec = self.spec
        self._output_lock.enter_context(manifest.output_dir_lock(spec.output_dir, shared=True))
        self._output_locked = True
        self._own_dirs(spec.work_dir)

    def close(self) -> None:
        self._output_lock.close()
        self._output_locked = False

    def _hold_cell_lock(self) -> None:
        """Deferred: one lock over the cell's outputs from the first pending file to commit(),
        so a concurrent build of the same cell neither shares the pending directory nor
        replaces the outputs meanwhile. Taken only once something must be made."""
        if self._cell_lock is not None:
            return
        stack = contextlib.ExitStack()
        self._own_dirs(self.spec.work_dir)
        stack.enter_context(file_lock(self.spec.work_dir / "outputs.lock"))
        self._new_locks.append(self.spec.work_dir / "outputs.lock")
        self._cell_lock = stack
        shutil.rmtree(self.pending_dir, ignore_errors=True)  # a killed run's, under the lock

    def _run(self, step: Step, action: Callable[[], str]) -> None:
        if step.name in self.done:
            return
        forced = step.name in self.force
        reason = "forced" if forced else self._why(step)
        if reason is not None:
            if step.name != "fetch":
                self._hold_output_lock()
                self._own_dirs(self._lock(step).parent)  # the alias's: per version
            if self.deferred and step.name in OUTPUT_STEPS:
                self._hold_cell_lock()
            # Only a step that must run takes its lock: an unchanged run touches no file. Two
            # builds of the same cell then make each target once; the second waits, then finds
            # it up to date.
            with file_lock(self._lock(step)):
                if step.lock is None:  # the fetch's lock is in the cache, the others here
                    self._new_locks.append(self._lock(step))
                if not forced:  # another build may have made the targets while we waited
                    reason = self._why(step)
                self._make(step, action, reason)
        else:
            self._make(step, action, reason)
        self.done.add(step.name)

    def commit(self) -> None:
        """Give the pending files their final names, then record their steps."""
        for step in self.unrecorded:
            forget(step)  # a crash from here on means "rebuild", never a mismatched record
        for final, pending in self.pending.items():
            os.replace(pending, final)
        if self.pending:
            fsync_dir(self.spec.output_dir)
            moves = [(pending, final) for final, pending in self.pending.items()]
            manifest.moved(self.spec.output_dir, moves)
        for step in self.unrecorded:
            self._record_step(step)
        if self.pending:
            names = ", ".join(final.name for final in self.pending)
            say("install", f"verified, now in {self.spec.output_dir}: {names}")
        self.pending.clear()
        self.unrecorded.clear()

    def release_cell(self) -> None:
        """Drop what was not committed, and the cell's lock."""
        if self._cell_lock is not None:
            shutil.rmtree(self.pending_dir, ignore_errors=True)
            self._cell_lock.close()
            self._cell_lock = None
        self.pending.clear()
        self.unrecorded.clear()

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
        if self.deferred and step.name in OUTPUT_STEPS:
            outcome = action()
            self.unrecorded.append(step)
        else:
            forget(step)
            outcome = action()
            self._record_step(step)
        say(step.name, f"{outcome} ({time.monotonic() - started:.1f} s; {reason})")

    def _record_step(self, step: Step) -> None:
        record(step)
        if step.stamp is not None:
            self._record(step.stamp)

    def fetch(self) -> None:
        spec = self.spec
        step = Step(
            "fetch", targets=(spec.cached_zip, spec.cached_sums), lock=lock_file(spec.cached_zip)
        )
        cache.make_cache_dir(spec.cache_dir)
        # What a failed fetch made goes again: no empty version folder with lock files.
        made = [d for d in (spec.cached_release.parent, spec.cached_release) if not d.exists()]
        try:
            self._run(step, lambda: release.fetch(spec, force=step.name in self.force))
        except BaseException:
            locks = cache.fetch_locks(spec.cached_zip, spec.cached_sums)
            cache.drop_failed_fetch(spec.cached_release, locks, made)
            raise

    def stage(self) -> None:
        spec = self.spec
        if spec.trust_keys is not None:  # refused before any download
            self._trust_keys = read_trust_keys(spec.trust_keys)
        self.fetch()
        template_path = render.unit_template_path(spec)
        template = render.read_template(template_path)
        texts: dict[str, str | bytes] = {
            IMAGE_UNIT: render.unit(spec, template, str(template_path)),
            IMAGE_EXTENSION_RELEASE: render.extension_release(spec),
        }
        if spec.autostart:
            texts[IMAGE_AUTOSTART] = render.autostart_dropin()
        if self._trust_keys is not None:
            texts[IMAGE_TRUST_KEYS] = self._trust_keys.keyring
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
            manifest.record_tree(spec.output_dir, spec.rootfs)  # hashes the binary once more
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
            with self.output(spec.image) as tmp:
                packing.pack(spec.rootfs, tmp, spec.compression, spec.arch)
            tools = packing.tool_versions()
            buildinfo = {
                "image": spec.image.name,
                "version": spec.version,
                "arch": spec.arch.name,
                # What packed it: xz-bcj on arm64 is xz, however it was asked for.
                "compression": packing.used_compression(spec.compression, spec.arch),
                "block_size": packing.BLOCK_SIZE_BYTES,
                "mksquashfs_args": packing.mksquashfs_args(spec.compression, spec.arch),
                "autostart": spec.autostart,
                "config_path": spec.config_path,
                # Primary key fingerprints of --trust-keys: the keys hosts trust next.
                "trust_keys": list(self._trust_keys.fingerprints) if self._trust_keys else [],
                **tools,
                "verify": NOT_VERIFIED,
            }
            self.write_output(buildinfo_file(spec.image), _json(buildinfo))
            size = self.current(spec.image).stat().st_size
            flags = (
                f"{spec.compression}, {packing.BLOCK_SIZE} blocks, mksquashfs {tools['mksquashfs']}"
            )
            return f"packed {self.current(spec.image)}: {human_size(size)} ({flags})"

        self._run(step, action)

    def checksum(self) -> None:
        self.pack()
        image = self.spec.image
        step = Step("checksum", targets=(checksum_file(image),), sources=(image,))

        def action() -> str:
            # Hashed when the image was recorded, unless it changed since.
            sha256 = manifest.regular_sha256(self.current(image)) or file_sha256(
                self.current(image)
            )
            self.write_output(checksum_file(image), sums_line(sha256, image.name))
            return f"wrote {self.current(checksum_file(image))}"

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
            sha256 = read_checksum(self.current(image_checksum))
            how = self._link_or_copy(spec.image, compat)
            self.write_output(checksum_file(compat), sums_line(sha256, compat.name))
            return f"{how} {self.current(compat)}"

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

        def action() -> str:
            # The newest files: pending ones (deferred) where a step just made them.
            expect = Expectations(
                compression=spec.compression,
                names=[spec.image.name, spec.compat_image.name],
                checksums=[(self.current(f), self.current(c)) for f, c in checksums],
                required=[
                    IMAGE_BINARY,
                    IMAGE_UNIT,
                    *([IMAGE_AUTOSTART] if spec.autostart else []),
                    *([IMAGE_TRUST_KEYS] if spec.trust_keys is not None else []),
                ],
            )
            image = self.current(spec.image)
            try:
                checks = verify(image, expect)
            except BuildError as error:
                if self.deferred:
                    raise BuildError(
                        error.message.replace(str(image), f"the new {spec.image}", 1),
                        "the new image was not installed: every earlier output in "
                        f"{spec.output_dir} is as it was",
                    ) from None
                self._record_verify({"result": "failed", "error": error.message})
                raise
            # verify passed, so the .sha256 is the image's: the record names the bytes it vetted.
            sha256 = read_checksum(self.current(checksum_file(spec.image)))
            self._record_verify(verified(checks, sha256))
            skipped = sum(check.status == "skip" for check in checks)
            return f"{image}: {len(checks) - skipped} checks passed, {skipped} skipped"

        self._run(step, action)

    def _record_verify(self, result: dict[str, Any]) -> None:
        """The verify result in the image's build info, which invoke release reads."""
        final = buildinfo_file(self.spec.image)
        try:
            info = json.loads(self.current(final).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BuildError(
                f"cannot read {self.current(final)}: {error}", "rebuild with invoke all --force"
            ) from None
        self.write_output(final, _json({**info, "verify": result}))

    def _link_or_copy(self, source: Path, final: Path) -> str:
        """Same content under a second name: a hard link where the filesystem allows it."""
        with self.output(final) as tmp:
            tmp.unlink()
            try:
                os.link(self.current(source), tmp)
                how = "linked"
            except OSError:
                shutil.copy2(self.current(source), tmp)
                how = "copied"
        return how

    def all(self, verify: bool = True) -> None:
        if not verify:
            self.alias()
            return
        self.deferred = True
        try:
            self.verify()
            self.commit()
        finally:
            self.release_cell()


# What a build info says until verify passed on the image (invoke release refuses it).
NOT_VERIFIED = {"result": "not run", "why": "built without verify (a single step or --no-verify)"}


def verified(checks: list[Check], sha256: str) -> dict[str, Any]:
    """A passed verify of the image with this sha256, and the checks it could not make (never
    counted as passed)."""
    skipped = [f"{check.name}: {check.detail}" for check in checks if check.status == "skip"]
    return {"result": "passed", "sha256": sha256, "skipped": skipped}


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()


def run_steps(spec: BuildSpec, last: str, force: bool, verify: bool = True) -> None:
    """Run the steps up to `last` ("all": every one); with `force`, rebuild `last` (with "all":
    every step) even if up to date."""
    if last not in STEPS and last != "all":
        raise BuildError(f"unknown step {last!r}")
    forced = (STEPS if last == "all" else (last,)) if force else ()
    pipeline = Pipeline(spec, forced)
    try:
        if last == "all":
            pipeline.all(verify=verify)
        else:
            getattr(pipeline, last)()
    finally:
        pipeline.close()


def verify_any_image(image: Path, spec: BuildSpec) -> None:
    """invoke verify --image: an image from anywhere, named as its owner named it."""
    names = [image.name]
    expect = Expectations(
        compression=spec.compression,
        names=names,
        checksums=[pair for pair in checksums_of([image]) if pair[1].exists()],
        # An image from elsewhere may be built with or without --autostart and --trust-keys.
        optional=[IMAGE_AUTOSTART, IMAGE_TRUST_KEYS],
    )
    checks = verify(image, expect)
    skipped = sum(check.status == "skip" for check in checks)
    say("verify", f"{image}: {len(checks) - skipped} checks passed, {skipped} skipped")
