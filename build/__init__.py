"""The alloy-sysext build: fetch Alloy's release, stage the tree, pack the image, checksum it,
give it its compat name, verify it, and publish releases for fleets; one package per phase,
README.md "Contributing" draws them (tests/readme_layout.py)."""
