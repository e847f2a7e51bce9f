#!/bin/sh
# Runs inside the booted container (alloy-e2e-check.service, after multi-user.target): does with
# the merged extension what README.md tells a user to do, and records what it sees in DIR (bound
# in from the host) for test_boot.py to judge. It records, never judges, and always finishes:
# every wait is bounded. DIR/results holds one KEY=VALUE a line, ending with finished=yes.
set -u
out=${1:?usage: check.sh DIR}
results=$out/results
unit=alloy.service
data=/var/lib/alloy/data
: >"$results"

put() { printf '%s=%s\n' "$1" "$2" >>"$results"; }
prop() { systemctl show --property="$2" --value "$1"; }

# Poll (every 0.1 s, at most $1 s) until the file $2 exists; "yes" or "no".
wait_for_file() {
    tries=$(($1 * 10))
    while [ ! -e "$2" ] && [ "$tries" -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
    done
    if [ -e "$2" ]; then echo yes; else echo no; fi
}

# The names of the supplementary groups of process $1, sorted, space-separated.
groups_of() {
    sed -n 's/^Groups:[[:space:]]*//p' "/proc/$1/status" | tr -s '[:blank:]' '\n' | while read -r gid; do
        [ -n "$gid" ] && getent group "$gid" | cut -d : -f 1
    done | sort | tr '\n' ' ' | sed 's/ $//'
}

# systemd-analyze security's overall exposure of unit $1 (its report in $out/security-$1.txt).
exposure_of() {
    systemd-analyze security --no-pager "$1" >"$out/security-$1.txt" 2>&1
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$out/security-$1.txt"
}

# The first line of the answer to GET $1 on Alloy's listen address (bash: curl may be missing).
http_status() {
    # shellcheck disable=SC2016 # $1 is bash's, given after the script
    timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/12345 && printf "GET %s HTTP/1.0\r\n\r\n" "$1" >&3 &&
        head -n 1 <&3' - "$1" 2>&1 | tr -d '\r'
}

# How many processes run the binary $1.
processes_of() {
    count=0
    for exe in /proc/[0-9]*/exe; do
        [ "$(readlink "$exe" 2>/dev/null)" = "$1" ] && count=$((count + 1))
    done
    echo "$count"
}

# Boot: from the manager's start to multi-user.target, in microseconds (one monotonic clock).
manager_start=$(systemctl show --property=UserspaceTimestampMonotonic --value)
put boot_usec $(($(prop multi-user.target ActiveEnterTimestampMonotonic) - manager_start))

# An image to merge at runtime (tests/e2e/test_run_as.py), not at boot: nothing has run
# systemd-sysusers for it then.
if [ -d /etc/alloy-e2e/later ]; then
    mkdir -p /run/extensions && mv /etc/alloy-e2e/later/* /run/extensions/
    systemd-sysext refresh >"$out/refresh.txt" 2>&1
    put runtime_merge $?
fi

# The merge systemd-sysext.service did at boot.
put sysext_service "$(prop systemd-sysext.service ActiveState)/$(prop systemd-sysext.service Result)"
systemd-sysext status >"$out/sysext-status.txt" 2>&1
systemd-sysext list >"$out/sysext-list.txt" 2>&1
put alloy_path "$(command -v alloy)"
put alloy_version "$(alloy --version 2>&1 | head -n 1)"
put load_state_at_boot "$(prop "$unit" LoadState)"

# README, "Configure and start the service" (the config is already in place).
systemctl daemon-reload
put load_state "$(prop "$unit" LoadState)"
fragment=$(prop "$unit" FragmentPath)
put fragment_path "$(readlink -f "$fragment")" # Debian finds it as /lib/..., /lib -> usr/lib
put fragment_sha256 "$(sha256sum <"$fragment" | cut -d ' ' -f 1)"
systemctl enable --now "$unit" >"$out/enable.txt" 2>&1
put enable_status $?
put is_enabled "$(systemctl is-enabled "$unit" 2>&1)"
put started_file "$(wait_for_file 10 "$data/started")"
sleep 0.5 # still up a moment later: it stays up, it did not exit or restart
put active_after_start "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)"
main_pid=$(prop "$unit" MainPID)
put main_pid "$main_pid"
put restarts "$(prop "$unit" NRestarts)"
cp "$data/started" "$out/started" 2>/dev/null

# Who it runs as (issue 24), and what it could do as that user: read the journal (the stand-in
# ran journalctl at start), read what an earlier run left, answer /-/ready.
put run_user "$(stat -c %U "/proc/$main_pid" 2>/dev/null)"
put run_groups "$(groups_of "$main_pid" 2>/dev/null)"
put journal_status "$(cat "$data/journal.status" 2>/dev/null)"
cp "$data/journal.json" "$out/journal.json" 2>/dev/null
cp "$data/previous" "$out/previous" 2>/dev/null
put ready "$(http_status /-/ready)"
put state_dir "$(stat -c %U:%G:%a /var/lib/alloy /var/lib/alloy/data 2>&1 | tr '\n' ' ' | sed 's/ $//')"
cp /etc/default/alloy "$out/etc-default-alloy" 2>/dev/null
# Who sysusers made members of which group (test_run_as.py: not where NSS alone knows it).
cp /etc/group "$out/etc-group" 2>/dev/null
cp /etc/passwd "$out/etc-passwd" 2>/dev/null
put exposure "$(exposure_of "$unit")"
if [ -e /etc/systemd/system/alloy-upstream.service ]; then
    put exposure_upstream "$(exposure_of alloy-upstream.service)"
fi

# systemctl reload reaches the process (the stand-in appends to $data/reloads on SIGHUP).
timeout 30 systemctl reload "$unit" >"$out/reload.txt" 2>&1
put reload_status $?
put reloads_file "$(wait_for_file 5 "$data/reloads")"
cp "$data/reloads" "$out/reloads" 2>/dev/null
put active_after_reload "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)"
put main_pid_after_reload "$(prop "$unit" MainPID)"

# systemctl stop stops it: SIGTERM, a clean exit, no process left.
timeout 30 systemctl stop "$unit" >"$out/stop.txt" 2>&1
put stop_status $?
put active_after_stop "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)"
put result_after_stop "$(prop "$unit" Result)"
put main_pid_after_stop "$(prop "$unit" MainPID)"
if [ -n "$main_pid" ] && [ "$main_pid" != 0 ] && [ -e "/proc/$main_pid" ]; then
    put pid_alive_after_stop yes
else
    put pid_alive_after_stop no
fi
put processes_after_stop "$(processes_of /usr/local/bin/alloy)"
cp "$data/stopped" "$out/stopped" 2>/dev/null

cp -a /var/lib/alloy "$out/state" 2>/dev/null # for a next boot (tests/e2e/test_run_as.py)

journalctl --sync
journalctl --unit="$unit" --output=cat --no-pager >"$out/alloy.journal" 2>&1
journalctl --boot --output=short-monotonic --no-pager >"$out/boot.journal" 2>&1
put finished yes
