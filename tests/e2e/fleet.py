"""The Fleet of the update tests (tests/e2e/test_update.py explains it; the signed and
rotation tests build on it): a published directory per step, served on the host's 127.0.0.1,
and the host provisioned by step 0's Ignition config, booted in systemd-nspawn, whose
systemd-sysupdate.service takes each next step."""

from __future__ import annotations

import http.server
import platform
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from build.release import host as layout
from tests.conftest import Invoke, Release
from tests.e2e.conftest import HERE, StandIn, publish_stand_in
from tests.e2e.container import Boot, boot
from tests.e2e.ignition import apply

FLEET_MARKS = [  # what booting a Fleet needs
    pytest.mark.root,
    pytest.mark.needs("systemd-nspawn", "unshare", "gcc", root="booting a container"),
    pytest.mark.skipif(
        platform.machine() != "x86_64", reason="the stand-in and the image are x86-64 (amd64)"
    ),
    pytest.mark.skipif(
        not Path("/dev/loop-control").exists(), reason="no /dev/loop-control (loop driver)"
    ),
]

A, B, C, D = "5.5.5", "5.5.6", "5.5.7", "5.5.8"
LINK_DIR = layout.EXTENSIONS_DIR
SERVE_FILE = "serve"  # in the shared directory: which step's directory the host serves


def image(version: str) -> str:
    return f"alloy-{version}-amd64.raw"


def version_line(version: str) -> str:
    return f"alloy, version v{version} (stand-in for the alloy-sysext boot test)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Published(http.server.SimpleHTTPRequestHandler):
    """Serves step DIR/serve's directory of `steps`, read at each request."""

    steps: Path
    shared: Path
    requests: list[str]

    def translate_path(self, path: str) -> str:
        serve = (self.shared / SERVE_FILE).read_text().strip()
        self.directory = str(self.steps / serve)
        return super().translate_path(path)

    def log_message(self, format: str, *args: object) -> None:
        self.requests.append(f"{self.path} {args[1] if len(args) > 1 else ''}")


@dataclass
class Server:
    url: str
    requests: list[str]


