#pragma once

/// @file collector.hpp
/// A real HTTP(S) event-batch receiver on loopback: validates, counts and de-duplicates, and
/// injects transport faults on request.

#include <evdispatch/collector/check.hpp>
#include <evdispatch/collector/faults.hpp>
#include <evdispatch/error.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace evdispatch {

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
    /// Answer 415 to batches sent with `Content-Encoding: gzip`, as an endpoint that does not
    /// take gzip. Default false: gzip bodies are decoded (at most max_body_bytes decoded: 413
    /// beyond, 400 when corrupt) and checked like any other.
    bool refuse_gzip = false;
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
    std::uint64_t outages = 0;  ///< Outages begun by collector_faults::down_after or refuse_for
                                ///< (not pause_listening()).
    std::uint64_t down_ms = 0;  ///< Milliseconds spent in those outages, the current one
                                ///< included.
    std::uint64_t gzip_batches = 0;  ///< Accepted batches that came gzip-encoded...
    std::uint64_t gzip_bytes = 0;    ///< ...and their bytes as received (`bytes`: decoded).
};

/// The counters as one JSON object, `{"connections":N,"requests":N,...}`: one member per field
/// of collector_stats, named as the field, in declaration order. What `GET /stats` answers.
std::string to_json(const collector_stats& s);

/// A Beast HTTP(S) server that accepts Optimizely event batches (`POST /v1/events`, any path
/// ending in /events), answers `GET /stats` with its counters as JSON, and counts and
/// de-duplicates events by uuid. Starts listening in its constructor, on threads it owns.
/// Every member function is thread-safe; none may be called from a handler running on the
/// collector's own threads (there are none a user can reach).
class collector {
public:
    /// Binds and starts (with faults.refuse_for, binds and begins refusing). Throws
    /// boost::system::system_error: with evdispatch::error::invalid_config and a message naming
    /// the field if the configuration (faults included) is invalid; with the system's or
    /// OpenSSL's code if the address cannot be bound or the TLS files cannot be used.
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
    /// Throws boost::system::system_error (evdispatch::error::invalid_config, the message
    /// naming the field) if `f` is invalid: a status outside 200..599, script_retry_after
    /// longer than script, a non-printable Retry-After, down_after without down_for (or the
    /// reverse), a negative duration; the faults in force are then unchanged.
    /// Restarts the fail_every and down_after counts too, and ends an outage in progress; with
    /// f.refuse_for, connecting is refused from when it returns.
    void set_faults(collector_faults f);
    /// The faults in force (the script as given, including entries already answered).
    collector_faults faults() const;
    /// Closes the listening socket and every open connection (their requests are not
    /// answered); until resume_listening(), connecting to port() is refused. Returns once the
    /// connections are closed. Does nothing if already paused or stopped.
    void pause_listening();
    /// Listens again on the same port (SO_REUSEADDR). Throws boost::system::system_error if
    /// the port has been taken meanwhile (the collector then stays paused). Does nothing if
    /// not paused or stopped. During an outage of collector_faults, the collector listens
    /// again when the outage is over.
    void resume_listening();
    /// Stops accepting and closes every connection. Idempotent.
    void stop();

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace evdispatch
