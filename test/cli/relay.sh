#!/bin/sh
# `evdispatch relay` as a process, with signals, run by ctest (test/CMakeLists.txt):
#
#   relay.sh EVDISPATCH drain
#       A relay holding 200 events (batches of 1000, flushed after a minute) gets SIGTERM:
#       it exits 0 and its final line says 200 delivered, none lost; the collector counted
#       200 unique events.
#   relay.sh EVDISPATCH deadline
#       The upstream reads batches and never answers (collector --stall): SIGTERM with
#       --drain-timeout 500ms exits 0 and reports all 120 events as close_deadline.
#   relay.sh EVDISPATCH second-signal
#       The same upstream, --drain-timeout 60s: a second SIGTERM ends the relay at once
#       (status 1), its final line saying "interrupted" and how many were not delivered.
#   relay.sh EVDISPATCH spool
#       The upstream refuses connections: SIGTERM with --drain-timeout 300ms and --spool-dir
#       leaves the 40 events in the spool; a second relay on the same spool, once the upstream
#       is up, delivers them (the collector counts 40 unique events).
#
# HTTP requests are made with Python's standard library. Only 127.0.0.1 is contacted; every
# process is bounded in time and stopped on every way out (trap).

set -u

evd=$1
what=$2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evdispatch-relay.XXXXXX") || exit 1
collector_pid=
relay_pid=
cleanup() {
    for p in $relay_pid $collector_pid; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 125' INT TERM HUP PIPE

. "$(dirname "$0")/lib.sh"

# wait_line FILE SED-EXPR PID WHAT: waits (60 s at most) until sed prints something for FILE;
# sets `found` to it.
wait_line() {
    found=
    tries=0
    while [ -z "$found" ]; do
        kill -0 "$3" 2>/dev/null || fail "$4 exited early"
        tries=$((tries + 1))
        [ "$tries" -le 600 ] || fail "$4 did not start within 60 s"
        sleep 0.1
        found=$(sed -n "$2" "$1")
    done
}

# start_collector [--listen ADDR] ARGS...
start_collector() {
    listen=127.0.0.1:0
    if [ "${1:-}" = --listen ]; then
        listen=$2
        shift 2
    fi
    "$evd" collector --listen "$listen" --duration 600s --quiet "$@" \
        >"$tmp/collector.out" 2>"$tmp/collector.err" &
    collector_pid=$!
    wait_line "$tmp/collector.out" 's/^evdispatch collector listening on \(.*\) (port [0-9]*)$/\1/p' \
        "$collector_pid" "the collector"
    upstream=$found
}

# start_relay NAME ARGS...: the relay's output goes to $tmp/NAME.out; sets relay_pid, relay_url.
start_relay() {
    name=$1
    shift
    "$evd" relay --listen 127.0.0.1:0 --quiet "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    relay_pid=$!
    wait_line "$tmp/$name.out" 's/^evdispatch relay listening on \([^,]*\), .*$/\1/p' \
        "$relay_pid" "the relay"
    relay_url=$found
}

# post N FIRST: N one-visitor batches over one keep-alive connection; each must get 204.
post() {
    timeout 60 python3 - "$relay_url" "$1" "$2" <<'EOF' || fail "posting to the relay failed"
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
n, first = int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
for i in range(first, first + n):
    body = json.dumps({
        "account_id": "1", "project_id": "2", "revision": "3", "client_name": "php-sdk",
        "client_version": "4.0.0", "anonymize_ip": True, "enrich_decisions": True,
        "visitors": [{"visitor_id": "user-%d" % i, "attributes": [], "snapshots": [{
            "decisions": [], "events": [{"entity_id": "7", "key": "campaign_activated",
                                         "uuid": "6a4c2f10-0000-4000-8000-%012x" % i,
                                         "timestamp": 1700000000000}]}]}]})
    c.request("POST", u.path, body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 204:
        sys.exit("event %d: status %d" % (i, r.status))
EOF
}

# stop_relay SIGNALS...: sends each signal (0.3 s apart), waits (30 s at most); sets relay_rc
# and writes the final line's JSON to $tmp/final.json.
stop_relay() {
    for s in "$@"; do
        kill -"$s" "$relay_pid"
        sleep 0.3
    done
    tries=0
    while kill -0 "$relay_pid" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -le 300 ] || fail "the relay did not exit within 30 s of the signal"
        sleep 0.1
    done
    wait "$relay_pid"
    relay_rc=$?
    relay_pid=
    sed -n 's/^final: //p' "$tmp/$name.out" >"$tmp/final.json"
}

# collector_stats: the collector's GET /stats into $tmp/stats.json.
collector_stats() {
    python3 - "$upstream" >"$tmp/stats.json" <<'EOF' || fail "GET /stats failed"
import sys, urllib.parse, urllib.request
u = urllib.parse.urlparse(sys.argv[1])
print(urllib.request.urlopen("http://%s:%d/stats" % (u.hostname, u.port), timeout=10).read().decode())
EOF
}

case $what in
drain)
    start_collector
    start_relay relay --upstream "$upstream" --batch-size 1000 --flush-interval 60s
    post 200 0
    stop_relay TERM
    [ "$relay_rc" -eq 0 ] || fail "the relay exited with status $relay_rc"
    check_json "$tmp/final.json" 'd["accepted_events"] == 200' 'd["delivered"] == 200' \
        'd["not_delivered"] == 0' 'd["dropped"] == {}' 'not d["deadline_passed"]' \
        'd["accounting_balanced"]'
    collector_stats
    check_json "$tmp/stats.json" 'd["unique_events"] == 200' 'd["duplicates"] == 0'
    ;;
