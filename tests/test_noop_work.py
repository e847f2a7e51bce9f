"""The work of an up-to-date `invoke all` (issue 26), counted, not timed: the modules it imports
beyond `invoke --list`'s, the files it opens and how many bytes they hold, the processes it
starts and the files it changes. It should cost start-up plus reading the step records and a
few stats; these counts keep it so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from build.model.rule import Step, record
from build.verify import machine, stepinputs
from tests.conftest import INVOKE_CLI, Invoke
from tests.specs import spec_of

# Runs invoke as `python -m invoke` does, with an audit hook that notes every module imported,
# file opened, process started and file changed, written as JSON to argv[1] at exit.
_COUNTED = r"""
import atexit, json, os, runpy, sys

out, seen = sys.argv[1], {"open": [], "process": [], "change": []}
CHANGES = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.utime",
           "os.truncate", "os.link", "os.symlink", "shutil.rmtree", "fcntl.flock"}
PROCESSES = {"subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "os.system"}

def hook(event, args):
    if seen is None:
        return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2] or 0
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT
        writes = (mode and any(c in str(mode) for c in "wax+")) or flags & writing
        seen["change" if writes else "open"].append(os.fsdecode(args[0]))
    elif event in CHANGES:
        seen["change"].append(f"{event} {args[0]!r}")
    elif event in PROCESSES:
        seen["process"].append(f"{event} {args!r}")

def dump():
    global seen
    found, seen = seen, None
    found["modules"] = sorted(sys.modules)
    with open(out, "w") as stream:
        json.dump(found, stream)

sys.addaudithook(hook)
atexit.register(dump)
sys.argv = ["invoke", *sys.argv[2:]]
runpy.run_module("invoke", run_name="__main__", alter_sys=True)
"""

# What an up-to-date `invoke all` may import beyond `invoke --list`: the step table, the runner,
# and the small modules that decide "up to date" from records and stats. Not a downloader, a
# zip or image reader, a packer, a signer or a checker: those come with a step that must run.
ALLOWED = {
    "build.config.spec",
    "build.core.sums",
    "build.fetch",
    "build.fetch.cache",
    "build.fetch.releasesums",
    "build.image",
    "build.image.alias",
    "build.image.checksum",
    "build.image.content",
    "build.image.packrecipe",
    "build.image.render",
    "build.image.stagedfiles",
    "build.model.manifest",
    "build.model.rule",
    "build.pipeline",
    "build.pipeline.runner",
    "build.pipeline.steps",
    "build.verify",
    "build.verify.machine",
    "build.verify.stepinputs",
}
# Files it may open: the step records, the cached SHA256SUMS (the zip's sha256 is the stage
# step's parameter), the templates it renders (contents, not times: a checkout that touches them
# rebuilds nothing), the kernel's filesystem list, the cache's tag.
READ_LIMIT = 64 * 1024  # bytes, all of them together: no image, zip or binary is read


def _counted(invoke_env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    out = cwd / "counted.json"
    result = subprocess.run(
        [INVOKE_CLI[0], "-c", _COUNTED, str(out), *INVOKE_CLI[3:], *args],
        cwd=cwd,
        env=invoke_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counted: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    counted["stdout"] = result.stdout
    return counted


def _data_files(opened: list[str], cwd: Path) -> set[Path]:
    """The files opened that are not Python's own (modules, the interpreter's libraries)."""
    code = (".py", ".pyc", ".so", ".pth", ".typed")
    paths = {cwd / name for name in opened if not name.endswith(code)}
    return {path for path in paths if "site-packages" not in str(path) and path.is_file()}


def test_an_up_to_date_build_reads_records_and_stats_only(
    invoke: Invoke, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    built = invoke("all")
    assert built.returncode == 0, built.stdout + built.stderr
    listing = _counted(cli_env, tmp_path, "--list")
    noop = _counted(cli_env, tmp_path, "all")
    assert noop["stdout"].count("up to date") == 6, noop["stdout"]

    extra = set(noop["modules"]) - set(listing["modules"])
    assert sorted(extra - ALLOWED) == [], "imported by an up-to-date build beyond --list"
    assert noop["process"] == []  # no tool, no probe
    output, cache = tmp_path / "output", tmp_path / "cache"
    # Only the cache directory's mkdir, which finds it there (fetch's guard); Python's own .pyc
    # writes are not the build's (a stale one under a __pycache__ it cannot write is tried again
    # every run, e.g. after `sudo nox` made it root's).
    changes = [c for c in noop["change"] if "os.mkdir" not in c and "__pycache__" not in c]
    assert changes == []

    read = _data_files(noop["open"], tmp_path)
    outputs = {path for path in read if path.is_relative_to(output)}
    assert {path.suffix for path in outputs} == {".stamp"}  # no image, .sha256 or manifest
    cached = {path.name for path in read if path.is_relative_to(cache)}
    # Not the zip; the tag tells whether an older version's default cache is to be adopted.
    assert cached == {"SHA256SUMS", "CACHEDIR.TAG"}
    assert sum(path.stat().st_size for path in read) <= READ_LIMIT


def test_the_namespace_is_probed_only_while_no_record_says_the_kernel_view_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify's "kernel view" parameter: a record of a real run stays real while a stat finds
    the means (no `unshare -m` each run); a record of a refused namespace asks again, so the
    check runs once the machine allows it."""
    spec = spec_of({"output_dir": str(tmp_path / "output")})
    probes: list[str] = []
    refused: list[str | None] = ["unshare: Operation not permitted"]

    def probe() -> str | None:
        probes.append("unshare -m true")
        return refused[0]

    monkeypatch.setattr(machine, "namespace_refused", probe)
    monkeypatch.setattr(machine.os, "geteuid", lambda: 0)  # a stat finds the means
    monkeypatch.setattr(machine.shutil, "which", lambda tool: "/x")
    monkeypatch.setattr(machine, "kernel_has", lambda fstype: True)
    monkeypatch.setattr(machine, "LOOP_CONTROL", Path("/"))
    spec.stamp("verify").parent.mkdir(parents=True)
    first = stepinputs.params(spec)  # no record: probed
    assert (
        first["kernel view"] == "no private mount namespace here (unshare: Operation not permitted)"
    )
    record(Step("verify", targets=(), params=first, stamp=spec.stamp("verify")))
    refused[0] = None  # the machine now allows it: the record's refusal is asked again
    assert stepinputs.params(spec)["kernel view"] == "real"
    assert len(probes) == 2
    record(Step("verify", targets=(), params=stepinputs.params(spec), stamp=spec.stamp("verify")))
    probes.clear()
    assert stepinputs.params(spec)["kernel view"] == "real"  # recorded real: no probe
    assert probes == []


@pytest.mark.parametrize("off", [None, "PYTHONDONTWRITEBYTECODE"])
def test_a_run_keeps_the_compiled_modules_unless_python_is_told_not_to(
    tmp_path: Path, cli_env: dict[str, str], off: str | None
) -> None:
    """invoke turns .pyc writing off; tasks.py turns it back on, so the next run does not
    compile every build.* module again, unless -B or PYTHONDONTWRITEBYTECODE says not to."""
    prefix = tmp_path / "pycache"  # where the .pyc files go, instead of beside the sources
    env = {**cli_env, "PYTHONPYCACHEPREFIX": str(prefix)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if off is not None:
        env[off] = "1"
    listed = subprocess.run(
        [*INVOKE_CLI, "--list"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    compiled = {path.name.split(".")[0] for path in prefix.rglob("*.pyc")}
    if off is None:
        assert {"options", "errors", "report"} <= compiled  # tasks.py's own imports
    else:
        assert compiled == set()
