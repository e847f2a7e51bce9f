"""Sessions for alloy-sysext: a bare `nox` runs lint and tests; `nox -s build-matrix` builds every
image of the matrix declared in build/config/matrix.py; `nox -s release` builds it and writes
the files to publish; `nox -s e2e` runs the boot test (as root).
`nox --list` explains each session."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nox

# The newest feature used: allow_parallel= (and nox -j), which came in 2026.8.10; default=,
# requires= and tags (on sessions and on nox.param) are older.
nox.needs_version = ">=2026.8.10"

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from build.config.matrix import cells  # noqa: E402
from build.config.matrix import streams as matrix_streams  # noqa: E402
from build.core.errors import BuildError  # noqa: E402
from build.core.tools import packages  # noqa: E402

PYTHONS = ["3.10", "3.11"]  # 3.10: Ubuntu 22.04's, in the container

try:
    MATRIX = cells(os.environ)
except BuildError as error:
    sys.exit(f"noxfile.py: error: {error}")


@nox.session(python=PYTHONS, tags=["test"])
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest; arguments after -- go to pytest)."""
    session.install("-r", "requirements.txt")
    # A real systemd-sysupdate for the release tests, unpacked from Debian's backports (never
    # installed); where that cannot be had, those tests skip and say why, except in CI, where
    # the session fails here.
    in_ci = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
    session.run(
        str(ROOT / "tests/fetch-sysupdate.sh"),
        external=True,
        success_codes=[0] if in_ci else [0, 1],
    )
    # The boot tests are the e2e session's: it builds the roots they need. Tests spend most of
    # their time waiting on the CLI, mksquashfs, merges and servers: one pytest process per CPU
    # (up to 4) cuts the run by some 40% on two CPUs.
    default = ["--ignore=tests/e2e", "--numprocesses=auto", "--maxprocesses=4"]
    session.run("pytest", *(session.posargs or default))


@nox.session(python=False, default=False, tags=["quick"])
def quick(session: nox.Session) -> None:
    """Run the quick tests: no root, no network, minutes (README.md's quick test command).

    The unit and hostile-input tests: pytest --quick leaves out the boot tests, and skips every
    test that needs root or the network as left out of the quick run, with the reason, whoever
    runs it and even under CI=true (tests/needs.py); the rest skip or fail as in nox -s tests.
    Runs in nox's own environment, like e2e: any Python 3.10+ with requirements.txt;
    arguments after -- go to pytest."""
    _require_modules(session, "pytest", "pytest_httpserver", "xdist")
    session.run(
        sys.executable,
        "-m",
        "pytest",
        "--quick",
        "--ignore=tests/e2e",
        "--numprocesses=auto",
        "--maxprocesses=4",
        *session.posargs,
        external=True,
    )


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """Run ruff and mypy on the code, shellcheck on every shell script, hadolint on the
    Dockerfile, actionlint + shellcheck on workflows."""
    session.install("-r", "requirements.txt", "-r", "requirements-lint.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")  # what and how strictly: pyproject.toml's [tool.mypy]
    scripts = shell_scripts()
    plain = [script for script in scripts if Path(script).name not in SHELLCHECK_EXCLUDES]
    session.run("shellcheck", *plain)
    for script in sorted(set(scripts) - set(plain)):
        session.run("shellcheck", f"--exclude={SHELLCHECK_EXCLUDES[Path(script).name]}", script)
    session.run("hadolint", "Dockerfile")
    session.run("actionlint")


# A file is a shell script by its first line: a sh or bash shebang, or, for a file that is only
# sourced, a shellcheck shell= directive.
SHELL_FIRST_LINE = re.compile(
    rb"#!\s*/(?:usr/)?bin/(?:env\s+|busybox\s+)?(?:ba)?sh\b|# shellcheck shell="
)
# Checks skipped from here, for a script whose bytes a release publishes as they are (the
# activation script goes into every Butane/Ignition config): a directive would change them.
SHELLCHECK_EXCLUDES = {
    "alloy-sysupdate-activate": "SC2010",  # ls | grep on the names systemd-sysupdate wrote
}


