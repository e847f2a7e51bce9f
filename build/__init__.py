"""The alloy-sysext build pipeline: fetch, stage, pack, checksum, alias."""
