#!/usr/bin/env bash
# Smoke test of beast_server's graceful shutdown: start it on a free port, make one request,
# send SIGTERM, and expect exit status 0 with the impression delivered.
# Usage: shutdown_test.sh PATH_TO_evdispatch_example_beast_server
set -euo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$1" --port 0 --threads 2 2>"$log" &
server=$!
for _ in $(seq 100); do  # wait for "listening on http://127.0.0.1:PORT/..."
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$log")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "server did not start"; cat "$log"; kill "$server"; exit 1; }
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /decide?user=alice HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
answer=$(cat <&3)
exec 3<&-
echo "$answer" | tail -1
grep -q '"recorded":true' <<<"$answer" || { echo "unexpected answer"; kill "$server"; exit 1; }
kill -TERM "$server"
wait "$server"  # set -e: a non-zero exit fails the test
cat "$log"
grep -q 'closed: delivered 1, not delivered 0' "$log"