def checkout_files(root: Path = ROOT) -> list[str]:
    """Every file git has or would add (tracked, or new and not ignored) in the work tree at
    `root`, by path, sorted; outside a git checkout (an unpacked archive), every file but those
    of .git, .nox and virtual environments."""
    if (root / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return sorted(set(listed.split("\0")) - {""})
    skipped = {".git", ".nox", ".venv", "venv"}
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if not skipped & set(path.relative_to(root).parts)
    )


def shell_scripts(root: Path = ROOT) -> list[str]:
    """Every shell script of checkout_files(root), by path."""
    scripts = []
    for name in checkout_files(root):
        path = root / name
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                if SHELL_FIRST_LINE.match(file.readline()):
                    scripts.append(name)
    return scripts


def _require_modules(
    session: nox.Session, *modules: str, requirements: str = "requirements.txt"
) -> None:
    """Sessions with python=False run in nox's own environment: it must hold the requirements."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        session.error(
            f"{', '.join(missing)} not installed for {sys.executable}: "
            f"install nox and the requirements together (pip install -r {requirements})"
        )


@nox.session(name="build-matrix", python=False, default=False, allow_parallel=True, tags=["build"])
@nox.parametrize(
    ("version", "arch"),
    [nox.param(c.version, c.arch, id=c.id, tags=[c.arch, c.version]) for c in MATRIX],
)
def build_matrix(session: nox.Session, version: str, arch: str) -> None:
    """Build one image of the matrix with `invoke all` (arguments after -- go to invoke).

    Runs in nox's own environment: cells share it, the download cache and output/."""
    _require_modules(session, "invoke")
    session.run(
        sys.executable,
        "-m",
        "invoke",
        "all",
        f"--version={version}",
        f"--arch={arch}",
        *_flags(session.posargs, RELEASE_ONLY_FLAGS, keep=False),
        external=True,
    )


# `nox -s release -- ARGS` hands ARGS to the build-matrix cells it runs first, too: each session
# takes the flags its task knows (--output-dir goes to both).
RELEASE_FLAGS = (
    "--output-dir",
    "--publish-url",
    "--update-url",
    "--allow-http",
    "--sign-key",
    "--gnupg-home",
    "--verity-cert",  # the build cells sign with it too
    "--require-signed-images",
)
RELEASE_ONLY_FLAGS = (
    "--publish-url",
    "--update-url",
    "--sign-key",
    "--gnupg-home",
    "--require-signed-images",
)
SWITCHES = ("--allow-http", "--require-signed-images")  # flags that take no value


def _flags(args: list[str], names: tuple[str, ...], keep: bool) -> list[str]:
    """`args` with (keep=True) or without (keep=False) the flags `names`, as --name=value or
    --name value."""
    picked: list[str] = []
    taking = False
    for arg in args:
        if taking:
            taking = False
            if keep:
                picked.append(arg)
            continue
        name = arg.split("=", 1)[0]
        if (name in names) == keep:
            picked.append(arg)
        taking = name in names and "=" not in arg and name not in SWITCHES
    return picked


@nox.session(python=False, default=False, requires=["build-matrix"], tags=["release"])
def release(session: nox.Session) -> None:
    """Build every cell of the matrix, then write the files to publish with `invoke release`.

    Those files (SHA256SUMS, index.json, sysupdate transfers, Butane/Ignition) are written once,
    after all the cells: the default feed, then each minor line's stream (streams/X.Y/).

    Give the publish URL after --: nox -s release -- --publish-url=https://example.com/alloy/"""
    _require_modules(session, "invoke")
    command = [sys.executable, "-m", "invoke", "release"]
    command += _flags(session.posargs, RELEASE_FLAGS, keep=True)
    session.run(*command, external=True)
    for stream in matrix_streams(MATRIX):
        session.run(*command, f"--stream={stream}", external=True)


