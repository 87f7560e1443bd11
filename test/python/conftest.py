"""Fixtures of the Python package's tests: the project's own loopback collector (the
`evdispatch collector` command, EVDISPATCH_CLI) and a LogEvent shaped as the Optimizely SDK's."""

import json
import os
import signal
import subprocess
import urllib.request
import uuid

import pytest


class LogEvent:
    """Duck-typed as optimizely.event.log_event.LogEvent (url, params, http_verb, headers)."""

    def __init__(self, url, params, http_verb="POST", headers=None):
        self.url = url
        self.params = params
        self.http_verb = http_verb
        self.headers = headers if headers is not None else {"Content-Type": "application/json"}


def visitor(n, tags=None):
    """One conversion visitor, with a uuid of its own."""
    event = {"entity_id": "7001", "key": "purchase", "timestamp": 1700000000000 + n,
             "uuid": str(uuid.uuid4())}
    if tags is not None:
        event["tags"] = tags
    return {"visitor_id": "user-%d" % n, "attributes": [],
            "snapshots": [{"decisions": [], "events": [event]}]}


def batch(visitors, **envelope):
    """An event batch as the Python SDK's EventFactory builds its params."""
    params = {"account_id": "12001", "project_id": "111001", "visitors": visitors,
              "enrich_decisions": True, "anonymize_ip": False, "revision": "42",
              "client_name": "python-sdk", "client_version": "5.5.0"}
    params.update(envelope)
    return params


class Collector:
    """`evdispatch collector` on 127.0.0.1, recording the batches it accepts."""

    def __init__(self, tmp_path, *args):
        cli = os.environ.get("EVDISPATCH_CLI")
        if not cli:
            pytest.skip("EVDISPATCH_CLI (the evdispatch program) is not set")
        self.record = tmp_path / "bodies.json"
        self.proc = subprocess.Popen(
            [cli, "collector", "--listen", "127.0.0.1:0", "--quiet", "--duration", "300s",
             "--record", str(self.record), *args],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError("the collector did not start: %r" % line)
        self.url = line.split("listening on ")[1].split(" ")[0]
        self.port = int(line.rsplit("(port ", 1)[1].rstrip(")\n"))
        self.final = None
        self.bodies = None

    def stats(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/stats" % self.port, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        """Stops it; returns its final counters and sets self.bodies (the accepted batches)."""
        if self.final is None:
            self.proc.send_signal(signal.SIGTERM)
            out, _ = self.proc.communicate(timeout=60)
            assert self.proc.returncode == 0, out
            final = [l for l in out.splitlines() if l.startswith("final: ")]
            self.final = json.loads(final[-1][len("final: "):])
            self.bodies = json.loads(self.record.read_text())
        return self.final

    def visitors(self):
        self.stop()
        return [v for b in self.bodies for v in b["visitors"]]

    def uuids(self):
        return [e["uuid"] for v in self.visitors() for s in v["snapshots"] for e in s["events"]]


@pytest.fixture
def collector(tmp_path):
    c = Collector(tmp_path)
    yield c
    if c.proc.poll() is None:
        c.proc.kill()
        c.proc.wait()


@pytest.fixture
def make_collector(tmp_path):
    made = []

    def make(*args):
        c = Collector(tmp_path, *args)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()
