#!/bin/sh
# Runs inside the booted container (alloy-e2e-check.service) of a host provisioned with the
# Ignition config: waits for alloy to run, then, for each published directory named in
# DIR/steps (one a line; "N stopped": stop alloy first; "N transfers=K": first put the transfers
# in DIR/transfers-K/ in place, as an admin replacing them would; "N cleanup": after the update,
# run systemd-sysupdate's cleanup (262+) over every component, as a second stock run would;
# "N refresh": no update unit, but what an admin may do by hand: `systemd-sysupdate -C alloy
# update` (no drop-in, no activate script) and a plain `systemd-sysext refresh`; "N
# refresh-stopped": the same with alloy stopped first), asks the host to serve it (DIR/serve) and runs an update as the timer would: systemctl start
# the update unit, by the name the timer starts (systemd-sysupdate-update.service on 258+,
# where systemd-sysupdate.service is its alias). Records (never judges) what each step left:
# KEY_N=VALUE lines in DIR/results, ending with finished=yes. Every wait is bounded.
set -u
out=${1:?usage: check-update.sh DIR}
results=$out/results
unit=alloy.service
link=/etc/extensions/alloy.raw
: >"$results"

put() { printf '%s=%s\n' "$1" "$2" >>"$results"; }
prop() { systemctl show --property="$2" --value "$1"; }
# The health URL alloy answers on (the test's port, from CUSTOM_ARGS in /etc/default/alloy).
ready_url=$(cat /etc/alloy-e2e/ready-url)

# "200" when /-/ready answers 200, else curl's code or 000.
ready() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$ready_url"; }

# Wait (at most $1 s) for alloy to be up and answering.
wait_ready() {
    tries=$(($1 * 10))
    while [ "$(ready)" != 200 ] && [ "$tries" -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
    done
}

# What a step left: the link, the version alloy runs, its state, health, the kept instances.
# shellcheck disable=SC2012  # ls lists the names sysupdate wrote, for one line of the report
state() {
    [ "$(prop "$unit" ActiveState)" != active ] || wait_ready 10
    put "link_$1" "$(readlink -f "$link")"
    put "version_$1" "$(alloy --version 2>&1 | head -n 1)"
    put "active_$1" "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)"
    pid=$(prop "$unit" MainPID)
    put "pid_$1" "$pid"
    # The version the running process is, whatever is merged now (an image refreshed under a
    # running alloy leaves the old binary running).
    [ "$pid" = 0 ] || put "running_version_$1" "$("/proc/$pid/exe" --version 2>&1 | head -n 1)"
    # alloy's starts so far, and how often 262's systemd-sysext ran the image's restart unit.
    journalctl --sync
    put "starts_$1" "$(journalctl --unit="$unit" --output=cat --no-pager |
        grep -c "^Started $unit")"
    put "restart_unit_runs_$1" "$(journalctl --unit=alloy-sysext-restart.service --output=cat \
        --no-pager | grep -c '^Finished alloy-sysext-restart.service')"
    put "user_$1" "$(stat -c %U "/proc/$pid" 2>/dev/null)"
    put "ready_$1" "$(ready)"
    put "instances_$1" "$(cd /opt/extensions/alloy && ls | tr '\n' ' ' | sed 's/ $//')"
    # Hidden ones too: a partial download would be one.
    put "files_$1" "$(cd /opt/extensions/alloy && ls -A | tr '\n' ' ' | sed 's/ $//')"
    put "merged_$1" "$(systemd-sysext list --no-legend 2>&1 | awk '{print $1}' | tr '\n' ' ')"
    # Each kept image's allocated bytes (blocks x block size: a sparse download holds fewer).
    put "allocated_$1" "$(cd /opt/extensions/alloy && stat -c '%n=%b*%B' -- * 2>/dev/null |
        tr '\n' ' ' | sed 's/ $//')"
}

# With DIR/ready-watch (benchmarks/update.py): print the milliseconds from $2 (date +%s%N) until
# a new alloy (main PID not $1) answers 200, polling every 50 ms for at most 600 s.
watch_ready() {
    tries=12000
    while [ "$tries" -gt 0 ]; do
        pid=$(prop "$unit" MainPID)
        if [ "$pid" != 0 ] && [ "$pid" != "$1" ] && [ "$(ready)" = 200 ]; then
            echo $((($(date +%s%N) - $2) / 1000000))
            return 0
        fi
        sleep 0.05
        tries=$((tries - 1))
    done
}

put systemd "$(systemctl --version | head -n 1)"
# The update unit's own name, its drop-ins (ours once, the test's), how often our drop-in's
# activate script runs in one start, and whether the timer of that name is enabled.
sysupdate=$(prop systemd-sysupdate.service Id)
put sysupdate_unit "$sysupdate"
put sysupdate_dropins "$(prop "$sysupdate" DropInPaths)"
put sysupdate_activate "$(prop "$sysupdate" ExecStartPre | grep -o 'argv\[\]=[^ ]*/activate [a-z]*' |
    sed 's/.*activate //' | tr '\n' ' ' | sed 's/ $//')"
