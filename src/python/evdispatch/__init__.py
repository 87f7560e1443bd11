"""evdispatch: batched, asynchronous delivery of Optimizely events, for the Python SDK.

    import evdispatch
    from optimizely import optimizely

    dispatcher = evdispatch.EventDispatcher(batch_size=50, flush_interval=1.0)
    client = optimizely.Optimizely(datafile, event_dispatcher=dispatcher)

``dispatch_event(log_event)`` returns in microseconds and never does I/O on the caller's
thread: each visitor of the LogEvent becomes one event, re-batched across calls with the
others of the same account, project, revision, client and url, and sent by evdispatch's own
thread over pooled keep-alive connections, with retries, outage handling and an optional disk
spool. See docs/python.md.
"""

import atexit
import logging
import threading
import weakref

from . import _evdispatch

__all__ = ["EventDispatcher", "__version__"]
__version__ = _evdispatch.__version__

_DEFAULTS = _evdispatch.DEFAULTS

# Dispatchers still open, closed at exit (atexit_timeout each). Weak: a dispatcher nobody holds
# is closed by its own destructor instead.
_open = weakref.WeakSet()
_open_lock = threading.Lock()


class EventDispatcher:
    """An Optimizely ``event_dispatcher`` that batches and delivers asynchronously.

    Keyword arguments (defaults are the library's):

    endpoint           None: each LogEvent's own url (Optimizely's, per region); or a URL that
                       every event goes to instead (e.g. a relay).
    batch_size         events per request (10).
    flush_interval     seconds before a batch that is not full is sent (30.0).
    max_batch_bytes    bytes per request body (1 MiB).
    queue_capacity     events waiting for the dispatch thread (10,000); beyond, events are
                       dropped and counted (metrics()["dropped"]["queue_full"]).
    backlog_max_bytes  bytes of batches waiting to be sent, retried or held during an outage
                       (16 MiB).
    connections        keep-alive connections per endpoint (4).
    connect_timeout    seconds to resolve, connect and complete TLS (5.0).
    request_timeout    seconds for one request and its response (10.0).
    max_attempts       attempts per batch, the first included (5).
    max_retry_time     seconds a batch may spend retrying (120.0; 0: no limit).
    ca_file            a PEM bundle trusted besides the system's ("": none).
    spool_dir          a directory where batches that cannot be sent or kept in memory are
                       written, and delivered by a later process ("": no spool).
    atexit_timeout     seconds the exit handler (and the destructor) waits for delivery (2.0).
    compression        "none" (the default) or "gzip": each batch compressed once, sent with
                       Content-Encoding: gzip; JSON again for an endpoint that answers 415/400.
    """

    def __init__(self, *, endpoint=None, batch_size=_DEFAULTS["batch_size"],
                 flush_interval=_DEFAULTS["flush_interval"],
                 max_batch_bytes=_DEFAULTS["max_batch_bytes"],
                 queue_capacity=_DEFAULTS["queue_capacity"],
                 backlog_max_bytes=_DEFAULTS["backlog_max_bytes"],
                 connections=_DEFAULTS["connections"],
                 connect_timeout=_DEFAULTS["connect_timeout"],
                 request_timeout=_DEFAULTS["request_timeout"],
                 max_attempts=_DEFAULTS["max_attempts"],
                 max_retry_time=_DEFAULTS["max_retry_time"],
                 ca_file=None, spool_dir=None, atexit_timeout=2.0, compression="none"):
        if endpoint is not None and not isinstance(endpoint, str):
            raise TypeError("endpoint must be a str or None")
        self._atexit_timeout = float(atexit_timeout)
        if not 0.0 <= self._atexit_timeout <= 3600.0:
            raise ValueError("atexit_timeout must be between 0 and 3600 seconds")
        self._engine = _evdispatch.Engine(
            endpoint=endpoint or "", batch_size=batch_size, flush_interval=flush_interval,
            max_batch_bytes=max_batch_bytes, queue_capacity=queue_capacity,
            backlog_max_bytes=backlog_max_bytes, connections=connections,
            connect_timeout=connect_timeout, request_timeout=request_timeout,
            max_attempts=max_attempts, max_retry_time=max_retry_time,
            ca_file=ca_file or "", spool_dir=spool_dir or "",
            close_timeout=self._atexit_timeout, compression=compression)
        # The SDK calls dispatch_event once per LogEvent: bound straight to the engine, so a
        # call costs no Python frame of ours.
        self.dispatch_event = self._engine.dispatch_event
        with _open_lock:
            _open.add(self)

    def dispatch_event(self, log_event):  # replaced per instance by the engine's (see above)
        """Queue the visitors of an Optimizely LogEvent (url, http_verb, params, headers).

        Returns at once; raises TypeError or ValueError, queueing nothing, when the LogEvent
        is not an event batch evdispatch can send.
        """
        self._engine.dispatch_event(log_event)

    def flush(self, timeout=None):
        """Send what is batched now and wait until every event given before is delivered or
        dropped. Returns False if `timeout` seconds passed first (delivery goes on)."""
        return self._engine.flush(timeout)

    def close(self, timeout=5.0):
        """Stop accepting, send everything, and wait up to `timeout` seconds. Returns the
        close report: delivered, not_delivered, dropped (by reason), deadline_passed,
        spooled and the final metrics. Later calls return the same report."""
        with _open_lock:
            _open.discard(self)
        return self._engine.close(timeout)

    def metrics(self):
        """The counters now, as a dict; metrics()["balanced"] checks that
        accepted == delivered + dropped after acceptance + pending + left in the spool."""
        return self._engine.metrics()

    @property
    def closed(self):
        return self._engine.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        m = self._engine.metrics()
        return ("<evdispatch.EventDispatcher accepted=%d delivered=%d pending=%d dropped=%d%s>"
                % (m["accepted"], m["delivered"], m["pending"], m["dropped_total"],
                   " closed" if self.closed else ""))


@atexit.register
def _close_at_exit():
    with _open_lock:
        open_now = list(_open)
        _open.clear()
    log = logging.getLogger("evdispatch")
    for d in open_now:
        try:
            report = d._engine.close(d._atexit_timeout)
        except Exception as e:  # an exit handler must not raise
            log.warning("evdispatch: closing at exit failed: %s", e)
            continue
        if report["not_delivered"] or report["deadline_passed"]:
            log.warning("evdispatch: at exit, %d events delivered, %d not delivered %s, "
                        "%d left in the spool", report["delivered"], report["not_delivered"],
                        report["dropped"], report["spooled"])
