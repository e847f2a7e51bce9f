#!/usr/bin/env bash
# Fetch a real systemd-sysupdate for tests/test_publish.py on hosts whose systemd has none
# (Debian 12's systemd 252 does not ship it): systemd 254 from bookworm-backports, downloaded with
# a private apt state and unpacked under DIR, never installed: the host's systemd is untouched.
#   tests/fetch-sysupdate.sh [DIR]
# DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/alloy-sysext-sysupdate, where the test looks
# (ALLOY_SYSUPDATE=PATH points it at another binary). An unpacked tree there is reused. Needs
# dpkg, apt and Debian's archive keyring, and Debian's package mirror (DEBIAN_MIRROR, default
# http://deb.debian.org/debian). Prints the path of the binary.
set -euo pipefail

SUITE=bookworm-backports
PACKAGES=(systemd systemd-container libsystemd-shared)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() {
    echo "fetch-sysupdate.sh: error: $*" >&2
    exit 1
}

dir=${1:-${XDG_CACHE_HOME:-${HOME:?}/.cache}/alloy-sysext-sysupdate}
binary=$dir/root/lib/systemd/systemd-sysupdate
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi
for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || die "needs $tool (apt, dpkg)"
done
[ -f "$KEYRING" ] || die "no $KEYRING: apt-get install debian-archive-keyring"

mkdir -p "$dir"
work=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/state/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
: >"$work/status"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$work/sources.list"
apt_options=(
    -o "Dir::State=$work/state" -o "Dir::State::status=$work/status"
    -o "Dir::Cache=$work/cache" -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null" -o "APT::Sandbox::User=root"
)
apt-get "${apt_options[@]}" -qq update >&2
version=$(apt-cache "${apt_options[@]}" policy systemd | awk '/Candidate:/ {print $2}')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    die "no systemd in $SUITE at $MIRROR"
fi
(cd "$work/debs" && apt-get "${apt_options[@]}" -qq download "${PACKAGES[@]/%/=$version}" >&2)
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done
[ -x "$work/root/lib/systemd/systemd-sysupdate" ] || die "systemd $version has no systemd-sysupdate"
rm -rf "$dir/root"
mv "$work/root" "$dir/root"
echo "$binary"
