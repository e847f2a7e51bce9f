# shellcheck shell=bash disable=SC2154  # STAMP_NAME, stamp_text: set by the caller
# Sourced by make-root.sh and make-arm64-machine.sh: what both do around what they build. A
# directory is built once, under a lock, in a temporary directory beside it (.NAME.XXXXXX.tmp),
# and renamed into place only once complete, with its stamp written last, so an interrupted run
# never leaves one that looks usable. The caller defines die and say, and sets STAMP_NAME and
# stamp_text (what the stamp of a complete directory says).

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

# cached_dir_begin DIR: sets dir (absolute), parent, base and tmp. With a complete DIR there, it
# prints DIR and exits; otherwise it removes what interrupted runs left beside DIR and makes the
# temporary directory, removed on exit unless cached_dir_install took it.
cached_dir_begin() {
    case $1 in
    /*) dir=$1 ;;
    *) dir=$PWD/$1 ;;
    esac
    parent=$(dirname "$dir")
    base=$(basename "$dir")
    mkdir -p "$parent"
    # One builder at a time: a second run waits, then finds the directory complete.
    exec 9>"$parent/.$base.lock"
    flock 9
    if [ -f "$dir/$STAMP_NAME" ] && [ "$(cat "$dir/$STAMP_NAME")" = "$stamp_text" ]; then
        say "reusing $dir"
        echo "$dir"
        exit 0
    fi
    local stale
    for stale in "$parent/.$base".*.tmp "$parent/.$base".*.old; do
        if [ -d "$stale" ]; then
            say "removing $stale, left by an interrupted run"
            remove_tree "$stale"
        fi
    done
    rm -f "$parent/.$base".*.tmp.log
    tmp=$(mktemp -d "$parent/.$base.XXXXXX.tmp")
    trap 'remove_tree "$tmp"; rm -f "$tmp.log"' EXIT
    chmod 0755 "$tmp"
}

# enable_sysext ROOT: debootstrap applies no presets: merge extensions at boot, as Flatcar does.
enable_sysext() {
    [ -f "$1/lib/systemd/system/systemd-sysext.service" ] ||
        die "the root's systemd has no systemd-sysext.service"
    mkdir -p "$1/etc/systemd/system/sysinit.target.wants"
    ln -sf /lib/systemd/system/systemd-sysext.service \
        "$1/etc/systemd/system/sysinit.target.wants/systemd-sysext.service"
}

# cached_dir_install: the stamp, written last, then the temporary directory takes DIR's place.
cached_dir_install() {
    echo "$stamp_text" >"$tmp/$STAMP_NAME"
    sync -f "$tmp/$STAMP_NAME"
    if [ -e "$dir" ]; then
        local old
        old=$(mktemp -d "$parent/.$base.XXXXXX.old")
        mv "$dir" "$old/"
        mv "$tmp" "$dir"
        remove_tree "$old"
    else
        mv "$tmp" "$dir"
    fi
    trap - EXIT
    rm -f "$tmp.log"
}
