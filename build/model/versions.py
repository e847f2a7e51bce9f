"""What a version is: X.Y.Z or X.Y.Z-rc.N, or the word that asks for the newest (LATEST)."""

from __future__ import annotations

import re

LATEST = "latest"  # --version=latest: resolved by the pipeline (build/pipeline/steps.py)
# ASCII digits only (\d takes any script's), and few of them: a version is no place for 5000.
_PART = "[0-9]{1,9}"
VERSION_PATTERN = re.compile(rf"{_PART}\.{_PART}\.{_PART}(-rc\.{_PART})?")
