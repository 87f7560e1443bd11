#!/bin/sh
# End-to-end checks of the evdispatch program, run by ctest (test/CMakeLists.txt):
#
#   e2e.sh EVDISPATCH receiver http|https|https-untrusted BASELINE
#       Starts `evdispatch collector` in the background on 127.0.0.1 (port 0: it picks one,
#       read from its first line) answering 503 to every 4th batch (https: with a CA and
#       certificate it makes in a temporary directory), runs `bench --url` against it with
#       --baseline BASELINE and checks the exit status and the JSON (delivered, dropped by
#       reason, accounting_balanced), then stops the collector and checks its final counters.
#       https-untrusted: bench is not given the CA, so every event fails certificate
#       verification (exit status 3).
#   e2e.sh EVDISPATCH unreachable URL BASELINE
#       bench --url URL where nothing listens: exit status 3; the processor finds the endpoint
#       down (an outage, probed) and holds every event until --close-timeout, then drops them
#       as close_deadline; the sync baselines count connect_failed.
#   e2e.sh EVDISPATCH spool
#       bench --spool-dir against a port that refuses: every event is left in the spool at
#       close; `spool inspect` counts them; `spool drain --url` delivers them to a collector
#       started afterwards (exit 0), and the spool is empty after.
#   e2e.sh EVDISPATCH usage OPTION ARGS...
#       `evdispatch ARGS...` must exit with status 2, print nothing on stdout and name OPTION
#       on stderr.
#
# Only 127.0.0.1 / localhost is contacted. Every process is bounded in time (timeout(1), and
# the collector's own --duration) and the collector is stopped on every way out (trap).

set -u

evd=$1
what=$2
shift 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evdispatch-e2e.XXXXXX") || exit 1
collector_pid=
cleanup() {
    if [ -n "$collector_pid" ]; then
        kill "$collector_pid" 2>/dev/null
        wait "$collector_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 125' INT TERM HUP PIPE

. "$(dirname "$0")/lib.sh"

# Runs `evdispatch bench` with the arguments given; sets bench_rc.
run_bench() {
    timeout 240 "$evd" bench --json --quiet "$@" >"$tmp/bench.out" 2>"$tmp/bench.err"
    bench_rc=$?
}

# Starts `evdispatch collector ARGS...` in the background on 127.0.0.1 (a free port); sets
# collector_pid and port.
start_collector() {
    "$evd" collector --listen 127.0.0.1:0 --duration 600s --quiet "$@" \
        >"$tmp/collector.out" 2>"$tmp/collector.err" &
    collector_pid=$!
    port=
    tries=0
    while [ -z "$port" ]; do
        kill -0 "$collector_pid" 2>/dev/null || fail "the collector exited early"
        tries=$((tries + 1))
        [ "$tries" -le 600 ] || fail "the collector did not start listening within 60 s"
        sleep 0.1
        port=$(sed -n 's/^evdispatch collector listening on .* (port \([0-9][0-9]*\))$/\1/p' \
            "$tmp/collector.out")
    done
}

# Stops the collector started by start_collector; its final counters go to $tmp/final.json.
stop_collector() {
    kill -TERM "$collector_pid"
    wait "$collector_pid"
    collector_rc=$?
    collector_pid=
    [ "$collector_rc" -eq 0 ] || fail "the collector exited with status $collector_rc"
    sed -n 's/^final: //p' "$tmp/collector.out" >"$tmp/final.json"
}

case $what in
receiver)
    scheme=$1
    baseline=$2
    set -- --fail-every 4 --fail-status 503
    case $scheme in
        http) ;;
        https | https-untrusted) set -- "$@" --tls-self-signed "$tmp/tls" ;;
        *) fail "unknown scheme $scheme" ;;
    esac
    start_collector "$@"
    case $scheme in
        http) url=http://127.0.0.1:$port/v1/events; set -- ;;
        https) url=https://localhost:$port/v1/events; set -- --ca-file "$tmp/tls/ca.pem" ;;
        https-untrusted) url=https://localhost:$port/v1/events; set -- ;;
    esac
    run_bench --url "$url" "$@" --events 5000 --producers 2 --baseline "$baseline" \
        --baseline-duration 1s --close-timeout 60s

    stop_collector

    if [ "$scheme" = https-untrusted ]; then
        [ "$bench_rc" -eq 3 ] || fail "bench exited with status $bench_rc, expected 3"
        check_json "$tmp/bench.out" \
            "d['delivered'] == 0 and d['accepted'] > 0" \
            "d['dropped'].get('tls_verify_failed') == d['accepted']" \
            "d['accounting_balanced'] is True"
        case $baseline in
        sync | sync-keepalive | mutex)
            check_json "$tmp/bench.out" \
                "d['baseline']['delivered'] == 0" \
                "d['baseline']['dropped'].get('tls_verify_failed', 0) > 0" \
                "d['baseline']['accounting_balanced'] is True" ;;
        esac
        check_json "$tmp/final.json" "d['batches'] == 0" "d['tls_handshake_failures'] > 0"
        grep -q 'certificate verification failed' "$tmp/bench.err" ||
            fail "bench did not say why verification failed"
        exit 0
    fi

    [ "$bench_rc" -eq 0 ] || fail "bench exited with status $bench_rc, expected 0"
    check_json "$tmp/bench.out" \
        "d['config']['url'] == '$url'" \
        "d['accounting_balanced'] is True" \
        "d['delivered'] > 0" \
        "d['delivered'] + sum(d['dropped'].values()) == d['submitted']" \
        "set(d['dropped']) <= {'queue_full', 'server_error'}"
    case $baseline in
    sync | sync-keepalive)
        # No retries: every 4th POST is answered 503 and its event is dropped as server_error.
        check_json "$tmp/bench.out" \
            "d['baseline']['accounting_balanced'] is True" \
            "d['baseline']['delivered'] > 0" \
            "set(d['baseline']['dropped']) == {'server_error'}" \
            "d['baseline']['delivered'] + d['baseline']['dropped']['server_error'] == d['baseline']['submitted']" ;;
    mutex)
        check_json "$tmp/bench.out" \
            "d['baseline']['accounting_balanced'] is True" \
            "d['baseline']['delivered'] > 0" \
            "set(d['baseline']['dropped']) <= {'queue_full', 'server_error'}" ;;
    none)
        check_json "$tmp/bench.out" "'baseline' not in d" ;;
    *) fail "unknown baseline $baseline" ;;
    esac
    # The receiver's view: the fault fired, and it saw every event reported delivered.
    base_delivered=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); \
