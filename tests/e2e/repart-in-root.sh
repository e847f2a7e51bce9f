#!/bin/sh
# systemd-repart of a cached Debian root, run on this machine's files:
#   repart-in-root.sh ROOT SHARE [REPART ARGS...]
# In a private mount namespace (the host's mounts are untouched): a tmpfs on /run, ROOT
# (read-only) under an overlayfs there, SHARE bound in at its own path (the paths repart is
# given mean the same inside), /proc and /dev mounted; then ROOT's /usr/bin/systemd-repart runs
# there with the arguments. Needs root and unshare.
set -eu
if [ "${1:-}" != --in-namespace ]; then
    exec unshare --mount --fork "$0" --in-namespace "$@"
fi
root=$2 share=$3
shift 3
case $share in
/run | /run/*)
    echo "repart-in-root.sh: $share is under /run, which the namespace covers" >&2
    exit 1
    ;;
esac
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/repart /run/repart/upper /run/repart/work /run/repart/root
mount -t overlay overlay \
    -o "lowerdir=$root,upperdir=/run/repart/upper,workdir=/run/repart/work" /run/repart/root
mkdir -p "/run/repart/root$share"
mount --bind "$share" "/run/repart/root$share"
mount -t proc proc /run/repart/root/proc
mount --rbind /dev /run/repart/root/dev
exec chroot /run/repart/root /usr/bin/systemd-repart "$@"