# The Debian roots the boot tests boot, built once by tests/e2e/make-root.sh and reused:
# bookworm (systemd 252) for the merge tests, trixie (systemd 257) for the fleet-update tests,
# testing (forky: systemd 262 when added, which reads the .pgp keyring first, as Flatcar
# Beta/Alpha's 260 does) for the signed-update test too.
E2E_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alloy-sysext-e2e"
E2E_ROOT = os.environ.get("ALLOY_E2E_ROOT") or str(E2E_CACHE / "bookworm")
E2E_TRIXIE_ROOT = os.environ.get("ALLOY_E2E_TRIXIE_ROOT") or str(E2E_CACHE / "trixie")
E2E_TESTING_ROOT = os.environ.get("ALLOY_E2E_TESTING_ROOT") or str(E2E_CACHE / "testing")
# The emulated arm64 machine (tests/e2e/make-arm64-machine.sh): a Debian 12 arm64 root, Debian's
# arm64 kernel and a small initramfs, booted by qemu-system-aarch64 (test_arm64_boot.py).
E2E_ARM64_MACHINE = os.environ.get("ALLOY_E2E_ARM64_MACHINE") or str(E2E_CACHE / "arm64")
# The emulated x86-64 machine (tests/e2e/make-x86-machine.sh): Debian 13's amd64 kernel, which has
# dm_verity, and a small initramfs, booted by qemu-system-x86_64 on a disk of the trixie root
# (test_verity_boot.py: signed DDIs under the strict image policy).
E2E_X86_MACHINE = os.environ.get("ALLOY_E2E_X86_MACHINE") or str(E2E_CACHE / "x86-64")
E2E_TOOLS = (
    "debootstrap",
    "systemd-nspawn",
    "unshare",
    "gcc",
    "mksquashfs",
    "mkfs.erofs",
    "dump.erofs",
    "openssl",
    "qemu-system-aarch64",
    "qemu-system-x86_64",
    "aarch64-linux-gnu-gcc",
    "mke2fs",
    "cpio",
)


@nox.session(python=False, default=False, tags=["e2e"])
def e2e(session: nox.Session) -> None:
    """Run the boot tests (as root): Debian containers and emulated arm64 and x86-64 machines.

    Debian 12 (systemd 252) in nspawn merges a built image (squashfs; EROFS on 252 and 257) and
    runs alloy.service; Debian 13 (systemd 257), provisioned with the Ignition config, updates
    alloy with systemd-sysupdate from a directory published on 127.0.0.1, and takes only signed
    releases when they are signed; Debian testing (systemd 258+) takes a signed one too, and
    through 262's stock update unit rolls one back, keeping every image through its cleanup; an
    emulated arm64 Debian 12 (qemu-system-aarch64) merges an arm64 image and runs alloy.service;
    an emulated x86-64 Debian 13 (qemu-system-x86_64, a kernel with dm-verity) under the strict
    image policy merges a signed DDI and refuses another key's, unsigned and tampered ones.

    Builds the Debian roots and the machines once (tests/e2e/make-root.sh,
    tests/e2e/make-arm64-machine.sh, make-x86-machine.sh); arguments after -- go to pytest.
    Runs in nox's own environment, like build-matrix: any Python 3.10+ with requirements.txt."""
    # Here a missing tool fails the session: in the test run it would only skip the test.
    if os.geteuid() != 0:
        session.error("the boot test needs root (debootstrap, mount namespaces, systemd-nspawn)")
    missing = [tool for tool in E2E_TOOLS if not shutil.which(tool)]
    if missing:
        session.error(f"missing {', '.join(missing)}: apt-get install {packages(missing)}")
    _require_modules(session, "pytest", "invoke")
    session.run(str(ROOT / "tests/e2e/make-root.sh"), E2E_ROOT, external=True)
    for suite, root in (("trixie", E2E_TRIXIE_ROOT), ("testing", E2E_TESTING_ROOT)):
        session.run(str(ROOT / "tests/e2e/make-root.sh"), f"--suite={suite}", root, external=True)
    session.run(str(ROOT / "tests/e2e/make-arm64-machine.sh"), E2E_ARM64_MACHINE, external=True)
    session.run(str(ROOT / "tests/e2e/make-x86-machine.sh"), E2E_X86_MACHINE, external=True)
    session.run(
        sys.executable,
        "-m",
        "pytest",
        "tests/e2e",
        *session.posargs,
        env={
            "ALLOY_E2E_ROOT": E2E_ROOT,
            "ALLOY_E2E_TRIXIE_ROOT": E2E_TRIXIE_ROOT,
            "ALLOY_E2E_TESTING_ROOT": E2E_TESTING_ROOT,
            "ALLOY_E2E_ARM64_MACHINE": E2E_ARM64_MACHINE,
            "ALLOY_E2E_X86_MACHINE": E2E_X86_MACHINE,
        },
        external=True,
    )