print(d.get('baseline', {}).get('delivered', 0) + d['delivered'])" "$tmp/bench.out")
    check_json "$tmp/final.json" \
        "d['failed_batches'] > 0" \
        "d['unique_events'] >= $base_delivered"
    if [ "$scheme" = https ]; then
        check_json "$tmp/final.json" "d['tls_handshakes'] > 0"
    fi
    ;;

unreachable)
    url=$1
    baseline=$2
    run_bench --url "$url" --events 2000 --producers 2 --baseline "$baseline" \
        --baseline-duration 1s --close-timeout 2s
    [ "$bench_rc" -eq 3 ] || fail "bench exited with status $bench_rc, expected 3"
    check_json "$tmp/bench.out" \
        "d['accepted'] == 2000 and d['delivered'] == 0" \
        "d['dropped'] == {'close_deadline': 2000}" \
        "d['outages'] == 1 and d['probes'] >= 1 and d['held_peak_events'] > 0" \
        "d['accounting_balanced'] is True"
    case $baseline in
    sync | sync-keepalive)
        check_json "$tmp/bench.out" \
            "d['baseline']['delivered'] == 0" \
            "d['baseline']['submitted'] > 0" \
            "d['baseline']['dropped'] == {'connect_failed': d['baseline']['submitted']}" \
            "d['baseline']['accounting_balanced'] is True" ;;
    mutex)
        check_json "$tmp/bench.out" \
            "d['baseline']['delivered'] == 0" \
            "d['baseline']['dropped'].get('close_deadline', 0) > 0" \
            "d['baseline']['outages'] == 1" \
            "d['baseline']['accounting_balanced'] is True" ;;
    none)
        check_json "$tmp/bench.out" "'baseline' not in d" ;;
    *) fail "unknown baseline $baseline" ;;
    esac
    grep -q 'no event was delivered' "$tmp/bench.err" || fail "bench did not say why it exits 3"
    ;;

spool)
    mkdir "$tmp/spool"
    run_bench --url http://127.0.0.1:1/v1/events --events 2000 --producers 2 --baseline none \
        --close-timeout 1s --spool-dir "$tmp/spool"
    [ "$bench_rc" -eq 3 ] || fail "bench exited with status $bench_rc, expected 3"
    check_json "$tmp/bench.out" \
        "d['accepted'] == 2000 and d['delivered'] == 0" \
        "d['dropped'] == {}" \
        "d['left_in_spool'] == 2000" \
        "d['accounting_balanced'] is True"
    timeout 60 "$evd" spool inspect "$tmp/spool" --json >"$tmp/inspect.out" 2>"$tmp/inspect.err" ||
        fail "spool inspect failed"
    check_json "$tmp/inspect.out" "d['events'] == 2000" "d['records'] > 0"
    start_collector
    timeout 120 "$evd" spool drain "$tmp/spool" --url "http://127.0.0.1:$port/v1/events" --json \
        >"$tmp/drain.out" 2>"$tmp/drain.err"
    drain_rc=$?
    [ "$drain_rc" -eq 0 ] || fail "spool drain exited with status $drain_rc, expected 0"
    check_json "$tmp/drain.out" \
        "d['recovered'] == 2000 and d['delivered'] == 2000" \
        "d['dropped'] == {} and d['left_in_spool'] == 0"
    timeout 60 "$evd" spool inspect "$tmp/spool" --json >"$tmp/inspect.out" 2>"$tmp/inspect.err" ||
        fail "spool inspect failed"
    check_json "$tmp/inspect.out" "d['events'] == 0"
    stop_collector
    check_json "$tmp/final.json" "d['unique_events'] == 2000" "d['rejected'] == 0"
    ;;

usage)
    option=$1
    shift
    timeout 60 "$evd" "$@" >"$tmp/usage.out" 2>"$tmp/usage.err"
    rc=$?
    [ "$rc" -eq 2 ] || fail "'evdispatch $*' exited with status $rc, expected 2"
    [ -s "$tmp/usage.out" ] && fail "'evdispatch $*' printed on stdout"
    grep -q -e "$option" "$tmp/usage.err" || fail "the message does not name $option"
    cat "$tmp/usage.err"
    ;;

*)
    fail "unknown case $what"
    ;;
esac
exit 0
