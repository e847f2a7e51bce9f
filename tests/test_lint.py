"""What `nox -s lint` checks: shellcheck runs on every shell script, found by its first line
(noxfile.shell_scripts), so a script added or moved is checked without a list to update."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.noxfile_module import load_noxfile


def test_every_shell_script_and_nothing_else_is_found(tmp_path: Path) -> None:
    files = {
        "run": "#!/usr/bin/env bash\nset -eu\n",
        "tests/e2e/check.sh": "#!/bin/bash\n",
        "templates/activate": "#!/bin/sh\n# rendered\n",
        "tests/e2e/cached-dir.sh": "# shellcheck shell=bash\nf() { :; }\n",
        "templates/verify-signed": "# SHA256SUMS is signed\nVerify=yes\n",
        "tool.py": "#!/usr/bin/env python3\n",
        "other": "#!/bin/shx\n",
        "README.md": "# Scripts\n#!/bin/sh, on a later line\n",
        "ignored.sh": "#!/bin/sh\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / ".gitignore").write_text("ignored.sh\n")
    (tmp_path / "link.sh").symlink_to("run")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        ["git", "add", "run", "tests", "templates/verify-signed"], cwd=tmp_path, check=True
    )
    # Tracked, or new (templates/activate is not added yet) and not ignored.
    assert load_noxfile().shell_scripts(tmp_path) == [
        "run",
        "templates/activate",
        "tests/e2e/cached-dir.sh",
        "tests/e2e/check.sh",
    ]


def test_this_repository_s_scripts_are_found() -> None:
    found = load_noxfile().shell_scripts()
    for script in (
        ".ci/run",
        "docker-entrypoint.sh",
        "build-alloy-sysext.sh",
        "tests/fetch-sysupdate.sh",
        "tests/e2e/make-root.sh",
        "tests/e2e/cached-dir.sh",
        "tests/e2e/init-machine.sh",  # #!/bin/busybox sh
    ):
        assert script in found
    assert any(script.endswith("/alloy-sysupdate-activate") for script in found)
