"""The layers of build/, lowest first: a module imports only from its own package or from a
package of a lower layer. Written once here, for tests/test_layout.py and the README's layout."""

from __future__ import annotations

# (layer, package under build/): build/alloy.py is a module on its own, the seam for Alloy.
LAYERS: tuple[tuple[int, str], ...] = (
    (0, "alloy"),
    (1, "core"),
    (2, "model"),
    (3, "read"),
    (4, "formats"),
    (5, "config"),
    (6, "keys"),
    (6, "fetch"),
    (7, "image"),
    (8, "verify"),
    (9, "release"),
    (10, "pipeline"),
)
LAYER_OF: dict[str, int] = {package: layer for layer, package in LAYERS}
MAX_MODULES = 12  # per folder: more and a folder no longer says what it holds