timer=$(prop systemd-sysupdate.timer Id)
put sysupdate_timer "$timer $(systemctl is-enabled "$timer")"
# Boot: from the manager's start to multi-user.target, in microseconds (one monotonic clock).
manager_start=$(systemctl show --property=UserspaceTimestampMonotonic --value)
put boot_usec $(($(prop multi-user.target ActiveEnterTimestampMonotonic) - manager_start))
# With DIR/no-alloy-at-boot (benchmarks/update.py's signed DDIs: no dm-verity in nspawn, so the
# image never merges): no alloy will answer, do not spend 30 s waiting for one.
[ -e "$out/no-alloy-at-boot" ] || wait_ready 30
state 0
step=0
while read -r served how; do
    [ -n "$served" ] || continue
    step=$((step + 1))
    case $how in stopped | refresh-stopped) systemctl stop "$unit" ;; esac
    case $how in
    transfers=*) cp "$out/transfers-${how#transfers=}"/* /etc/sysupdate.alloy.d/ ;;
    esac
    echo "$served" >"$out/serve"
    start=$(date +%s%N)
    case $how in
    refresh | refresh-stopped)
        pid_before=$(prop "$unit" MainPID)
        /usr/lib/systemd/systemd-sysupdate -C alloy update >"$out/update-$step.txt" 2>&1
        put "update_status_$step" $?
        systemd-sysext refresh >"$out/refresh-$step.txt" 2>&1
        put "refresh_status_$step" $?
        # 262 restarts a running alloy after the refresh without waiting (try-restart
        # --no-block): wait (at most 10 s) for a new main process; 257 never starts one.
        tries=100
        while [ "$pid_before" != 0 ] && [ "$tries" -gt 0 ] &&
            { [ "$(prop "$unit" MainPID)" = "$pid_before" ] ||
                [ "$(prop "$unit" MainPID)" = 0 ]; }; do
            sleep 0.1
            tries=$((tries - 1))
        done
        state "$step"
        continue
        ;;
    esac
    watcher=
    if [ -e "$out/ready-watch" ]; then
        watch_ready "$(prop "$unit" MainPID)" "$start" >"$out/ready-msec-$step" &
        watcher=$!
    fi
    timeout 600 systemctl start "$sysupdate" >"$out/update-$step.txt" 2>&1
    put "update_status_$step" $?
    # The unit is Type=simple: start returns once the drop-in's ExecStartPre/Post are done, while
    # its own ExecStart may still run (on 258+ `update --component-all`, which fetches the alloy
    # component's SHA256SUMS again). Wait for it: the next step's start would be a no-op.
    tries=600
    while [ "$(prop "$sysupdate" ActiveState)" = active ] && [ "$tries" -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
    done
    put "update_msec_$step" $((($(date +%s%N) - start) / 1000000))
    if [ -n "$watcher" ]; then
        tries=100 # a new alloy that is not ready 10 s after the update never will be
        while kill -0 "$watcher" 2>/dev/null && [ "$tries" -gt 0 ]; do
            sleep 0.1
            tries=$((tries - 1))
        done
        kill "$watcher" 2>/dev/null
        wait "$watcher"
        put "ready_msec_$step" "$(cat "$out/ready-msec-$step")"
    fi
    put "sysupdate_result_$step" "$(prop "$sysupdate" Result)"
    if [ "$how" = cleanup ]; then
        timeout 300 /usr/lib/systemd/systemd-sysupdate --component-all cleanup \
            >"$out/cleanup-$step.txt" 2>&1
        put "cleanup_status_$step" $?
    fi
    # sysupdate's installation database (262+: /var/lib/systemd/sysupdate/installdb*), which
    # cleanup reads: what it recorded (entries may be symlinks, hence ! -type d).
    put "recorded_$step" "$(find /var/lib/systemd/sysupdate ! -type d 2>/dev/null | sort |
        tr '\n' ' ' | sed 's/ $//')"
    find /var/lib/systemd/sysupdate ! -type d -exec sh -c \
        'echo "== $1 -> $(readlink "$1")"; cat "$1" 2>/dev/null; echo' _ {} \; \
        >"$out/recorded-$step.txt" 2>&1
    state "$step"
done <"$out/steps"

# The keyrings alloy-import-pubring.service wrote for systemd-pull (signed releases).
# shellcheck disable=SC2012  # two names of our own choosing
put keyrings "$(cd /etc/systemd && ls -d import-pubring.* 2>/dev/null | tr '\n' ' ' | sed 's/ $//')"
# The host's own /etc/default/alloy (issue 24: no update replaces it with the image's copy).
cp /etc/default/alloy "$out/etc-default-alloy" 2>/dev/null
journalctl --sync
# systemd 258+ calls the unit systemd-sysupdate-update.service (systemd-sysupdate.service is an
# alias of it), and the journal knows it by that name only.
journalctl --unit=systemd-sysupdate.service --unit=systemd-sysupdate-update.service \
    --output=cat --no-pager >"$out/sysupdate.journal" 2>&1
journalctl --unit="$unit" --output=cat --no-pager >"$out/alloy.journal" 2>&1
journalctl --boot --output=short-monotonic --no-pager >"$out/boot.journal" 2>&1
put finished yes
