#!/bin/busybox sh
# /init of the emulated machines' initramfs (tests/e2e/machine-kernel.sh; make-arm64-machine.sh,
# make-x86-machine.sh), run by a static busybox: loads the modules listed in /modules/order,
# mounts /dev/vda, and then
# - by default, hands over to the root's systemd (switch_root);
# - with alloy_e2e=second-stage on the kernel's command line, runs debootstrap's second stage in
#   the root, writes the finished root as a tar stream to /dev/vdb and powers off.
# Any failure powers the machine off: the host reads what happened from the disks.
bb=/bin/busybox
fail() {
    echo "init-machine: error: $*"
    $bb sync
    $bb poweroff -f
}

$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
while read -r module; do
    $bb insmod "/modules/$module.ko" || fail "insmod $module"
done </modules/order
tries=100
while [ ! -b /dev/vda ] && [ "$tries" -gt 0 ]; do
    $bb sleep 0.1
    tries=$((tries - 1))
done
$bb mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"

case " $($bb cat /proc/cmdline) " in
*" alloy_e2e=second-stage "*)
    for fs in proc sys dev; do $bb mkdir -p "/newroot/$fs"; done
    $bb mount -t proc proc /newroot/proc
    $bb mount -t sysfs sysfs /newroot/sys
    $bb mount -t devtmpfs devtmpfs /newroot/dev
    PATH=/usr/sbin:/usr/bin:/sbin:/bin $bb chroot /newroot /debootstrap/debootstrap --second-stage ||
        fail "debootstrap --second-stage failed"
    echo ok >/newroot/.alloy-e2e-second-stage
    # GNU tar from the new root, which keeps owners, modes, links and extended attributes.
    $bb chroot /newroot /bin/tar --numeric-owner --xattrs --xattrs-include='*' \
        --one-file-system -C / -cf - . >/dev/vdb || fail "tar to /dev/vdb failed"
    $bb sync
    echo "init-machine: second stage done"
    $bb umount /newroot/dev /newroot/sys /newroot/proc
    $bb umount /newroot
    $bb poweroff -f
    ;;
esac

$bb mount --move /dev /newroot/dev
$bb umount /sys /proc
exec $bb switch_root /newroot /sbin/init
