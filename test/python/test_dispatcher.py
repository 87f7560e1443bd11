"""evdispatch.EventDispatcher against the real loopback collector."""

import json
import math
import pathlib
import threading

import pytest

import evdispatch
from conftest import LogEvent, batch, visitor

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "data" / "vectors"


def vector_payloads():
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and isinstance(doc.get("expected"), dict):
            out.append((path.stem, doc["expected"]))
    assert len(out) >= 20
    return out


def without_non_finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: without_non_finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [without_non_finite(x) for x in v]
    return v


def test_the_sdk_vectors_arrive_as_the_same_visitors(collector):
    vectors = vector_payloads()
    d = evdispatch.EventDispatcher(batch_size=100, flush_interval=30.0)
    for name, expected in vectors:
        # (Two vectors record the payload classes alone: no verb, no headers.)
        assert expected["http_verb"] in ("POST", None), name
        d.dispatch_event(LogEvent(collector.url, expected["payload"],
                                  expected["http_verb"] or "POST", expected["headers"]))
    report = d.close(timeout=30)
    assert report["metrics"]["balanced"]
    sent = sum(len(p["payload"]["visitors"]) for _, p in vectors)
    assert report["delivered"] == sent and report["not_delivered"] == 0
    collector.stop()
    received = collector.bodies
    # Visitor for visitor, in order within each envelope, under the envelope it was sent with.
    envelope = ("account_id", "project_id", "revision", "client_name", "client_version",
                "anonymize_ip")
    by_envelope = {}
    for body in received:
        assert body["enrich_decisions"] is True
        by_envelope.setdefault(tuple(body[k] for k in envelope), []).extend(body["visitors"])
    expected_by_envelope = {}
    for _, p in vectors:
        payload = p["payload"]
        key = tuple(payload.get(k, False) for k in envelope)
        expected_by_envelope.setdefault(key, []).extend(
            without_non_finite(payload["visitors"]))
    assert by_envelope == expected_by_envelope


def test_eight_threads_deliver_every_event_once_in_full_batches(collector):
    threads, per_thread = 8, 10_000
    d = evdispatch.EventDispatcher(batch_size=100, flush_interval=30.0, queue_capacity=100_000)
    url = collector.url

    def produce(t):
        for i in range(per_thread):
            d.dispatch_event(LogEvent(url, batch([visitor(t * per_thread + i)])))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    report = d.close(timeout=60)
    total = threads * per_thread
    assert report["delivered"] == total, report
    assert report["dropped"] == {}
    assert report["metrics"]["balanced"]
    final = collector.stop()
    assert final["unique_events"] == total
    assert final["duplicates"] == 0
    assert final["batches"] == total // 100  # every batch full
    uuids = collector.uuids()
    assert len(uuids) == len(set(uuids)) == total


def test_values_are_written_as_json_dumps_writes_them_but_valid(collector):
    tags = {"revenue": 4200, "value": float("nan"), "inf": float("inf"), "ninf": float("-inf"),
            "big": 2 ** 80, "neg": -(2 ** 70), "f": 1.5, "one": 1.0, "tuple": (1, "a", None),
            "surrogate": "a\ud800b", "unicode": "é☃😀", "ctrl": "a\nb\"c\\",
            7: "int key", 2.5: "float key", True: "bool key", None: "none key",
            "nested": {"a": [{"b": [True, False]}]}}
    d = evdispatch.EventDispatcher(batch_size=1, flush_interval=30.0)
    d.dispatch_event(LogEvent(collector.url, batch([visitor(1, tags)])))
    assert d.close(timeout=30)["delivered"] == 1
    got = collector.visitors()[0]["snapshots"][0]["events"][0]["tags"]
    assert got["revenue"] == 4200 and isinstance(got["revenue"], int)
    assert got["value"] is None and got["inf"] is None and got["ninf"] is None
    assert got["big"] == 2 ** 80 and got["neg"] == -(2 ** 70)
    assert got["f"] == 1.5 and got["one"] == 1.0 and isinstance(got["one"], float)
    assert got["tuple"] == [1, "a", None]
    assert got["surrogate"] == "a\ufffdb"
    assert got["unicode"] == "é☃😀"
    assert got["ctrl"] == "a\nb\"c\\"
    assert got["7"] == "int key" and got["2.5"] == "float key"
    assert got["true"] == "bool key" and got["null"] == "none key"
    assert got["nested"] == {"a": [{"b": [True, False]}]}


