#!/bin/sh
# Runs inside the booted container (alloy-e2e-check.service) of a host provisioned with the
# Ignition config of `invoke release --verity-cert=CRT --require-signed-images`: records (never
# judges) what systemd made of the certificate and the systemd-sysext.service drop-in, and
# that the plain image the host was given is not merged under that policy. KEY=VALUE lines in
# DIR/results, the longer texts beside them, ending with finished=yes.
set -u
out=${1:?usage: check-signed-host.sh DIR}
results=$out/results
cert=/etc/verity.d/alloy-sysext.crt
: >"$results"

put() { printf '%s=%s\n' "$1" "$2" >>"$results"; }

put systemd "$(systemctl --version | head -n 1)"
put cert_mode "$(stat -c %a "$cert" 2>&1)"
cp "$cert" "$out/cert.pem" 2>/dev/null || :
systemctl cat systemd-sysext.service >"$out/sysext-unit.txt" 2>&1
put exec_start "$(systemctl show --property=ExecStart --value systemd-sysext.service)"
put exec_reload "$(systemctl show --property=ExecReload --value systemd-sysext.service)"
# --man=no: the minimal root has no man pages for Documentation= to find.
systemd-analyze verify --man=no systemd-sysext.service >"$out/analyze.txt" 2>&1
put analyze_status $?
put sysext_active "$(systemctl is-active systemd-sysext.service)"
if [ -e /usr/local/bin/alloy ]; then put alloy_binary present; else put alloy_binary absent; fi
# The unit's own command run again, its words as systemd shows them: what it says goes to a
# file, not only to a journal that may not have taken the lines of a process this short yet.
# shellcheck disable=SC2086 # the command's words, split as systemd split them
refresh=$(systemctl show --property=ExecStart --value systemd-sysext.service |
    sed -n 's/.*argv\[\]=\([^;]*\) ;.*/\1/p')
put refresh_command "$refresh"
$refresh >"$out/refresh.txt" 2>&1
put refresh_status $?
journalctl --sync
journalctl -b --no-pager -o cat -u systemd-sysext.service >"$out/sysext.journal" 2>&1
cp /opt/alloy-sysext/activate "$out/activate" 2>/dev/null || :
put finished yes
