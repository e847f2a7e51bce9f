#!/bin/sh
# The build container's entry point. Arguments are an invoke task and its flags (default: all),
# or the path of a script in the image, such as the original /build/build-alloy-sysext.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

case "${1:-}" in
/*) exec "$@" ;;
-*) ;; # invoke's own options (--list, --help): nothing is written
*)
    output=${INVOKE_OUTPUT_DIR:-$here/output}
    if [ -d "$output" ] && ! [ -w "$output" ]; then
        echo "error: $output is not writable by uid $(id -u); create ./output first (mkdir -p output) and run with --user \"\$(id -u):\$(id -g)\"" >&2
        exit 1
    fi
    ;;
esac
exec invoke --search-root "$here" "$@"
