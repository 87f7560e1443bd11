#!/usr/bin/env python3
"""evdispatch's Python EventDispatcher against a synchronous one-POST-per-call dispatcher
(what the Optimizely Python SDK's default EventDispatcher does), in the same run, against the
project's loopback collector answering after --delay-ms (default 20 ms: a remote endpoint).

Each call hands one LogEvent with one visitor, as the SDK's default event processor does.
Reports the caller's latency of dispatch_event (p50, p99), the events delivered per second
and the process CPU time per event, for both, and their ratios. docs/python.md has numbers.

    PYTHONPATH=build/release/python python3 bench/python/bench_dispatch.py \\
        --cli build/release/evdispatch --duration 10
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import requests

import evdispatch


class LogEvent:
    def __init__(self, url, params):
        self.url = url
        self.params = params
        self.http_verb = "POST"
        self.headers = {"Content-Type": "application/json"}


def make_params(n):
    return {
        "account_id": "12001", "project_id": "111001", "revision": "42",
        "client_name": "python-sdk", "client_version": "5.5.0", "anonymize_ip": False,
        "enrich_decisions": True,
        "visitors": [{
            "visitor_id": "user-%d" % n,
            "attributes": [{"entity_id": "111094", "key": "browser", "type": "custom",
                            "value": "chrome"}],
            "snapshots": [{
                "decisions": [{"campaign_id": "111182", "experiment_id": "111127",
                               "variation_id": "111129",
                               "metadata": {"flag_key": "checkout", "rule_key": "exp",
                                            "rule_type": "experiment",
                                            "variation_key": "treatment", "enabled": True}}],
                "events": [{"entity_id": "111182", "key": "campaign_activated",
                            "timestamp": 1700000000000 + n, "uuid": str(uuid.uuid4())}],
            }],
        }],
    }


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(name, dispatch, finish, url, duration, threads):
    """`threads` callers call dispatch(LogEvent) for `duration` seconds; then finish()."""
    latencies = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    calls = [0]

    def caller(t):
        mine = []
        n = t * 100_000_000
        while time.monotonic() < stop_at:
            ev = LogEvent(url, make_params(n))
            n += 1
            start = time.perf_counter_ns()
            dispatch(ev)
            mine.append(time.perf_counter_ns() - start)
        with lock:
            latencies.extend(mine)
            calls[0] += len(mine)

    cpu0, wall0 = time.process_time(), time.monotonic()
    workers = [threading.Thread(target=caller, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    delivered = finish()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    latencies.sort()
    return {
        "dispatcher": name, "calls": calls[0], "delivered": delivered,
        "seconds": round(wall, 3),
        "delivered_events_per_sec": round(delivered / wall, 1),
        "caller_us_p50": round(percentile(latencies, 0.50) / 1000, 2),
        "caller_us_p99": round(percentile(latencies, 0.99) / 1000, 2),
        "cpu_us_per_event": round(cpu * 1e6 / max(delivered, 1), 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default=os.environ.get("EVDISPATCH_CLI", "build/release/evdispatch"),
                    help="the evdispatch program (for its collector)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per dispatcher")
    ap.add_argument("--delay-ms", type=int, default=20, help="the collector's answer delay")
    ap.add_argument("--threads", type=int, default=1, help="calling threads")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--flush-interval", type=float, default=1.0)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args()

    col = subprocess.Popen([a.cli, "collector", "--listen", "127.0.0.1:0", "--quiet",
                            "--delay-ms", str(a.delay_ms), "--threads", "2",
                            "--duration", "%ds" % int(4 * a.duration + 120)],
                           stdout=subprocess.PIPE, text=True)
    try:
        line = col.stdout.readline()
        url = line.split("listening on ")[1].split(" ")[0]

        # The workload alone (building each LogEvent, timing the call): what the others add to.
        made = [0]

        def nothing(ev):
            made[0] += 1

        alone = run("building the LogEvents alone", nothing, lambda: made[0], url,
                    min(a.duration, 3.0), a.threads)

        d = evdispatch.EventDispatcher(batch_size=a.batch_size, flush_interval=a.flush_interval,
                                       queue_capacity=1_000_000)

        def finish_evdispatch():
            report = d.close(timeout=60)
            assert report["metrics"]["balanced"], report
            return report["delivered"]

        ours = run("evdispatch", d.dispatch_event, finish_evdispatch, url, a.duration,
                   a.threads)
        ours["dropped"] = d.metrics()["dropped"]

        sent = [0]

        def post(ev):  # the SDK's default dispatcher: a new session, one POST, per call
            with requests.Session() as s:
                r = s.post(ev.url, data=json.dumps(ev.params), headers=ev.headers, timeout=10)
            if 200 <= r.status_code < 300:
                sent[0] += 1

        base = run("sync requests.post per call", post, lambda: sent[0], url, a.duration,
                   a.threads)
    finally:
        col.send_signal(signal.SIGTERM)
        col.communicate(timeout=60)

    result = {
        "delay_ms": a.delay_ms, "threads": a.threads, "batch_size": a.batch_size,
        "flush_interval_s": a.flush_interval, "workload": alone, "evdispatch": ours,
        "baseline": base,
        "evdispatch_cpu_us_per_event_beyond_workload": round(
            ours["cpu_us_per_event"] - alone["cpu_us_per_event"], 1),
        "throughput_ratio": round(ours["delivered_events_per_sec"] /
                                  max(base["delivered_events_per_sec"], 1e-9), 1),
        "caller_p50_ratio": round(base["caller_us_p50"] / max(ours["caller_us_p50"], 1e-9), 1),
        "cpu_per_event_ratio": round(base["cpu_us_per_event"] /
                                     max(ours["cpu_us_per_event"], 1e-9), 1),
    }
    if a.json:
        print(json.dumps(result))
        return 0
    print("collector %d ms away, %d calling thread(s), %.0f s each" %
          (a.delay_ms, a.threads, a.duration))
    print("%-30s %12s %12s %14s %12s %12s" % ("dispatcher", "calls", "delivered", "events/s",
                                               "caller p50", "caller p99"))
    for r in (alone, ours, base):
        print("%-30s %12d %12d %14.1f %10.2fus %10.2fus   %.1f us CPU/event" %
              (r["dispatcher"], r["calls"], r["delivered"], r["delivered_events_per_sec"],
               r["caller_us_p50"], r["caller_us_p99"], r["cpu_us_per_event"]))
    print("evdispatch: %.1fx the events/s, caller p50 %.1fx shorter, %.1fx less CPU per event"
          % (result["throughput_ratio"], result["caller_p50_ratio"],
             result["cpu_per_event_ratio"]))
    print("evdispatch's own CPU per event (beyond building the LogEvent): %.1f us"
          % result["evdispatch_cpu_us_per_event_beyond_workload"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