deadline)
    start_collector --stall
    start_relay relay --upstream "$upstream" --batch-size 50 --drain-timeout 500ms
    post 120 0
    stop_relay TERM
    [ "$relay_rc" -eq 0 ] || fail "the relay exited with status $relay_rc"
    check_json "$tmp/final.json" 'd["delivered"] == 0' 'd["not_delivered"] == 120' \
        'd["dropped"] == {"close_deadline": 120}' 'd["deadline_passed"]' \
        'd["accounting_balanced"]'
    ;;
second-signal)
    start_collector --stall
    start_relay relay --upstream "$upstream" --batch-size 10 --drain-timeout 60s
    post 30 0
    stop_relay TERM TERM
    [ "$relay_rc" -eq 1 ] || fail "the relay exited with status $relay_rc, not 1"
    check_json "$tmp/final.json" 'd["interrupted"]' 'd["delivered"] == 0' \
        'd["not_delivered"] == 30'
    grep -q "second signal: exiting with 30 events not delivered" "$tmp/relay.err" ||
        fail "no report of what was not delivered on stderr"
    ;;
spool)
    mkdir "$tmp/spool"
    # A port nothing listens on: bound, then closed.
    dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    start_relay relay --upstream "http://127.0.0.1:$dead/v1/events" --batch-size 10 \
        --spool-dir "$tmp/spool" --drain-timeout 300ms
    post 40 0
    stop_relay TERM
    [ "$relay_rc" -eq 0 ] || fail "the relay exited with status $relay_rc"
    check_json "$tmp/final.json" 'd["left_in_spool"] == 40' 'd["delivered"] == 0' \
        'd["accounting_balanced"]'
    # A spooled batch keeps its endpoint: the collector comes up where the upstream was.
    start_collector --listen "127.0.0.1:$dead"
    start_relay relay2 --upstream "$upstream" --spool-dir "$tmp/spool" --drain-timeout 5s
    tries=0
    while :; do
        collector_stats
        python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["unique_events"] >= 40 else 1)' \
            "$tmp/stats.json" && break
        tries=$((tries + 1))
        [ "$tries" -le 300 ] || fail "the spooled events were not delivered within 30 s"
        sleep 0.1
    done
    stop_relay TERM
    [ "$relay_rc" -eq 0 ] || fail "the second relay exited with status $relay_rc"
    check_json "$tmp/stats.json" 'd["unique_events"] == 40' 'd["duplicates"] == 0'
    ;;
*)
    fail "unknown case $what"
    ;;
esac
echo "ok: relay $what"
