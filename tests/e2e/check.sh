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

journalctl --sync
journalctl --unit="$unit" --output=cat --no-pager >"$out/alloy.journal" 2>&1
journalctl --boot --output=short-monotonic --no-pager >"$out/boot.journal" 2>&1
put finished yes
