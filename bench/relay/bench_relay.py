#!/usr/bin/env python3
"""Synchronous clients posting one event per request (as Optimizely's PHP SDK does), once
straight to the project's loopback collector answering after --delay-ms (default 20 ms: a
remote event endpoint), and once through `evdispatch relay` to the same collector, in the
same run.

Each of --clients threads posts one-visitor event batches for --duration seconds, waiting for
each answer; with --new-connection (the default, as PHP's share-nothing requests do) each POST
opens a connection of its own, with --keep-alive one connection per client is reused.
Reports for both: requests answered 2xx, client-observed latency (p50, p99), events delivered
to the collector per second (through the relay: counted until the relay has drained), and for
the relay its own CPU time per event (from wait4). docs/relay.md has numbers.

    python3 bench/relay/bench_relay.py --cli build/release/evdispatch --duration 10
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid


def body(n):
    return json.dumps({
        "account_id": "12001", "project_id": "111001", "revision": "42",
        "client_name": "php-sdk", "client_version": "4.0.0", "anonymize_ip": False,
        "enrich_decisions": True,
        "visitors": [{
            "visitor_id": "user-%d" % n,
            "attributes": [{"entity_id": "111094", "key": "browser", "type": "custom",
                            "value": "chrome"}],
            "snapshots": [{
                "decisions": [{"campaign_id": "111182", "experiment_id": "111127",
                               "variation_id": "111129"}],
                "events": [{"entity_id": "111182", "key": "campaign_activated",
                            "timestamp": 1700000000000 + n, "uuid": str(uuid.uuid4())}],
            }],
        }],
    }).encode()


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def collector_events(url):
    u = urllib.parse.urlparse(url)
    with urllib.request.urlopen("http://%s:%d/stats" % (u.hostname, u.port), timeout=10) as r:
        return json.loads(r.read())["unique_events"]


def drive(url, clients, duration, new_connection):
    """`clients` threads POST one event per request to `url` for `duration` seconds."""
    u = urllib.parse.urlparse(url)
    latencies, lock = [], threading.Lock()
    counts = {"ok": 0, "other": 0}
    stop_at = time.monotonic() + duration

    def client(t):
        mine, ok, other = [], 0, 0
        n = t * 100_000_000
        conn = None
        while time.monotonic() < stop_at:
            payload = body(n)
            n += 1
            start = time.perf_counter_ns()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                conn.request("POST", u.path, payload, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn = None
            mine.append(time.perf_counter_ns() - start)
            if 200 <= status < 300:
                ok += 1
            else:
                other += 1
            if new_connection and conn is not None:
                conn.close()
                conn = None
        with lock:
            latencies.extend(mine)
            counts["ok"] += ok
            counts["other"] += other

    wall0 = time.monotonic()
    workers = [threading.Thread(target=client, args=(t,)) for t in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    latencies.sort()
    return {
        "requests_2xx": counts["ok"], "requests_other": counts["other"],
        "client_seconds": round(time.monotonic() - wall0, 3),
        "latency_ms_p50": round(percentile(latencies, 0.50) / 1e6, 3),
        "latency_ms_p99": round(percentile(latencies, 0.99) / 1e6, 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default=os.environ.get("EVDISPATCH_CLI", "build/release/evdispatch"),
                    help="the evdispatch program (collector and relay)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of posting per run")
    ap.add_argument("--delay-ms", type=int, default=20, help="the collector's answer delay")
    ap.add_argument("--clients", type=int, default=8, help="synchronous client threads")
    ap.add_argument("--keep-alive", action="store_true",
                    help="one connection per client instead of one per POST")
    ap.add_argument("--batch-size", type=int, default=100, help="the relay's --batch-size")
    ap.add_argument("--durable-ack", action="store_true",
                    help="the relay answers once each batch is fsynced to a spool (a temporary "
                         "directory)")
    ap.add_argument("--flush-interval", default=None,
                    help="the relay's --flush-interval (default 1s, 20ms with --durable-ack)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args()
    new_connection = not a.keep_alive
    spool = None

    col = subprocess.Popen([a.cli, "collector", "--listen", "127.0.0.1:0", "--quiet",
                            "--delay-ms", str(a.delay_ms), "--threads", "2",
                            "--duration", "%ds" % int(4 * a.duration + 120)],
                           stdout=subprocess.PIPE, text=True)
    try:
        upstream = col.stdout.readline().split("listening on ")[1].split(" ")[0]

        before = collector_events(upstream)
        direct = drive(upstream, a.clients, a.duration, new_connection)
        direct["delivered"] = collector_events(upstream) - before
        direct["delivered_events_per_sec"] = round(direct["delivered"] / direct["client_seconds"], 1)

        relay_args = [a.cli, "relay", "--listen", "127.0.0.1:0", "--quiet",
                      "--upstream", upstream, "--batch-size", str(a.batch_size),
                      "--max-pending", "1000000", "--drain-timeout", "60s"]
        if a.durable_ack:
            spool = tempfile.mkdtemp(prefix="evdispatch-relay-bench-")
            relay_args += ["--durable-ack", "--spool-dir", spool]
        relay_args += ["--flush-interval",
                       a.flush_interval or ("20ms" if a.durable_ack else "1s")]
        relay = subprocess.Popen(relay_args, stdout=subprocess.PIPE, text=True)
        relay_url = relay.stdout.readline().split("listening on ")[1].split(",")[0]
        before = collector_events(upstream)
        t0 = time.monotonic()
        via = drive(relay_url, a.clients, a.duration, new_connection)
        relay.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(relay.pid, 0)
        relay.returncode = os.waitstatus_to_exitcode(status)
        drained = time.monotonic() - t0
        final = json.loads(relay.stdout.read().split("final: ")[1])
        via["delivered"] = collector_events(upstream) - before
        via["relay_reported_delivered"] = final["delivered"]
        via["seconds_until_drained"] = round(drained, 3)
        via["delivered_events_per_sec"] = round(via["delivered"] / drained, 1)
        via["relay_cpu_us_per_event"] = round(
            (usage.ru_utime + usage.ru_stime) * 1e6 / max(via["delivered"], 1), 1)
        via["relay_kernel_share"] = round(
            usage.ru_stime / max(usage.ru_utime + usage.ru_stime, 1e-9), 3)
        via["relay_exit_status"] = relay.returncode
        if relay.returncode != 0 or not final["accounting_balanced"]:
            sys.exit("the relay did not drain cleanly: %s" % final)
        if via["delivered"] != via["requests_2xx"]:
            sys.exit("204s (%d) and events delivered (%d) differ" %
                     (via["requests_2xx"], via["delivered"]))
    finally:
        col.send_signal(signal.SIGTERM)
        col.communicate(timeout=60)
        if spool:
            shutil.rmtree(spool, ignore_errors=True)

    result = {
        "delay_ms": a.delay_ms, "clients": a.clients, "new_connection": new_connection,
        "relay_batch_size": a.batch_size, "durable_ack": a.durable_ack, "direct": direct,
        "relay": via,
        "throughput_ratio": round(via["delivered_events_per_sec"] /
                                  max(direct["delivered_events_per_sec"], 1e-9), 1),
        "latency_p50_ratio": round(direct["latency_ms_p50"] / max(via["latency_ms_p50"], 1e-9),
                                   1),
    }
    if a.json:
        print(json.dumps(result))
        return 0
    print("collector %d ms away, %d synchronous clients, %s, %.0f s each%s" %
          (a.delay_ms, a.clients, "a new connection per POST" if new_connection
           else "keep-alive", a.duration,
           ", relay --durable-ack (spool, fsync per batch)" if a.durable_ack else ""))
    print("%-22s %12s %12s %12s %16s" % ("path", "2xx", "p50", "p99", "delivered/s"))
    for name, r in (("straight to collector", direct), ("through the relay", via)):
        print("%-22s %12d %10.3fms %10.3fms %16.1f" %
              (name, r["requests_2xx"], r["latency_ms_p50"], r["latency_ms_p99"],
               r["delivered_events_per_sec"]))
    print("relay: %.1fx the events/s, p50 %.1fx shorter; relay CPU %.1f us per event "
          "(%.0f%% of it in the kernel)"
          % (result["throughput_ratio"], result["latency_p50_ratio"],
             via["relay_cpu_us_per_event"], 100 * via["relay_kernel_share"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