@nox.session(name="differential-deep", python=False, default=False, tags=["differential"])
def differential_deep(session: nox.Session) -> None:
    """Hold many more mutated images against the kernel's view of them (as root): -- COUNT SEED.

    tests/test_differential.py with COUNT mutants per generator (default 2000) from SEED
    (default: a new one each run, printed; give it again to repeat a run). Mutants are mounted
    on this machine's kernel, as in nox -s tests; not part of .ci/run.
    Runs in nox's own environment, like e2e: any Python 3.10+ with requirements.txt."""
    if os.geteuid() != 0:
        session.error("the differential suite needs root (loop mounts in a private namespace)")
    _require_modules(session, "pytest")
    count, seed = [*session.posargs, "", ""][:2]
    count = count or os.environ.get("ALLOY_DIFFERENTIAL_COUNT") or "2000"
    seed = seed or os.environ.get("ALLOY_DIFFERENTIAL_SEED") or str(random.randrange(1 << 32))
    if not (count.isdigit() and seed.isdigit() and int(count) > 0):
        session.error(f"COUNT and SEED are whole numbers (COUNT > 0), not {count!r} {seed!r}")
    session.log(f"{count} mutants per generator from seed {seed}")
    session.run(
        sys.executable,
        "-m",
        "pytest",
        "tests/test_differential.py",
        "-k",
        "every_mutant",
        "-p",
        "no:cacheprovider",
        "-rA",
        env={"ALLOY_DIFFERENTIAL_COUNT": count, "ALLOY_DIFFERENTIAL_SEED": seed},
        external=True,
    )


@nox.session(python=False, default=False, tags=["bench"])
def bench(session: nox.Session) -> None:
    """Measure size, speed and memory against the original script; write docs/benchmarks.md.

    Prints the table too. Arguments after -- go to benchmarks/bench.py, e.g. --runs=5; --large
    adds a 236 MB stand-in; --update-only measures only the bytes per update (a real
    systemd-sysupdate update of each image format and transport, as root; --quick: a small
    stand-in, printed only; see benchmarks/update.py); --frontier-only maps the cold build's
    frontier only (every mksquashfs xz setting's bytes and pack seconds against the original
    script's, plotted to docs/frontier.png; see benchmarks/frontier_run.py); --overlap-only
    measures only what overlapping the stage step with the download, or mksquashfs fed from a
    pipe, could save in a cold build (see benchmarks/overlap.py).

    Fetches Debian's packer binary once with apt-get download as the stand-in for Alloy.
    Runs in nox's own environment, like e2e: it holds requirements-bench.txt (matplotlib)."""
    _require_modules(session, "invoke", "matplotlib", requirements="requirements-bench.txt")
    session.run(sys.executable, str(ROOT / "benchmarks/bench.py"), *session.posargs, external=True)


@nox.session(name="bench-hostile", python=False, default=False, tags=["bench"])
def bench_hostile(session: nox.Session) -> None:
    """Time invoke verify --image on every hostile test image (as root); the worst wall time
    and peak RSS go to docs/benchmarks.md. Arguments after -- go to benchmarks/hostile.py."""
    _require_modules(session, "invoke")
    session.run(
        sys.executable, str(ROOT / "benchmarks/hostile.py"), *session.posargs, external=True
    )
