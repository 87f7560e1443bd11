#pragma once

/// @file collector.hpp
/// A real HTTP event-batch receiver on loopback: validates, counts and de-duplicates.

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
};

/// Counters of a collector (monotonic since start).
struct collector_stats {
    std::uint64_t connections = 0;  ///< Connections accepted.
    std::uint64_t requests = 0;     ///< HTTP requests read (any method/target).
    std::uint64_t batches = 0;      ///< Valid event batches accepted (answered 2xx).
    std::uint64_t events = 0;       ///< Events in accepted batches (duplicates included).
    std::uint64_t unique_events = 0;  ///< Events whose uuid had not been seen before.
    std::uint64_t duplicates = 0;   ///< Events whose uuid had been seen before.
    std::uint64_t rejected = 0;     ///< Requests answered 4xx (invalid body, wrong target...).
    std::uint64_t bytes = 0;        ///< Body bytes of accepted batches.
};

/// Outcome of validating one event-batch body.
struct batch_check {
    bool ok = false;              ///< The body is a valid event batch.
    std::string error;            ///< Why not, when !ok.
    std::uint64_t visitors = 0;   ///< Visitors in the batch.
    std::vector<std::string> uuids;  ///< Event uuids, in order (one per snapshot event).
};

/// Validates an event-batch body against the Optimizely v1 envelope with a streaming (SAX)
/// parser: top-level object with string account_id, project_id, revision, client_name,
/// client_version, bool anonymize_ip, enrich_decisions and an array `visitors` whose items
/// have a string visitor_id, an array attributes and snapshots whose events each have a string
/// entity_id, key, uuid and an integer timestamp.
batch_check check_event_batch(std::string_view body);

/// A Beast HTTP server that accepts Optimizely event batches (`POST /v1/events`, any path
/// ending in /events), answers `GET /stats` with its counters as JSON, and counts and
/// de-duplicates events by uuid. Starts listening in its constructor, on threads it owns.
class collector {
public:
    /// Binds and starts. Throws boost::system::system_error if the address cannot be bound.
    explicit collector(collector_config cfg = {});
    /// Stops and joins the server threads.
    ~collector();
    collector(const collector&) = delete;
    collector& operator=(const collector&) = delete;

    /// The bound port.
    unsigned short port() const noexcept;
    /// `http://127.0.0.1:PORT/v1/events` (with the listen address).
    std::string url() const;
    /// A snapshot of the counters; callable from any thread.
    collector_stats stats() const;
    /// Accepted bodies in arrival order (only with keep_bodies).
    std::vector<std::string> bodies() const;
    /// Changes the per-response delay for requests that arrive from now on.
    void set_delay(std::chrono::milliseconds d);
    /// Stops accepting and closes every connection. Idempotent.
    void stop();

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace evdispatch
