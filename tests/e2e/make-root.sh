#!/usr/bin/env bash
# Build, once, a Debian root the boot test (tests/e2e) boots with systemd as PID 1:
#   tests/e2e/make-root.sh [--suite=bookworm|trixie|testing] [DIR]
# bookworm (systemd 252, the default) for the merge tests; trixie (systemd 257, with
# systemd-sysupdate, systemd-pull, gpg and curl) for the fleet-update tests; testing (Debian's
# next release, forky: systemd 258 and newer, which read the .pgp keyring first, as Flatcar
# Beta/Alpha's 260 does) with the same packages, for the signed-update test. testing moves:
# rebuild it (remove DIR) to follow it.
# DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/alloy-sysext-e2e/SUITE. A complete root there
# (one holding this recipe's stamp) is reused as it is; otherwise debootstrap writes a new one to a
# temporary directory beside DIR, renamed into place only when complete, so an interrupted run
# never leaves a root that looks usable. Needs root and debootstrap, and Debian's package mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian). Prints DIR.
set -euo pipefail

SUITE=bookworm
case ${1:-} in
--suite=*)
    SUITE=${1#--suite=}
    shift
    ;;
esac
case $SUITE in
bookworm) INCLUDE=systemd,systemd-sysv,dbus ;;
# trixie also builds and checks signed DDIs: systemd-repart (the DDI builder the pack matches
# byte for byte) and libcryptsetup (which systemd-sysext loads for dm-verity, in the emulated
# x86-64 machine made from this root).
trixie) INCLUDE=systemd,systemd-sysv,dbus,systemd-container,gpg,curl,systemd-repart,libcryptsetup12 ;;
testing) INCLUDE=systemd,systemd-sysv,dbus,systemd-container,gpg,curl ;;
*)
    echo "make-root.sh: error: unknown suite $SUITE: give --suite=bookworm, trixie or testing" >&2
    exit 1
    ;;
esac
# Bump when what this script puts in the root changes: roots with another stamp are rebuilt.
RECIPE=1
STAMP_NAME=.alloy-sysext-e2e-root
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() {
    echo "make-root.sh: error: $*" >&2
    exit 1
}

say() { echo "make-root.sh: $*" >&2; }
# shellcheck source=tests/e2e/cached-dir.sh
. "$(dirname "$0")/cached-dir.sh"
# shellcheck source=tests/e2e/progress.sh
. "$(dirname "$0")/progress.sh"

cache_home=${XDG_CACHE_HOME:-${HOME:?}/.cache}
stamp_text="recipe=$RECIPE suite=$SUITE variant=minbase include=$INCLUDE"

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run this (or nox -s e2e) as root"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"

cached_dir_begin "${1:-$cache_home/alloy-sysext-e2e/$SUITE}"
log=$tmp.log

echo "make-root.sh: debootstrap $SUITE from $MIRROR into $tmp" >&2
start=$SECONDS
if ! with_heartbeat "debootstrap $SUITE" "$log" \
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$MIRROR"; then
    tail -n 30 "$log" >&2
    die "debootstrap failed (the end of its log is above)"
fi

enable_sysext "$tmp"
# No downloaded packages or package lists kept in the cache.
rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*_*

cached_dir_install
say "built $dir in $((SECONDS - start)) s"
echo "$dir"
