#!/bin/sh
# The original tool's entry point, kept for the scripts that call it:
#   docker run --rm -v "${PWD}/output:/output" -e VERSION=1.10.2 -e ARCHITECTURE=arm64 \
#     alloy-sysext-builder /build/build-alloy-sysext.sh
# builds VERSION (default 1.10.2) for ARCHITECTURE (default amd64) with `invoke all`.
set -eu
exec "$(dirname "$0")/docker-entrypoint.sh" all --version="${VERSION:-1.10.2}" --arch="${ARCHITECTURE:-amd64}"
