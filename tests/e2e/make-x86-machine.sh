#!/usr/bin/env bash
# Build, once, the x86-64 machine the dm-verity boot test (tests/e2e/test_verity_boot.py) boots
# with qemu-system-x86_64 (TCG: no KVM needed):
#   tests/e2e/make-x86-machine.sh [DIR]
# DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/alloy-sysext-e2e/x86-64) then holds
#   vmlinuz      Debian 13's linux-image-amd64 kernel (dm_verity is a module there)
#   initrd.img   a small initramfs made here: a static busybox and the kernel's modules for
#                virtio disks, ext4, loop, squashfs, erofs, overlayfs, device-mapper and
#                dm-verity (see init-machine.sh), which stay loaded after switch_root
# and a stamp written last. The root is not here: each test makes an ext4 disk of a copy of the
# cached Debian 13 root (make-root.sh --suite=trixie: systemd 257, Flatcar Stable's, with
# libcryptsetup). A complete DIR (with this recipe's stamp) is reused as it is; otherwise the
# machine is built in a temporary directory beside DIR and renamed into place when complete.
# Needs root, apt-get, dpkg-deb, cpio, and Debian's mirror (DEBIAN_MIRROR, default
# http://deb.debian.org/debian). Prints DIR. Takes 1-3 minutes (two downloads, ~110 MB).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=trixie
# Bump when what this script puts in the machine changes: machines with another stamp are rebuilt.
RECIPE=1
STAMP_NAME=.alloy-sysext-e2e-x86-64
# Modules the initramfs loads, in this order after their dependencies: the disks and the root's
# filesystem, then what systemd-sysext needs for signed DDIs in the booted machine (the root
# holds no kernel modules).
MODULES="virtio_pci virtio_blk crc32c_generic ext4 loop squashfs erofs overlay dm_mod dm_verity"

die() {
    echo "make-x86-machine.sh: error: $*" >&2
    exit 1
}
say() { echo "make-x86-machine.sh: $*" >&2; }

# shellcheck source=tests/e2e/cached-dir.sh
. "$HERE/cached-dir.sh"
# shellcheck source=tests/e2e/progress.sh
. "$HERE/progress.sh"
# shellcheck source=tests/e2e/machine-kernel.sh
. "$HERE/machine-kernel.sh"

cache_home=${XDG_CACHE_HOME:-${HOME:?}/.cache}
stamp_text="recipe=$RECIPE suite=$SUITE arch=amd64 modules=$MODULES"

[ "$(id -u)" -eq 0 ] || die "the machine's initramfs is made as root: run this (or nox -s e2e) as root"
for tool in qemu-system-x86_64 cpio apt-get dpkg-deb xz; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install qemu-system-x86 \
cpio apt dpkg xz-utils"
done
[ -f "$KEYRING" ] || die "no $KEYRING: apt-get install debian-archive-keyring"

cached_dir_begin "${1:-$cache_home/alloy-sysext-e2e/x86-64}"
start=$SECONDS
log=$tmp/log

# 1. The kernel and busybox, with apt-get and a state directory of our own.
private_apt amd64 "$SUITE"
phase "fetching Debian 13's amd64 kernel and busybox-static from $MIRROR (1 of 2)"
fetch_kernel amd64

# 2. The initramfs: busybox, the modules (each after what it depends on), the init script.
phase "making the initramfs (2 of 2)"
# shellcheck disable=SC2086  # MODULES: a list of words
make_initramfs $MODULES

rm -rf "$apt_dir" "$tmp/kernel" "$tmp/busybox" "$initramfs" "$log"
echo "kernel=$kernel_release" >"$tmp/kernel-release"
cached_dir_install
say "built $dir in $((SECONDS - start)) s"
echo "$dir"
