#!/bin/sh
# Runs inside the emulated x86-64 machine (alloy-e2e-verity-check.service, after
# multi-user.target) for test_verity_boot.py: systemd-sysext merged the signed DDI at boot under
# the strict image policy; check.sh uses alloy.service as README says (in DIR/boot); then each
# image in /etc/alloy-e2e/images is put alone in /var/lib/extensions and merged with
# `systemd-sysext refresh` and the same policy, and what systemd says and does is recorded in
# DIR. It records, never judges, and always finishes: every wait is bounded. DIR/results holds one
# KEY=VALUE a line, ending with finished=yes.
set -u
out=${1:?usage: check-verity.sh DIR}
results=$out/results
images=/etc/alloy-e2e/images
extensions=/var/lib/extensions
name=$(cat /etc/alloy-e2e/image-name) # the versioned name every image is installed under
# The policy the release's drop-in puts on systemd-sysext.service (build/model/ddi.py's).
strict=$(cat /etc/alloy-e2e/strict-policy)
# For the plain EROFS image the merge time is compared with: a file system with no partition
# table is dissected as an unprotected root partition.
unprotected=root=unprotected+absent:usr=unprotected+absent
: >"$results"

put() { printf '%s=%s\n' "$1" "$2" >>"$results"; }
prop() { systemctl show --property="$2" --value "$1"; }
# The verity devices systemd left (names of /dev/mapper entries but control), one line.
mapped() {
    for device in /dev/mapper/*; do
        case $device in /dev/mapper/control | '/dev/mapper/*') ;; *) printf '%s ' "${device#/dev/mapper/}" ;; esac
    done
}

# Unmerge, and wait (at most 10 s) until no verity device is left: a device left over from an
# image with the same root hash would be reused and its blocks never read from the next image.
unmerge_all() {
    systemd-sysext unmerge >>"$out/unmerge.txt" 2>&1
    rm -f "$extensions"/*
    tries=100
    while [ -n "$(mapped)" ] && [ "$tries" -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
    done
}

# install NAME: the image NAME alone in /var/lib/extensions, nothing merged.
install() {
    unmerge_all
    cp "$images/$1" "$extensions/$name"
}

# refresh NAME POLICY: merge what is installed with POLICY; record in NAME_* what systemd said,
# how long it took, whether the image is merged and alloy there.
refresh() {
    put "$1_mapped_before" "$(mapped)"
    started=$(date +%s.%N)
    systemd-sysext refresh --image-policy="$2" >"$out/$1.refresh.txt" 2>&1
    status=$?
    ended=$(date +%s.%N)
    put "$1_refresh_status" "$status"
    put "$1_refresh_seconds" "$(echo "$started $ended" | awk '{printf "%.3f", $2 - $1}')"
    systemd-sysext status >"$out/$1.status.txt" 2>&1
    put "$1_alloy_present" "$(if [ -e /usr/local/bin/alloy ]; then echo yes; else echo no; fi)"
}

# 1. What the signed DDI merged at boot does (README's steps).
mkdir -p "$out/boot"
put sysext_service "$(prop systemd-sysext.service ActiveState)/$(prop systemd-sysext.service Result)"
put sysext_exec_start "$(prop systemd-sysext.service ExecStart | tr '\n' ' ')"
systemd-sysext status >"$out/boot-status.txt" 2>&1
/bin/sh /etc/alloy-e2e/check.sh "$out/boot"
put boot_check "$?"

# systemd-dissect --validate checks layout and policy, not the data: A's DDI must pass it, and
# so does the flipped copy (the reason verify recomputes the tree and checks the signature).
for image in signed-a flipped signed-b; do
    systemd-dissect --validate --image-policy="$strict" "$images/$image.raw" \
        >"$out/$image.validate.txt" 2>&1
    put "${image}_validate_status" "$?"
done

# 2. Merge seconds: the signed DDI under the strict policy against the plain EROFS image it
# holds under the unprotected one, three rounds, each from nothing merged.
for round in 1 2 3; do
    install signed-a.raw
    refresh "time_signed_$round" "$strict"
    install plain.erofs
    refresh "time_plain_$round" "$unprotected"
done

# 3. What the strict policy refuses: another key's signature, no signature, no verity at all.
for image in signed-b unsigned-verity plain-squashfs; do
    install "$image.raw"
    refresh "$image" "$strict"
done

# The controls: the unsigned verity DDI and B's under the policy the strict one replaces.
weak=root=verity+signed+absent:usr=verity+signed+absent
install unsigned-verity.raw
refresh unsigned-verity-weak "$weak"
install signed-b.raw
refresh signed-b-weak "$weak"

# 4. A's DDI with one flipped byte in the alloy binary: the signature still holds (the tree is
# unchanged), so it merges; dm-verity then refuses the block at every read.
install flipped.raw
refresh flipped "$strict"
cat /usr/local/bin/alloy >/dev/null 2>"$out/flipped.read.txt"
put flipped_read_status "$?"
alloy --version >"$out/flipped.version.txt" 2>&1
put flipped_version_status "$?"
systemctl daemon-reload
timeout 60 systemctl start alloy.service >"$out/flipped.start.txt" 2>&1
put flipped_start_status "$?"
sleep 1
put flipped_active "$(prop alloy.service ActiveState)/$(prop alloy.service Result)"
put flipped_exec_status "$(prop alloy.service ExecMainStatus)"
journalctl --sync
journalctl --unit=alloy.service --output=cat --no-pager >"$out/flipped.alloy.journal" 2>&1
journalctl --dmesg --output=short-monotonic --no-pager >"$out/kernel.journal" 2>&1
put kernel_verity_errors "$(grep -c 'verity.*corrupted' "$out/kernel.journal")"
timeout 30 systemctl stop alloy.service >/dev/null 2>&1
unmerge_all
journalctl --boot --output=short-monotonic --no-pager >"$out/boot.journal" 2>&1
put finished yes
