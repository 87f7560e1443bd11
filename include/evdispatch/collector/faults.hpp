#pragma once

/// @file faults.hpp
/// The faults the loopback collector injects (collector_config::faults,
/// collector::set_faults()).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace evdispatch {

/// Faults the collector injects. The default value injects none.
///
/// Unless a field says otherwise a fault applies to batch requests (`POST` to a path ending in
/// `/events`); `GET /stats` is always answered normally so a test can watch the counters (but
/// during an outage, see down_after). When several are set, the first that applies wins, in
/// this order: reset_mid_request, stall, accept_then_drop_response, script, fail_every,
/// retry_after_status. close_after_response and max_requests_per_connection apply to every
/// response, on top of the others. `delay` (collector_config::delay, collector::set_delay)
/// delays every response, faulty ones included.
///
/// Outages (down_after + down_for, refuse_for) act on the listening socket and the
/// connections rather than on a response: during an outage the collector does not listen
/// (connecting to collector::port() is refused) and has closed every connection that was open
/// when it began; a request read during one (already on its way when it began) is not
/// answered, whatever it is. When it is over the collector listens again on the same port, by
/// its own timer (if the port has been taken meanwhile, it tries again every 50 ms). Outages
/// are counted in collector_stats::outages and collector_stats::down_ms. set_faults() ends an
/// outage in progress; collector::pause_listening() during one keeps the collector paused
/// after it, until collector::resume_listening().
struct collector_faults {
    /// Statuses answered, in order, to the next valid batches (one entry per batch; invalid
    /// batches get their 400 and do not consume an entry). When the script runs out, batches
    /// are answered normally (or with retry_after_status). Each entry must be in 200..599.
    /// A 2xx entry counts the batch as accepted; any other counts it in
    /// collector_stats::failed_batches and leaves its events unseen (not de-duplicated).
    /// Default empty (no script). set_faults() restarts the script from its first entry.
    std::vector<unsigned> script;
    /// Retry-After values for the entries of `script` with the same index: a non-empty value is
    /// sent as the `Retry-After` header of that response. May be shorter than `script` (the
    /// rest get none), not longer. Default empty.
    std::vector<std::string> script_retry_after;
    /// When not 0, every valid batch not covered by `script` is answered with this status
    /// (200..599) and, when `retry_after` is not empty, a `Retry-After: <retry_after>` header:
    /// an endpoint that keeps throttling (e.g. 429 or 503). Default 0 (off).
    unsigned retry_after_status = 0;
    /// The Retry-After value sent with retry_after_status: delay-seconds ("1") or an
    /// HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"); sent verbatim, so printable ASCII only.
    /// Default empty (no header).
    std::string retry_after;
    /// Read each batch request and never answer it; the connection stays open (its further
    /// bytes are read and discarded) until the client closes it, pause_listening() or stop().
    /// Counted in collector_stats::stalled. Default false.
    bool stall = false;
    /// Read the request headers (not the body) of each batch request, then reset the
    /// connection (SO_LINGER 0 and close: the client sees ECONNRESET) without answering.
    /// Counted in collector_stats::resets. If the fault is set while a request's body is
    /// being read, that request is reset after its body. Default false.
    bool reset_mid_request = false;
    /// Answer every response with `Connection: close` and close the connection after it.
    /// Counted in collector_stats::fault_closes. Default false.
    bool close_after_response = false;
    /// Close each connection after this many responses, sending `Connection: close` on the
    /// last one. Counted in collector_stats::fault_closes. Default 0 (unlimited).
    unsigned max_requests_per_connection = 0;
    /// Process each valid batch fully (its events are counted and de-duplicated, as accepted)
    /// and then close the connection without sending a response: the "response lost after the
    /// server accepted the batch" case, which produces duplicates when the client retries.
    /// Counted in collector_stats::dropped_responses (and batches, events...). Default false.
    bool accept_then_drop_response = false;
    /// When not 0, every fail_every-th valid batch not covered by `script` (the fail_every-th,
    /// the 2*fail_every-th, ... counted over all connections since set_faults()) is answered
    /// with fail_status: an endpoint that fails a steady share of requests. A non-2xx answer
    /// counts the batch in collector_stats::failed_batches, as a scripted one. The other
    /// batches are answered normally (or with retry_after_status). Default 0 (off).
    unsigned fail_every = 0;
    /// Status of the fail_every answers, 200..599 (checked when fail_every is not 0).
    /// Default 503.
    unsigned fail_status = 503;
    /// When not 0, the collector goes away once, after the down_after-th request it reads
    /// since set_faults() (every request counts: batches valid or not, GET /stats, requests
    /// that are not HTTP): that request is answered as the other faults say, with
    /// `Connection: close`, and an outage of down_for begins at once (see above). The next
    /// requests, until the collector listens again, are not answered. Requires down_for.
    /// Default 0 (off).
    std::uint64_t down_after = 0;
    /// Length of the down_after outage: more than 0 when down_after is set, 0 when it is not.
    /// Default 0.
    std::chrono::milliseconds down_for{0};
    /// When more than 0, an outage of this length begins when the faults are set (the
    /// collector's construction, or set_faults()): a receiver that is not up yet, or
    /// restarting. It closes the connections that are open, as down_after's does. Must not be
    /// negative. Default 0 (off).
    std::chrono::milliseconds refuse_for{0};
};

}  // namespace evdispatch
