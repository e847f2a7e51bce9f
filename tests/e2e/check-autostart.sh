#!/bin/sh
# Runs inside the booted container instead of check.sh, for images built with --autostart: the
# host does nothing but boot. Records (never judges) whether multi-user.target's Upholds= brought
# alloy up, and, with no config yet, that it waits without looping and starts once a config
# appears. DIR/results holds one KEY=VALUE a line, ending with finished=yes.
set -u
out=${1:?usage: check-autostart.sh DIR}
results=$out/results
unit=alloy.service
config=/var/mnt/storage/alloy/config.alloy
data=/var/lib/alloy/data
: >"$results"

put() { printf '%s=%s\n' "$1" "$2" >>"$results"; }
prop() { systemctl show --property="$2" --value "$1"; }

wait_for_file() {
    tries=$(($1 * 10))
    while [ ! -e "$2" ] && [ "$tries" -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
    done
    if [ -e "$2" ]; then echo yes; else echo no; fi
}

put sysext_service "$(prop systemd-sysext.service ActiveState)/$(prop systemd-sysext.service Result)"
put is_enabled "$(systemctl is-enabled "$unit" 2>&1)"
if [ -e "$config" ]; then
    put config_at_boot yes
    put started_file "$(wait_for_file 10 "$data/started")"
    sleep 0.5
else
    put config_at_boot no
    sleep 5 # long enough for a loop to show: Upholds= retries at once, Restart= after 10 s
fi
put active_at_boot "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)"
put condition_at_boot "$(prop "$unit" ConditionResult)"
put result_at_boot "$(prop "$unit" Result)" # exec-condition: skipped by its ExecCondition=
put restarts_at_boot "$(prop "$unit" NRestarts)"
journalctl --sync
put start_attempts "$(journalctl --unit="$unit" --output=cat --no-pager | grep -c -e '^Started' -e 'unmet condition' -e "Skipped due to 'exec-condition'")"

if [ ! -e "$config" ]; then # what a user does next
    mkdir -p "$(dirname "$config")"
    printf 'logging {\n  level = "info"\n}\n' >"$config"
    timeout 30 systemctl start "$unit" >"$out/start.txt" 2>&1
    put start_status $?
    put started_file_later "$(wait_for_file 10 "$data/started")"
    put active_later "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)"
fi

journalctl --unit="$unit" --output=cat --no-pager >"$out/alloy.journal" 2>&1
journalctl --boot --output=short-monotonic --no-pager >"$out/boot.journal" 2>&1
put finished yes
