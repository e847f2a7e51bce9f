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
# for how long. Returns COMMAND's exit status. COMMAND runs in the foreground, so Ctrl-C reaches
# it; the heartbeat runs beside it and ends with it, or with the script.
with_heartbeat() {
    local label=$1 log=$2 beating status=0
    shift 2
    beat "$label" "$SECONDS" "$$" &
    beating=$!
    "$@" </dev/null >"$log" 2>&1 || status=$?
    kill "$beating" 2>/dev/null || true
    wait "$beating" 2>/dev/null || true
    return "$status"
}

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