def test_visitors_of_one_call_are_rebatched_with_others(collector):
    d = evdispatch.EventDispatcher(batch_size=10, flush_interval=30.0)
    d.dispatch_event(LogEvent(collector.url, batch([visitor(i) for i in range(7)])))
    for i in range(7, 20):
        d.dispatch_event(LogEvent(collector.url, batch([visitor(i)])))
    assert d.flush(timeout=30) is True
    m = d.metrics()
    assert m["delivered"] == 20 and m["pending"] == 0 and m["balanced"]
    d.close()
    final = collector.stop()
    assert final["batches"] == 2 and final["unique_events"] == 20


def test_gzip_compression_reaches_the_collector_as_the_same_visitors(make_collector):
    collector = make_collector()
    with evdispatch.EventDispatcher(batch_size=5, compression="gzip") as d:
        for i in range(10):
            d.dispatch_event(LogEvent(collector.url, batch([visitor(i)])))
    final = collector.stop()
    assert final["gzip_batches"] == 2 and final["unique_events"] == 10
    assert sorted(v["visitor_id"] for v in collector.visitors()) == \
        sorted("user-%d" % i for i in range(10))
    # An endpoint without gzip: the same batches arrive as JSON.
    refusing = make_collector("--refuse-gzip")
    with evdispatch.EventDispatcher(batch_size=5, connections=1, compression="gzip") as d:
        for i in range(10):
            d.dispatch_event(LogEvent(refusing.url, batch([visitor(i)])))
    assert d.metrics()["delivered"] == 10
    final = refusing.stop()
    assert final["gzip_batches"] == 0 and final["unique_events"] == 10 and final["rejected"] == 1


def test_an_endpoint_given_replaces_each_log_events_url(collector):
    with evdispatch.EventDispatcher(endpoint=collector.url, batch_size=5) as d:
        for i in range(5):
            d.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events",
                                      batch([visitor(i)])))
    assert d.closed
    assert collector.stop()["unique_events"] == 5


def test_close_reports_and_counts_later_events_as_refused(collector):
    d = evdispatch.EventDispatcher(batch_size=10, flush_interval=30.0)
    for i in range(3):
        d.dispatch_event(LogEvent(collector.url, batch([visitor(i)])))
    first = d.close(timeout=30)
    assert first["delivered"] == 3 and not first["deadline_passed"]
    assert first["metrics"]["pending"] == 0
    d.dispatch_event(LogEvent(collector.url, batch([visitor(9)])))
    m = d.metrics()
    assert m["dropped"] == {"closed": 1} and m["balanced"]
    assert d.close(timeout=1)["delivered"] == 3


def test_close_at_its_deadline_counts_what_it_cut_short(make_collector):
    c = make_collector("--stall")
    d = evdispatch.EventDispatcher(batch_size=2, flush_interval=30.0, request_timeout=60.0)
    for i in range(4):
        d.dispatch_event(LogEvent(c.url, batch([visitor(i)])))
    report = d.close(timeout=0.3)
    assert report["deadline_passed"]
    assert report["delivered"] == 0
    assert report["dropped"] == {"close_deadline": 4}
    assert report["metrics"]["balanced"]


