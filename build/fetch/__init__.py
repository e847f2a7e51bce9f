"""Alloy's upstream release, read with hostile input in mind: bounded HTTP downloads (http,
ratelimit), the download cache (cache), the release's zip and SHA256SUMS (upstream, zipmember;
the zip's expected sha256 as cached, read by every build without the downloader: releasesums)
and --version=latest (latest)."""
