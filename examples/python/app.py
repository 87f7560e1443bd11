#!/usr/bin/env python3
"""A small web app that decides variations with the Optimizely Python SDK and sends the
impressions through evdispatch (examples/README.md, docs/python.md).

    GET /decide?user=ID  ->  {"user": "ID", "variation": "KEY"}

The wiring is three lines (see make_client): build an evdispatch.EventDispatcher and give it to
the SDK as its event_dispatcher. Where the SDK is not installed (it is not a Debian package),
a stand-in with the same shape is used: it builds the LogEvent the SDK would (one visitor per
call, as the SDK's default event processor does) and calls dispatch_event, so the evdispatch
side is exactly what it is under the SDK.

    python3 examples/python/app.py --cli build/release/evdispatch --demo 500
"""

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import evdispatch

DATAFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "beast_server",
                        "datafile.json")


def make_client(datafile_json, dispatcher):
    """The Optimizely client, sending its events through `dispatcher`."""
    try:
        from optimizely import optimizely
    except ImportError:
        return StandInClient(json.loads(datafile_json), dispatcher)
    return optimizely.Optimizely(datafile_json, event_dispatcher=dispatcher)


class LogEvent:
    """The shape of optimizely.event.log_event.LogEvent."""

    def __init__(self, url, params):
        self.url = url
        self.params = params
        self.http_verb = "POST"
        self.headers = {"Content-Type": "application/json"}


class StandInClient:
    """activate() as the SDK does it, for this example's single experiment: bucket the user
    (a hash, not the SDK's MurmurHash3), then hand the impression to the event dispatcher."""

    URL = "https://logx.optimizely.com/v1/events"

    def __init__(self, datafile, dispatcher):
        self.datafile = datafile
        self.dispatcher = dispatcher
        self.experiments = {e["key"]: e for e in datafile["experiments"]}

    def activate(self, experiment_key, user_id):
        exp = self.experiments[experiment_key]
        bucket = int(hashlib.sha1(user_id.encode()).hexdigest()[:8], 16) % 10000
        variation_id = next((t["entityId"] for t in exp["trafficAllocation"]
                             if bucket < t["endOfRange"]), None)
        if variation_id is None:
            return None
        variation = next(v for v in exp["variations"] if v["id"] == variation_id)
        self.dispatcher.dispatch_event(LogEvent(self.URL, self.impression(exp, variation,
                                                                          user_id)))
        return variation["key"]

    def impression(self, exp, variation, user_id):
        return {
            "account_id": self.datafile["accountId"], "project_id": self.datafile["projectId"],
            "revision": self.datafile["revision"], "client_name": "python-sdk",
            "client_version": "5.5.0", "anonymize_ip": False, "enrich_decisions": True,
            "visitors": [{
                "visitor_id": user_id, "attributes": [],
                "snapshots": [{
                    "decisions": [{"campaign_id": exp["layerId"], "experiment_id": exp["id"],
                                   "variation_id": variation["id"],
                                   "metadata": {"flag_key": "", "rule_key": exp["key"],
                                                "rule_type": "experiment",
                                                "variation_key": variation["key"],
                                                "enabled": True}}],
                    "events": [{"entity_id": exp["layerId"], "key": "campaign_activated",
                                "timestamp": int(time.time() * 1000),
                                "uuid": str(uuid.uuid4())}],
                }],
            }],
        }


def make_handler(client):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as two writes

        def do_GET(self):
            url = urlparse(self.path)
            user = parse_qs(url.query).get("user", [""])[0]
            if url.path != "/decide" or not user:
                self.send_error(404, "GET /decide?user=ID")
                return
            # The SDK records the impression through evdispatch: no I/O here.
            variation = client.activate("test_experiment", user)
            body = json.dumps({"user": user, "variation": variation}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    return Handler


def start_collector(cli):
    """The project's loopback collector, standing in for Optimizely's endpoint."""
    proc = subprocess.Popen([cli, "collector", "--listen", "127.0.0.1:0", "--quiet",
                             "--duration", "600s"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    return proc, line.split("listening on ")[1].split(" ")[0]


def demo(server, requests, dispatcher):
    """Drives the server with `requests` GETs over one keep-alive connection."""
    conn = HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    start = time.monotonic()
    decided = 0  # users the experiment's traffic allocation takes (90% here): one impression each
    for i in range(requests):
        conn.request("GET", "/decide?user=user-%d" % i)
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 200
        decided += body["variation"] is not None
    elapsed = time.monotonic() - start
    conn.close()
    report = dispatcher.close(timeout=10)
    print("%d requests in %.2f s (%.0f us each), %d impressions; delivered %d, not delivered %d"
          % (requests, elapsed, elapsed * 1e6 / requests, decided, report["delivered"],
             report["not_delivered"]))
    return report["delivered"] == decided and report["not_delivered"] == 0


def main():
    ap = argparse.ArgumentParser(description="the Optimizely SDK with evdispatch")
    ap.add_argument("--endpoint", help="where events go (default: an embedded collector)")
    ap.add_argument("--cli", default=os.environ.get("EVDISPATCH_CLI", "build/release/evdispatch"),
                    help="the evdispatch program, for the embedded collector")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--demo", type=int, metavar="N", help="send N requests to itself, then exit")
    a = ap.parse_args()

    collector = None
    endpoint = a.endpoint
    if endpoint is None:
        collector, endpoint = start_collector(a.cli)

    # The three lines: batched, asynchronous delivery for the SDK's events.
    dispatcher = evdispatch.EventDispatcher(endpoint=endpoint, batch_size=50,
                                            flush_interval=1.0)
    with open(DATAFILE) as f:
        client = make_client(f.read(), dispatcher)

    server = ThreadingHTTPServer(("127.0.0.1", 0 if a.demo else a.port), make_handler(client))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        if a.demo:
            return 0 if demo(server, a.demo, dispatcher) else 1
        print("listening on http://127.0.0.1:%d/decide?user=ID (Ctrl-C to stop)"
              % server.server_address[1], file=sys.stderr)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        print(dispatcher.close(timeout=5), file=sys.stderr)
        return 0
    finally:
        server.shutdown()
        if collector:
            collector.send_signal(signal.SIGTERM)
            collector.communicate(timeout=30)


if __name__ == "__main__":
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
