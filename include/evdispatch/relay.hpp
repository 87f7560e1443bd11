#pragma once

/// @file relay.hpp
/// evdispatch::relay: a local HTTP endpoint for SDKs that cannot batch (one blocking POST per
/// decision, as Optimizely's PHP SDK; Ruby and Python in pre-fork servers; Optimizely Agent's
/// eventURL). It accepts exactly what the event endpoint accepts, answers at once, and hands
/// the visitors to a batch_event_processor, which re-batches them across requests and delivers
/// them upstream with pooling, retries and outage handling (docs/relay.md).

#include <evdispatch/config.hpp>
#include <evdispatch/metrics.hpp>
#include <evdispatch/processor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace evdispatch {

/// How the relay listens, what it accepts, and where it forwards.
struct relay_config {
    /// Address to listen on (an IP address). Default "127.0.0.1".
    std::string listen_address = "127.0.0.1";
    /// Port; 0 picks a free one (relay::port()). Default 0.
    unsigned short port = 0;
    /// When not empty: listen on this unix socket path instead of TCP. A file already there
    /// that is a socket nobody listens on is replaced; anything else is an error. Removed at
    /// stop. Default empty.
    std::string unix_socket;
    /// Where `POST /v1/events` goes. Default Optimizely's US endpoint.
    std::string upstream = "https://logx.optimizely.com/v1/events";
    /// Where `POST /eu/v1/events` goes. Default Optimizely's EU endpoint.
    std::string eu_upstream = "https://eu.logx.optimizely.com/v1/events";
    /// The processor that batches and delivers (batch size, flush interval, connections, TLS,
    /// retries, health, spool). Its `endpoint` is replaced by `upstream`; its queue_capacity is
    /// raised to max_pending_events if lower.
    processor_config processor;
    /// The room: events accepted and not yet delivered or dropped. A request whose visitors do
    /// not fit is answered 503 with Retry-After, and nothing of it is taken. Default 100,000.
    std::size_t max_pending_events = 100'000;
    /// Largest request body, as sent and (for gzip) once decompressed; larger gets 413.
    /// Default 3,500,000 bytes (the event API's documented limit). At least 1024.
    std::size_t max_body_bytes = 3'500'000;
    /// Connections open at once; one more is answered 503 and closed. Default 1024.
    std::size_t max_connections = 1024;
    /// Bound on reading one request once its first byte arrived (headers and body); a client
    /// slower than that is disconnected (counted in relay_stats::timeouts). Default 10 s.
    std::chrono::milliseconds read_timeout{10'000};
    /// A keep-alive connection idle this long is closed. Default 60 s.
    std::chrono::milliseconds idle_timeout{60'000};
    /// Value of Retry-After in a 503 (seconds, at least 1). Default 1 s.
    std::chrono::seconds retry_after{1};
    /// Server threads (parsing and validating requests). Default 1.
    unsigned threads = 1;
    /// Answer 204 only once the batch's visitors are durable
    /// (batch_event_processor::async_wait_durable): with a spool (processor.spool.dir), written
    /// and fsynced there (the relay sets spool.mode always and spool.fsync every_batch);
    /// without one, delivered upstream. The answer then waits for the batch to close (up to
    /// processor.batch.flush_interval) and for the write or the delivery. Default false: 204
    /// once accepted into memory.
    bool durable_ack = false;
};

/// Counters of a relay (monotonic since start unless said otherwise).
struct relay_stats {
    std::uint64_t connections = 0;              ///< Connections accepted.
    std::uint64_t connections_open = 0;         ///< Open now (a gauge).
    std::uint64_t connections_refused = 0;      ///< Answered 503 and closed: max_connections.
    std::uint64_t requests = 0;                 ///< Requests read (any method and target).
    std::uint64_t accepted_requests = 0;        ///< Event batches accepted (answered 204).
    std::uint64_t accepted_events = 0;          ///< Visitors of those batches.
    std::uint64_t body_bytes = 0;               ///< Body bytes of accepted batches, as received.
    std::uint64_t gzip_requests = 0;            ///< Accepted batches sent with gzip.
    std::uint64_t bad_requests = 0;             ///< Answered 400: not JSON, not an event batch.
    std::uint64_t too_large = 0;                ///< Answered 413.
    std::uint64_t unsupported_media = 0;        ///< Answered 415: content type or encoding.
    std::uint64_t not_found = 0;                ///< Answered 404 or 405.
    std::uint64_t refused_full = 0;             ///< Batches answered 503: no room for them.
    std::uint64_t refused_full_events = 0;      ///< Their visitors.
    std::uint64_t refused_draining = 0;         ///< Batches answered 503 while draining.
    std::uint64_t refused_draining_events = 0;  ///< Their visitors.
    std::uint64_t timeouts = 0;                 ///< Connections closed: read or idle timeout.
    std::uint64_t metrics_requests = 0;         ///< GET /metrics answered.
    /// With durable_ack: batches answered 503 because a drain's deadline dropped events
    /// before they were durable.
    std::uint64_t durable_lost = 0;
    bool draining = false;  ///< begin_drain() was called (a gauge).
};

/// The relay's counters and its processor's, in Prometheus text exposition format (version
/// 0.0.4): what `GET /metrics` answers. Every family has HELP and TYPE lines and the
/// `evdispatch_` prefix; counters end in `_total`; drop reasons are the `reason` label.
std::string to_prometheus(const relay_stats& r, const metrics_snapshot& m);

/// An HTTP/1.1 server on loopback (or a unix socket) that takes Optimizely v1 event batches:
///
/// - `POST /v1/events` and `POST /eu/v1/events` (to eu_upstream), `Content-Type:
///   application/json`, optionally `Content-Encoding: gzip`. The body is validated as the
///   collector validates it (400 with the reason), split into visitors and handed to the
///   processor, all or nothing: 204 once accepted, 503 with Retry-After when the room is full
///   or the relay is draining. 413 above max_body_bytes, 415 for another content type or
///   encoding, 405 for another method, 404 for another path.
/// - `GET /metrics` (to_prometheus) and `GET /healthz` (200 "ok", 503 "draining").
///
/// Starts in its constructor, on threads it owns; its processor runs on a thread of its own.
/// Every member function is thread-safe.
class relay {
public:
    /// Binds and starts. Throws boost::system::system_error: error::invalid_config naming the
    /// field for a bad configuration (the processor's included), the system's code when the
    /// address cannot be bound.
    explicit relay(relay_config cfg, processor_hooks hooks = {});
    /// stop(), then closes the processor within processor.destructor_close_timeout.
    ~relay();
    relay(const relay&) = delete;
    relay& operator=(const relay&) = delete;

    /// The bound TCP port (0 with a unix socket).
    unsigned short port() const noexcept;
    /// `http://HOST:PORT/v1/events`, or `unix:PATH` with a unix socket.
    std::string url() const;
    relay_stats stats() const;
    /// The processor's counters.
    metrics_snapshot metrics() const;

    /// Stops taking events: from now on event batches are answered 503 with Retry-After and
    /// `Connection: close`, and /healthz 503. Idempotent.
    void begin_drain();
    /// begin_drain(), then closes the processor: what it holds is delivered until `deadline`,
    /// the rest dropped (close_deadline) or left in the spool. Then stop(). Returns the
    /// processor's report. Calling it again returns the same report.
    close_report drain(std::chrono::steady_clock::duration deadline);
    /// Stops listening and closes every connection (requests being read are not answered).
    /// Idempotent. The processor goes on delivering until drain() or the destructor.
    void stop();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace evdispatch
