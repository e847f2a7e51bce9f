# shellcheck shell=bash
# Sourced by make-arm64-machine.sh and make-root.sh: progress while they run for minutes. A line
# per phase with the time since the script started, and, while a long command runs (apt-get,
# debootstrap, the emulated machine), a line every ALLOY_E2E_HEARTBEAT seconds (default 60)
# saying it is still at it. The caller defines say (one line to stderr).

progress_start=$SECONDS
heartbeat=${ALLOY_E2E_HEARTBEAT:-60}
case $heartbeat in '' | *[!0-9]* | 0) heartbeat=60 ;; esac

# The time since the script started, as M:SS.
elapsed() {
    local seconds=$((SECONDS - progress_start))
    printf '%d:%02d' $((seconds / 60)) $((seconds % 60))
}

# phase TEXT: say that a phase starts.
phase() { say "[$(elapsed)] $*"; }

# with_heartbeat LABEL LOG COMMAND...: run COMMAND (a program or a function) with its output in
# LOG and no input; every $heartbeat seconds while it runs, say that LABEL is still running and
# for how long. Returns COMMAND's exit status. COMMAND runs in the background and is waited for:
# bash runs a trap only between commands, and `wait` is one a signal interrupts, so Ctrl-C or a
# SIGTERM (nox or pytest stopped) reaches stop_running below, which stops COMMAND (a
# qemu-system-aarch64 under `timeout` would otherwise run on, orphaned, for up to its timeout).
# The heartbeat runs beside it and ends with it, or with the script.
with_heartbeat() {
    local label=$1 log=$2 beating status=0
    shift 2
    launching=yes
    beat "$label" "$SECONDS" "$$" &
    beating=$!
    "$@" </dev/null >"$log" 2>&1 &
    running=$!
    launching=
    wait "$running" || status=$?
    running=
    kill "$beating" 2>/dev/null || true
    wait "$beating" 2>/dev/null || true
    return "$status"
}

# The command with_heartbeat runs, if one runs now; a signal stops it (and, where it is a
# function's subshell, the programs that subshell runs: `timeout` passes SIGTERM on to its own),
# then ends the script with the signal's status, running its EXIT trap (cached-dir.sh's cleanup).
# A signal can come between the command's start and `running=$!`: then $! is the command (or,
# before it started, the heartbeat, which ends with the script anyway).
running=
launching=
stop_running() {
    if [ -z "$running" ] && [ -n "$launching" ]; then running=$!; fi
    if [ -n "$running" ]; then
        pkill -TERM -P "$running" 2>/dev/null || true
        kill -TERM "$running" 2>/dev/null || true
        wait "$running" 2>/dev/null || true
    fi
    exit "$1"
}
trap 'stop_running 130' INT
trap 'stop_running 143' TERM
trap 'stop_running 129' HUP

# beat LABEL BEGAN PID: with_heartbeat's lines, until killed or no longer PID's child (the
# script died: a dead script is a zombie until reaped, and its reaper may be waiting for this
# very stderr to close). Polled, not slept for a whole beat: it ends at once when told to.
beat() {
    local next=$(($2 + heartbeat)) parent
    while read -r _ _ _ parent _ <"/proc/$BASHPID/stat" && [ "$parent" = "$3" ]; do
        if [ "$SECONDS" -ge "$next" ]; then
            say "[$(elapsed)] still $1 ($((SECONDS - $2)) s so far)"
            next=$((next + heartbeat))
        fi
        sleep 0.2
    done
}
