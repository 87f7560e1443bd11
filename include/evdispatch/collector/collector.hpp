#pragma once

/// @file collector.hpp
/// A real HTTP(S) event-batch receiver on loopback: validates, counts and de-duplicates, and
/// injects transport faults on request.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace evdispatch {

/// Faults the collector injects. The default value injects none.
///
/// Unless a field says otherwise a fault applies to batch requests (`POST` to a path ending in
/// `/events`); `GET /stats` is always answered normally so a test can watch the counters.
/// When several are set, the first that applies wins, in this order: reset_mid_request, stall,
/// accept_then_drop_response, script, fail_every, retry_after_status. close_after_response and
/// max_requests_per_connection apply to every response, on top of the others. `delay`
/// (collector_config::delay, collector::set_delay) delays every response, faulty ones included.
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
};

/// How the collector listens and answers.
struct collector_config {
    /// Address to listen on. Default "127.0.0.1" (loopback only).
    std::string listen_address = "127.0.0.1";
    /// Port; 0 picks a free one (read it back with collector::port()). Default 0.
    unsigned short port = 0;
    /// Status sent for an accepted batch. Default 204 (as Optimizely's endpoint). Any 2xx.
    unsigned success_status = 204;
    /// Delay before each response, to act like a remote endpoint. Default 0 (none).
    std::chrono::milliseconds delay{0};
    /// Largest request body accepted; larger gets 413. Default 8 MiB.
    std::size_t max_body_bytes = 8 * 1024 * 1024;
    /// Keep every accepted body (for tests that compare them). Default false.
    bool keep_bodies = false;
    /// Worker threads running the server. Default 1.
    unsigned threads = 1;
    /// Faults injected from the start; change them with collector::set_faults(). Default none.
    collector_faults faults;
    /// PEM file with the server certificate (followed by any intermediates). Set together with
    /// tls_key_file, the collector serves HTTPS only (TLS 1.2 minimum); both empty (the
    /// default): plain HTTP only. One without the other is a configuration error.
    std::string tls_cert_file;
    /// PEM file with the private key of tls_cert_file. Default empty (see tls_cert_file).
    std::string tls_key_file;
    /// Host name written into url(), e.g. "localhost" so that a TLS client verifies a
    /// certificate issued for that name. An IPv6 literal is bracketed. Default empty: the
    /// listen address.
    std::string url_host;
};

/// Counters of a collector (monotonic since start; each counts one thing, 0 means none).
struct collector_stats {
    std::uint64_t connections = 0;  ///< TCP connections accepted (TLS: before the handshake).
    std::uint64_t requests = 0;     ///< HTTP requests read (any method/target; a request reset
                                    ///< by reset_mid_request counts once its headers are read).
    std::uint64_t batches = 0;      ///< Valid event batches accepted: answered 2xx, or counted and
                                    ///< then left unanswered by accept_then_drop_response.
    std::uint64_t events = 0;       ///< Events in accepted batches (duplicates included).
    std::uint64_t unique_events = 0;   ///< Events whose uuid had not been seen before.
    std::uint64_t duplicates = 0;      ///< Events whose uuid had been seen before.
    std::uint64_t rejected = 0;        ///< Requests answered 4xx (invalid body, wrong target...).
    std::uint64_t bytes = 0;           ///< Body bytes of accepted batches.
    std::uint64_t failed_batches = 0;  ///< Valid batches answered non-2xx by a fault (script,
                                       ///< fail_every or retry_after_status); their events are
                                       ///< not counted.
    std::uint64_t failed_events = 0;   ///< Events in failed_batches.
    std::uint64_t stalled = 0;         ///< Batch requests left unanswered by the stall fault.
    std::uint64_t resets = 0;          ///< Connections reset by reset_mid_request.
    std::uint64_t dropped_responses = 0;  ///< Batches accepted, then closed without a response
                                          ///< (accept_then_drop_response).
    std::uint64_t fault_closes = 0;    ///< Connections the server closed after a response because
                                       ///< of close_after_response or max_requests_per_connection
                                       ///< (not those the client asked to close).
    std::uint64_t tls_handshakes = 0;  ///< TLS handshakes completed.
    std::uint64_t tls_handshake_failures = 0;  ///< TLS handshakes that failed: the client
                                               ///< rejected our certificate, spoke no or an old
                                               ///< TLS, timed out (10 s) or went away during it.
};

/// Outcome of validating one event-batch body.
struct batch_check {
    bool ok = false;                 ///< The body is a valid event batch.
    std::string error;               ///< Why not, when !ok.
    std::uint64_t visitors = 0;      ///< Visitors in the batch.
    std::vector<std::string> uuids;  ///< Event uuids, in order (one per snapshot event).
};

/// Validates an event-batch body against the Optimizely v1 envelope with a streaming (SAX)
/// parser: top-level object with string account_id, project_id, revision, client_name,
/// client_version, bool anonymize_ip, enrich_decisions and an array `visitors` whose items
/// have a string visitor_id, an array attributes and snapshots whose events each have a string
/// entity_id, key, uuid and an integer timestamp.
batch_check check_event_batch(std::string_view body);

/// A Beast HTTP(S) server that accepts Optimizely event batches (`POST /v1/events`, any path
/// ending in /events), answers `GET /stats` with its counters as JSON, and counts and
/// de-duplicates events by uuid. Starts listening in its constructor, on threads it owns.
/// Every member function is thread-safe; none may be called from a handler running on the
/// collector's own threads (there are none a user can reach).
class collector {
public:
    /// Binds and starts. Throws boost::system::system_error if the address cannot be bound,
    /// the TLS files cannot be loaded, or the configuration (faults included) is invalid.
    explicit collector(collector_config cfg = {});
    /// Stops and joins the server threads.
    ~collector();
    collector(const collector&) = delete;
    collector& operator=(const collector&) = delete;

    /// The bound port (the same after pause_listening() and resume_listening()).
    unsigned short port() const noexcept;
    /// True when the collector serves HTTPS (tls_cert_file and tls_key_file were set).
    bool uses_tls() const noexcept;
    /// `http://HOST:PORT/v1/events`, or `https://...` with TLS; HOST is url_host if set, else
    /// the listen address.
    std::string url() const;
    /// A snapshot of the counters.
    collector_stats stats() const;
    /// Accepted bodies in arrival order (only with keep_bodies).
    std::vector<std::string> bodies() const;
    /// Changes the per-response delay for requests that arrive from now on.
    void set_delay(std::chrono::milliseconds d);
    /// Replaces the injected faults for requests read from now on (a request already being
    /// answered keeps its fate) and restarts the script. `set_faults({})` turns them all off.
    /// Throws boost::system::system_error (invalid_argument) if `f` is invalid: a status
    /// outside 200..599, script_retry_after longer than script, a non-printable Retry-After.
    /// Restarts the fail_every count too.
    void set_faults(collector_faults f);
    /// The faults in force (the script as given, including entries already answered).
    collector_faults faults() const;
    /// Closes the listening socket and every open connection (their requests are not
    /// answered); until resume_listening(), connecting to port() is refused. Returns once the
    /// connections are closed. Does nothing if already paused or stopped.
    void pause_listening();
    /// Listens again on the same port (SO_REUSEADDR). Throws boost::system::system_error if
    /// the port has been taken meanwhile (the collector then stays paused). Does nothing if
    /// not paused or stopped.
    void resume_listening();
    /// Stops accepting and closes every connection. Idempotent.
    void stop();

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace evdispatch
