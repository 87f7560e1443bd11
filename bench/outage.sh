#!/bin/sh
# The outage benchmark of docs/delivery.md: a receiver (`evdispatch collector`, its own process)
# that stops listening for DOWN after its 200th request, while `evdispatch bench` sends at RATE
# events/s for DURATION. Prints bench's JSON, then the collector's final line.
#   bench/outage.sh [EVDISPATCH] [DOWN] [RATE] [DURATION] [extra bench options...]
# Defaults: ./build/release/evdispatch, 30s, 20000, 45s. EVDISPATCH may be another build (an
# earlier version) to compare; the receiver is always ./build/release/evdispatch.
# Only 127.0.0.1 is used; the collector stops when the script ends (trap), or after an hour.
# With the disk spool (docs/delivery.md, "Disk spool"), e.g. a 10-minute outage:
#   bench/outage.sh ./build/release/evdispatch 600s 20000 780s --spool-dir DIR --spool-max-bytes 20000000000
set -eu
evd=${1:-./build/release/evdispatch}
down=${2:-30s}
rate=${3:-20000}
duration=${4:-45s}
[ $# -gt 4 ] && shift 4 || set --
receiver=./build/release/evdispatch
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evdispatch-outage.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 125' INT TERM HUP
"$receiver" collector --listen 127.0.0.1:0 --down-after 200 --down-for "$down" --duration 3600s \
    --quiet >"$tmp/collector.out" 2>&1 &
pid=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$tmp/collector.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "the collector did not start" >&2; cat "$tmp/collector.out" >&2; exit 1; }
rc=0
"$evd" bench --url "http://127.0.0.1:$port/v1/events" --rate "$rate" --producers 2 \
    --duration "$duration" --baseline none --close-timeout 60s --quiet --json "$@" || rc=$?
kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
pid=
grep '^final:' "$tmp/collector.out" || true
exit $rc