BAD = [
    ("params is not a dict", LogEvent("http://127.0.0.1:9/v1/events", [1, 2]), TypeError,
     "params must be a dict"),
    ("no visitors", LogEvent("http://127.0.0.1:9/v1/events",
                             {k: v for k, v in batch([]).items() if k != "visitors"}),
     ValueError, "no 'visitors'"),
    ("visitors not a list", LogEvent("http://127.0.0.1:9/v1/events", batch("x")), TypeError,
     "params.visitors: must be a list"),
    ("a visitor without visitor_id", LogEvent("http://127.0.0.1:9/v1/events",
                                              batch([{"snapshots": []}])),
     ValueError, "visitors[0].visitor_id"),
    ("an unsupported value", LogEvent("http://127.0.0.1:9/v1/events",
                                      batch([visitor(1, {"s": {1, 2}})])),
     TypeError, "params.visitors[0].snapshots[0].events[0].tags.s: a value of type 'set'"),
    ("an unsupported key", LogEvent("http://127.0.0.1:9/v1/events",
                                    batch([visitor(1, {(1, 2): 1})])),
     TypeError, "a key of type 'tuple'"),
    ("a non-POST verb", LogEvent("http://127.0.0.1:9/v1/events", batch([visitor(1)]), "GET"),
     ValueError, "http_verb 'GET'"),
    ("an ftp url", LogEvent("ftp://127.0.0.1/v1/events", batch([visitor(1)])), ValueError,
     "is not http(s)"),
    ("a url without a host", LogEvent("http:///v1/events", batch([visitor(1)])), ValueError,
     "dispatch_event"),
    ("a url that is not a str", LogEvent(b"http://127.0.0.1/v1/events", batch([visitor(1)])),
     TypeError, "log_event.url must be a str"),
    ("an unknown envelope field", LogEvent("http://127.0.0.1:9/v1/events",
                                           batch([visitor(1)], region="EU")),
     ValueError, "unknown field 'region'"),
    ("enrich_decisions false", LogEvent("http://127.0.0.1:9/v1/events",
                                        batch([visitor(1)], enrich_decisions=False)),
     ValueError, "enrich_decisions"),
    ("a revision that is not a str", LogEvent("http://127.0.0.1:9/v1/events",
                                              batch([visitor(1)], revision=42)),
     TypeError, "params.revision: must be a str"),
    ("not a log event", object(), TypeError, "has no 'http_verb' attribute"),
]


@pytest.mark.parametrize("name,event,error,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_and_queues_nothing(name, event, error, message):
    d = evdispatch.EventDispatcher()
    with pytest.raises(error) as e:
        d.dispatch_event(event)
    assert message in str(e.value)
    m = d.metrics()
    assert m["accepted"] == 0 and m["submitted"] == 0
    d.close(timeout=1)


def test_a_bad_visitor_after_good_ones_queues_none_of_them():
    d = evdispatch.EventDispatcher()
    bad = batch([visitor(1), visitor(2), visitor(3, {"x": object()})])
    with pytest.raises(TypeError, match=r"visitors\[2\]"):
        d.dispatch_event(LogEvent("http://127.0.0.1:9/v1/events", bad))
    assert d.metrics()["submitted"] == 0
    d.close(timeout=1)


def test_a_circular_value_is_refused():
    d = evdispatch.EventDispatcher()
    tags = {}
    tags["self"] = tags
    with pytest.raises(ValueError, match="nested deeper than 100"):
        d.dispatch_event(LogEvent("http://127.0.0.1:9/v1/events", batch([visitor(1, tags)])))
    d.close(timeout=1)


@pytest.mark.parametrize("kwargs,error", [
    ({"batch_size": 0}, ValueError), ({"flush_interval": 0.0}, ValueError),
    ({"flush_interval": float("nan")}, ValueError), ({"connections": 0}, ValueError),
    ({"endpoint": "ftp://x/"}, ValueError), ({"endpoint": 5}, TypeError),
    ({"batch_size": -1}, TypeError), ({"atexit_timeout": -1}, ValueError),
    ({"queue_capacity": 1}, ValueError), ({"compression": "brotli"}, ValueError),
])
def test_bad_configuration_raises(kwargs, error):
    with pytest.raises(error):
        evdispatch.EventDispatcher(**kwargs)


def test_defaults_are_the_librarys():
    d = evdispatch.EventDispatcher()
    assert evdispatch._evdispatch.DEFAULTS["batch_size"] == 10
    assert evdispatch._evdispatch.DEFAULTS["flush_interval"] == 30.0
    assert "accepted=0" in repr(d)
    d.close(timeout=1)