@pytest.fixture
def published_server(tmp_path: Path) -> Iterator[Server]:
    handler: type[_Published] = type(
        "Handler",
        (_Published,),
        {"steps": tmp_path / "steps", "shared": tmp_path / "shared", "requests": []},
    )
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / SERVE_FILE).write_text("0\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{server.server_address[1]}/", handler.requests)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Fleet:
    """What a test publishes and boots."""

    invoke: Invoke
    tmp_path: Path
    server: Server
    alloy_port: int  # what alloy listens on (the host's: the container shares its network)
    release_options: tuple[str, ...] = ()  # a signed variant adds its key here

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.alloy_port}/-/ready"

    @property
    def steps(self) -> Path:
        return self.tmp_path / "steps"

    def publish(self, steps: list[list[str]]) -> None:
        """Step N's directory: `invoke all` of each version in steps[N] (cumulative), then
        `invoke release` over them, as a publisher would; a snapshot of the output directory."""
        self.publish_steps(
            [([(v, ()) for v in versions], self.release_options) for versions in steps]
        )

    def publish_steps(
        self,
        steps: list[tuple[list[tuple[str, tuple[str, ...]]], tuple[str, ...]]],
        env: dict[str, str] | None = None,
    ) -> None:
        """Step N: each (version, its `invoke all` flags) built once, the first time a step
        holds it, then `invoke release` with the step's own flags (and `env`) over every image
        built so far; a snapshot of the output directory."""
        output = self.tmp_path / "output"
        built: set[str] = set()
        for number, (versions, release_flags) in enumerate(steps):
            for version, flags in versions:
                if version not in built:
                    result = self.invoke(
                        "all", f"--version={version}", f"--output-dir={output}", *flags
                    )
                    assert result.returncode == 0, result.stderr
                    built.add(version)
            result = self.invoke(
                "release",
                f"--output-dir={output}",
                f"--publish-url={self.server.url}",
                f"--health-url={self.health_url}",
                *release_flags,
                env=env,
            )
            assert result.returncode == 0, result.stderr
            shutil.copytree(
                output, self.steps / str(number), ignore=shutil.ignore_patterns(".staging")
            )

    def fetch(self, url: str) -> bytes:
        assert url.startswith(self.server.url), url
        return (self.steps / "0" / url.removeprefix(self.server.url)).read_bytes()

    def boot(
        self,
        root: Path,
        updates: list[str],
        report_time: Callable[[str], None],
        host_files: dict[str, bytes] | None = None,
        config: str = "flatcar/alloy-amd64.ign",
    ) -> Boot:
        """Boot the host provisioned by step 0's `config` (a stream's is under streams/X.Y/);
        then, for each of `updates` (the Nth is step N's directory, "N stopped": with alloy
        stopped first, "N transfers=K": with step K's transfers put in place first, as an admin
        would), start systemd-sysupdate.service. `host_files` (path: bytes) are on the host
        before it is provisioned."""
        seed = self.tmp_path / "seed"
        seed.mkdir()
        for path, data in (host_files or {}).items():
            (seed / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (seed / path.lstrip("/")).write_bytes(data)
        apply(self.steps / "0" / config, seed, root, self.fetch)
        (seed / "etc/default").mkdir(parents=True, exist_ok=True)
        (seed / "etc/default/alloy").write_text(
            f'CUSTOM_ARGS="--server.http.listen-addr=127.0.0.1:{self.alloy_port}"\n'
        )
        (seed / "etc/alloy-e2e").mkdir(parents=True)
        shutil.copy(HERE / "check-update.sh", seed / "etc/alloy-e2e/check.sh")
        (seed / "etc/alloy-e2e/ready-url").write_text(self.health_url + "\n")
        units = seed / "etc/systemd/system"
        dropins = units / "systemd-sysupdate.service.d"
        dropins.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "sysupdate-in-container.conf", dropins / "zz-e2e-in-container.conf")
        timeout = 60 + 150 * len(updates)
        check = (HERE / "alloy-e2e-check.service").read_text()
        check = check.replace("TimeoutStartSec=100", f"TimeoutStartSec={timeout}")
        (units / "alloy-e2e-check.service").write_text(check)
        (units / "multi-user.target.wants").mkdir(parents=True, exist_ok=True)
        (units / "multi-user.target.wants/alloy-e2e-check.service").symlink_to(
            "/etc/systemd/system/alloy-e2e-check.service"
        )
        shared = self.tmp_path / "shared"
        for step in {how.split("=")[1] for how in updates if "transfers=" in how}:
            transfers = shared / f"transfers-{step}"
            transfers.mkdir()
            for name in layout.TRANSFER_NAMES:
                shutil.copy(self.steps / step / f"sysupdate/amd64/{name}", transfers / name)
        (shared / "steps").write_text("".join(f"{step}\n" for step in updates))
        booted = boot(root, seed, shared, timeout=timeout + 60, host_network=True)
        msecs = [booted.results.get(f"update_msec_{n}", "?") for n in range(1, len(updates) + 1)]
        usec = booted.results.get("boot_usec", "")
        systemd = booted.results.get("systemd", "systemd ?").split(" (")[0]
        to_target = f", to multi-user.target {int(usec) / 1000:.0f} ms" if usec.isdigit() else ""
        report_time(
            f"{systemd}{to_target}; boot+{len(updates)} updates+shutdown {booted.seconds:.1f} s "
            f"(each update: {', '.join(msecs)} ms)"
        )
        assert booted.returncode is not None, self.report(booted)
        assert booted.results.get("finished") == "yes", self.report(booted)
        return booted

    def report(self, booted: Boot) -> str:
        journal = "\n".join(booted.text("sysupdate.journal").splitlines()[-60:])
        requests = "\n".join(self.server.requests[-40:])
        return (
            f"{booted.report()}\n--- sysupdate.journal:\n{journal}\n"
            f"--- requests to the published directory:\n{requests}"
        )


@pytest.fixture
def fleet(
    invoke: Invoke, tmp_path: Path, release: Release, stand_in: StandIn, published_server: Server
) -> Fleet:
    publish_stand_in(release, A, stand_in(A))
    return Fleet(invoke, tmp_path, published_server, free_port())


def running(booted: Boot, step: int) -> dict[str, str | None]:
    keys = ("link", "version", "active", "ready")
    return {key: booted.results.get(f"{key}_{step}") for key in keys}


def runs(version: str) -> dict[str, str]:
    return {
        "link": f"{LINK_DIR}/{image(version)}",
        "version": version_line(version),
        "active": "active/running",
        "ready": "200",
    }
