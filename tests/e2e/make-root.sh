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
trixie | testing) INCLUDE=systemd,systemd-sysv,dbus,systemd-container,gpg,curl ;;
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

cache_home=${XDG_CACHE_HOME:-${HOME:?}/.cache}
root=${1:-$cache_home/alloy-sysext-e2e/$SUITE}
case $root in
/*) ;;
*) root=$PWD/$root ;;
esac
parent=$(dirname "$root")
base=$(basename "$root")
stamp_text="recipe=$RECIPE suite=$SUITE variant=minbase include=$INCLUDE"

complete() {
    [ -f "$1/$STAMP_NAME" ] && [ "$(cat "$1/$STAMP_NAME")" = "$stamp_text" ]
}

# Unmount whatever an interrupted debootstrap left mounted (proc, sys) under $1, then remove it
# without ever crossing into another filesystem.
remove_tree() {
    local mounts
    mounts=$(awk -v dir="$1/" 'index($5, dir) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    if [ -n "$mounts" ]; then
        # shellcheck disable=SC2086  # mount points under our own temporary directory: no spaces
        umount --lazy $mounts || true
    fi
    rm -rf --one-file-system "$1"
}

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run this (or nox -s e2e) as root"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"

mkdir -p "$parent"
# One builder at a time: a second run waits, then finds the root complete.
exec 9>"$parent/.$base.lock"
flock 9

if complete "$root"; then
    echo "make-root.sh: reusing $root" >&2
    echo "$root"
    exit 0
fi

for stale in "$parent/.$base".*.tmp "$parent/.$base".*.old; do
    if [ -d "$stale" ]; then
        echo "make-root.sh: removing $stale, left by an interrupted run" >&2
        remove_tree "$stale"
    fi
done
rm -f "$parent/.$base".*.tmp.log

tmp=$(mktemp -d "$parent/.$base.XXXXXX.tmp")
log=$tmp.log
trap 'remove_tree "$tmp"; rm -f "$log"' EXIT
chmod 0755 "$tmp"

echo "make-root.sh: debootstrap $SUITE from $MIRROR into $tmp" >&2
start=$SECONDS
if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$MIRROR" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "debootstrap failed (the end of its log is above)"
fi

# debootstrap applies no presets: merge extensions at boot, as Flatcar does.
[ -f "$tmp/lib/systemd/system/systemd-sysext.service" ] ||
    die "the root's systemd has no systemd-sysext.service"
mkdir -p "$tmp/etc/systemd/system/sysinit.target.wants"
ln -sf /lib/systemd/system/systemd-sysext.service \
    "$tmp/etc/systemd/system/sysinit.target.wants/systemd-sysext.service"
# No downloaded packages or package lists kept in the cache.
rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*_*

echo "$stamp_text" >"$tmp/$STAMP_NAME"
sync -f "$tmp/$STAMP_NAME"
if [ -e "$root" ]; then
    old=$(mktemp -d "$parent/.$base.XXXXXX.old")
    mv "$root" "$old/"
    mv "$tmp" "$root"
    remove_tree "$old"
else
    mv "$tmp" "$root"
fi
trap - EXIT
rm -f "$log"
echo "make-root.sh: built $root in $((SECONDS - start)) s" >&2
echo "$root"
