"""Alloy's upstream release, read with hostile input in mind: bounded HTTP downloads (http,
ratelimit), the download cache (cache), the release's zip and SHA256SUMS (upstream, zipmember)
and --version=latest (latest)."""
