"""The files `invoke release` writes, as the tests read them back: the publish URL they release
to, the Ignition config and its keyring unit, a host's copy of our transfer file, and a
systemd-sysupdate to run it with where one can be had."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from build.release import host as layout

PUBLISH_URL = "https://downloads.example.com/alloy/"
HOST_KEY = layout.HOST_RELEASE_KEY
PUBRING_UNIT = layout.PUBRING_UNIT


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.lstat().st_mtime_ns, path.lstat().st_size)
        for path in root.rglob("*")
    }


def ignition(output: Path, arch: str = "amd64") -> Any:
    return json.loads((output / f"flatcar/alloy-{arch}.ign").read_text())


def unit_script(contents: str) -> str:
    """The shell script of the unit's ExecStart, as systemd hands it to sh -ec."""
    joined = re.sub(r"\\\n", " ", contents)
    [line] = [line for line in joined.splitlines() if line.startswith("ExecStart=")]
    assert line.startswith("ExecStart=/bin/sh -ec '") and line.endswith("'")
    return line.removeprefix("ExecStart=/bin/sh -ec '")[:-1].replace("$$", "$")


def find_sysupdate() -> tuple[Path, dict[str, str]] | None:
    """A systemd-sysupdate binary and the environment it needs: the host's, or one unpacked by
    tests/fetch-sysupdate.sh (with its own libsystemd-shared and systemd-pull)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    candidates = [
        os.environ.get("ALLOY_SYSUPDATE"),
        "/usr/lib/systemd/systemd-sysupdate",
        "/lib/systemd/systemd-sysupdate",
        str(cache / "alloy-sysext-sysupdate/root/lib/systemd/systemd-sysupdate"),
    ]
    for candidate in filter(None, candidates):
        binary = Path(candidate)
        if not os.access(binary, os.X_OK):
            continue
        env = {}
        root = binary.parents[2]
        if not str(binary).startswith(("/usr/lib/", "/lib/")):  # an unpacked tree
            libraries = sorted(root.glob("usr/lib/*/systemd"))
            if libraries:
                env["LD_LIBRARY_PATH"] = str(libraries[0])
            if (binary.parent / "systemd-pull").exists():
                env["SYSTEMD_PULL_PATH"] = str(binary.parent / "systemd-pull")
        return binary, env
    return None


SYSUPDATE = find_sysupdate()  # the `needs_sysupdate` fixture (tests/conftest.py) skips without


def host_transfer(published: Path, arch: str, host: Path) -> Path:
    """Our transfer file as is, but with the target under `host` rather than in / of a host."""
    text = (published / f"sysupdate/{arch}/alloy.transfer").read_text()
    images, link = layout.EXTENSIONS_DIR, layout.CURRENT_SYMLINK
    text = text.replace(f"Path={images}\n", f"Path={host}{images}\n")
    text = text.replace(f"CurrentSymlink={link}\n", f"CurrentSymlink={host}{link}\n")
    definitions = host / f"etc/sysupdate.alloy.d.{arch}"
    definitions.mkdir(parents=True)
    (definitions / "alloy.conf").write_text(text)  # systemd 254 and older read only *.conf
    (host / images.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (host / link.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    return definitions


def sums(directory: Path) -> dict[str, str]:
    lines = (directory / "SHA256SUMS").read_text().splitlines()
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}


def serve(httpserver: HTTPServer, directory: Path, prefix: str = "/pub/") -> str:
    """Serve the images and SHA256SUMS of `directory`, as they are at each request, as a web
    server would; return their URL."""

    def respond(request: Request) -> Response:
        name = request.path.removeprefix(prefix)
        path = directory / name
        if "/" in name or not (name == "SHA256SUMS" or name.endswith(".raw")) or not path.is_file():
            return Response("not found", status=404)
        return Response(path.read_bytes(), content_type="application/octet-stream")

    httpserver.expect_request(re.compile(f"^{re.escape(prefix)}")).respond_with_handler(respond)
    return httpserver.url_for(prefix)


def sysupdate(definitions: Path, *args: str) -> subprocess.CompletedProcess:
    assert SYSUPDATE is not None
    binary, env = SYSUPDATE
    return subprocess.run(
        [str(binary), f"--definitions={definitions}", "--no-pager", *args],
        env={**os.environ, **env, "SYSTEMD_COLORS": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def listed(definitions: Path) -> dict[str, tuple[bool, bool]]:
    """version -> (installed, available), from systemd-sysupdate --json=short list."""
    result = sysupdate(definitions, "--json=short", "list")
    assert result.returncode == 0, result.stderr
    return {
        entry["version"]: (entry["installed"].strip() != "", entry["available"].strip() != "")
        for entry in json.loads(result.stdout)
    }
