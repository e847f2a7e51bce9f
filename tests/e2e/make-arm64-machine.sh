#!/usr/bin/env bash
# Build, once, the arm64 machine the arm64 boot test (tests/e2e/test_arm64_boot.py) boots with
# qemu-system-aarch64:
#   tests/e2e/make-arm64-machine.sh [DIR]
# DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/alloy-sysext-e2e/arm64) then holds
#   root/        a Debian 12 arm64 root (debootstrap --variant=minbase, systemd 252), with
#                systemd-sysext.service enabled, from which each test makes its own ext4 disk
#   vmlinuz      Debian's linux-image-arm64 kernel
#   initrd.img   a small initramfs made here: a static arm64 busybox and the kernel's modules
#                for virtio disks, ext4, loop, squashfs, erofs and overlayfs (see init-machine.sh)
# and a stamp written last. A complete DIR (with this recipe's stamp) is reused as it is;
# otherwise the machine is built in a temporary directory beside DIR and renamed into place when
# complete, so an interrupted run never leaves a machine that looks usable.
#
# Nothing on the host changes: no foreign architecture is added to dpkg and no binfmt_misc
# handler is registered. The kernel and busybox come from Debian's mirror through apt-get with a
# private state directory (machine-kernel.sh); debootstrap's second stage (which runs arm64 programs) runs inside the
# emulated machine itself, booted from the first stage's tree, and hands the finished root back
# as a tar stream written to a second disk.
# Needs root, debootstrap, qemu-system-aarch64, mke2fs (e2fsprogs), cpio, and Debian's mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian). Prints DIR.
# Takes 7-25 minutes on 2 cores (453 s on a quiet machine, 19 min on a loaded one), most of it the
# emulated second stage: it says when each phase starts, and every ALLOY_E2E_HEARTBEAT seconds
# (60) that a long one is still running (tests/e2e/progress.sh).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=bookworm
INCLUDE=systemd,systemd-sysv,dbus
# Bump when what this script puts in the machine changes: machines with another stamp are rebuilt.
RECIPE=1
STAMP_NAME=.alloy-sysext-e2e-arm64
# Modules the initramfs loads, in this order after their dependencies: the disks and the root's
# filesystem, then what systemd-sysext needs in the booted machine (modules loaded here stay
# loaded after switch_root; the root itself holds no kernel modules).
MODULES="virtio_pci virtio_mmio virtio_blk crc32c_generic ext4 loop squashfs erofs overlay"
SECOND_STAGE_TIMEOUT=${ALLOY_E2E_ARM64_SECOND_STAGE_TIMEOUT:-3600}

die() {
    echo "make-arm64-machine.sh: error: $*" >&2
    exit 1
}
say() { echo "make-arm64-machine.sh: $*" >&2; }

# shellcheck source=tests/e2e/cached-dir.sh
. "$HERE/cached-dir.sh"
# shellcheck source=tests/e2e/progress.sh
. "$HERE/progress.sh"
# shellcheck source=tests/e2e/machine-kernel.sh
. "$HERE/machine-kernel.sh"

cache_home=${XDG_CACHE_HOME:-${HOME:?}/.cache}
stamp_text="recipe=$RECIPE suite=$SUITE arch=arm64 variant=minbase include=$INCLUDE modules=$MODULES"

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run this (or nox -s e2e) as root"
for tool in debootstrap qemu-system-aarch64 mke2fs cpio apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install debootstrap \
qemu-system-arm e2fsprogs cpio"
done
[ -f "$KEYRING" ] || die "no $KEYRING: apt-get install debian-archive-keyring"

cached_dir_begin "${1:-$cache_home/alloy-sysext-e2e/arm64}"
start=$SECONDS
log=$tmp/log

# 1. The kernel and busybox, with apt-get and a state directory of our own (arm64 only).
private_apt arm64 "$SUITE"
phase "fetching Debian's arm64 kernel and busybox-static from $MIRROR (1 of 4)"
fetch_kernel arm64

# 2. The initramfs: busybox, the modules (each after what it depends on), the init script.
phase "making the initramfs (2 of 4)"
# shellcheck disable=SC2086  # MODULES: a list of words
make_initramfs $MODULES

# 3. debootstrap's first stage on the host (unpacking only), then its second stage in the VM.
phase "debootstrap --foreign --arch=arm64 $SUITE (3 of 4: first stage, on the host)"
root=$tmp/root
if ! with_heartbeat "debootstrap's first stage" "$log" debootstrap --foreign --arch=arm64 \
    --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$MIRROR"; then
    tail -n 30 "$log" >&2
    die "debootstrap failed (the end of its log is above)"
fi
mke2fs -q -t ext4 -d "$root" "$tmp/stage.img" 4G >"$log" 2>&1 || {
    cat "$log" >&2
    die "mke2fs -d $root failed"
}
truncate -s 4G "$tmp/tar.img"
phase "debootstrap --second-stage inside qemu-system-aarch64 (4 of 4; emulated: 6-20 minutes)"
if ! with_heartbeat "debootstrap's second stage in the emulated machine" \
    "$tmp/second-stage.log" timeout --kill-after=10 "$SECOND_STAGE_TIMEOUT" qemu-system-aarch64 \
    -M virt -cpu cortex-a57 -smp 2 -m 2048 -nographic -no-reboot -nic none \
    -kernel "$tmp/vmlinuz" -initrd "$tmp/initrd.img" \
    -append "console=ttyAMA0 panic=-1 alloy_e2e=second-stage" \
    -drive "file=$tmp/stage.img,format=raw,if=none,id=root" -device virtio-blk-pci,drive=root \
    -drive "file=$tmp/tar.img,format=raw,if=none,id=out" -device virtio-blk-pci,drive=out; then
    tail -n 30 "$tmp/second-stage.log" >&2
    die "the emulated machine did not finish debootstrap's second stage (its console is above)"
fi
phase "second stage done; unpacking the root"
rm -rf --one-file-system "$root"
mkdir -m 0755 "$root"
if ! tar -xf "$tmp/tar.img" -C "$root" --numeric-owner --xattrs --xattrs-include='*' \
    --preserve-permissions 2>"$log" || [ ! -f "$root/.alloy-e2e-second-stage" ]; then
    tail -n 30 "$tmp/second-stage.log" >&2
    cat "$log" >&2
    die "debootstrap's second stage failed in the emulated machine (its console is above)"
fi
rm -f "$root/.alloy-e2e-second-stage" "$tmp/stage.img" "$tmp/tar.img"
# Mount points tar did not descend into (--one-file-system), for the booted machine.
mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/run"

# 4. What the tests want of every boot.
enable_sysext "$root"
# No login on the serial console: a getty there hangs up whatever else writes to it.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyAMA0.service"
echo arm64-e2e >"$root/etc/hostname"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_*

rm -rf "$apt_dir" "$tmp/kernel" "$tmp/busybox" "$initramfs" "$log"
echo "kernel=$kernel_release" >"$tmp/kernel-release"
cached_dir_install
say "built $dir in $((SECONDS - start)) s"
echo "$dir"
