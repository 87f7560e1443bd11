#pragma once

/// @file metrics.hpp
/// A consistent snapshot of the processor's counters.

#include <evdispatch/error.hpp>

#include <array>
#include <cstdint>
#include <string_view>

namespace evdispatch {

/// Health of an endpoint (health_config, docs/delivery.md).
enum class endpoint_state : std::uint8_t {
    up,       ///< Batches are sent over the whole pool.
    probing,  ///< Down, and one probe (the oldest held batch) is in flight.
    down,     ///< Recent attempts failed: batches are held; the next probe is scheduled.
};

/// "up", "probing" or "down".
constexpr std::string_view to_string(endpoint_state s) noexcept {
    switch (s) {
        case endpoint_state::up:
            return "up";
        case endpoint_state::probing:
            return "probing";
        case endpoint_state::down:
            return "down";
    }
    return {};
}

/// Counters of a batch_event_processor, read with batch_event_processor::metrics().
///
/// The snapshot is consistent: at every moment
/// `accepted == delivered + dropped_after_accept() + pending + left_in_spool`,
/// `submitted() == accepted + dropped[queue_full] + dropped[closed]`, and for the events
/// found in the spools of earlier processes
/// `recovered == delivered_recovered + dropped_recovered (all reasons) + pending_recovered`.
/// After async_close completes, `pending == 0`.
struct metrics_snapshot {
    std::uint64_t accepted = 0;   ///< Events process() accepted.
    std::uint64_t delivered = 0;  ///< Events in batches the endpoint acknowledged (2xx).
    /// Events not delivered, by reason (index: drop_reason). queue_full and closed count
    /// events process() refused; the others count accepted events given up later.
    std::array<std::uint64_t, drop_reason_count> dropped{};
    std::uint64_t pending = 0;  ///< Accepted, not yet delivered nor dropped.

    std::uint64_t queue_depth = 0;        ///< Events in the hand-off ring.
    std::uint64_t open_batch_events = 0;  ///< Events in batches still being filled.
    std::uint64_t backlog_events = 0;     ///< Events in closed batches waiting for a connection.
    std::uint64_t backlog_bytes = 0;      ///< Bytes of those batches.
    std::uint64_t in_flight_events = 0;   ///< Events in batches being sent.
    std::uint64_t in_flight = 0;          ///< Requests being sent.
    std::uint64_t retry_wait_events = 0;  ///< Events in batches waiting to be retried.
    std::uint64_t held_events = 0;        ///< Events in batches held while their endpoint is down.
    std::uint64_t held_bytes = 0;         ///< Bytes of those batches.

    /// The worst endpoint state (down, then probing, then up) over the endpoints in use.
    endpoint_state state = endpoint_state::up;
    std::uint64_t endpoints_down = 0;  ///< Endpoints down or probing now.
    std::uint64_t outages = 0;         ///< Times an endpoint went down.
    std::uint64_t outage_ms = 0;       ///< Time endpoints spent down (current outages included).
    std::uint64_t probes = 0;          ///< Probe requests sent during outages.

    std::uint64_t batches_sent = 0;        ///< Batches closed and handed to the dispatcher.
    std::uint64_t batches_delivered = 0;   ///< Batches acknowledged.
    std::uint64_t batches_failed = 0;      ///< Batches given up.
    std::uint64_t requests = 0;            ///< Delivery attempts (requests started).
    std::uint64_t retries = 0;             ///< Attempts scheduled after a failed one.
    std::uint64_t bytes_sent = 0;          ///< Request body bytes of delivered batches.
    std::uint64_t connections_opened = 0;  ///< Connections the dispatcher opened.
    /// Batches gzip-compressed when sealed (http_config::compression), their JSON bytes and
    /// their gzip bytes (the ratio is the compression's), and gzipped requests an endpoint
    /// refused (415/400; the batch went again uncompressed, and every later one).
    std::uint64_t compressed_batches = 0;
    std::uint64_t compressed_in_bytes = 0;
    std::uint64_t compressed_out_bytes = 0;
    std::uint64_t compression_refused = 0;

    // ---- the disk spool (spool_config; all 0 without one) --------------------------------
    std::uint64_t spooled_events = 0;        ///< Accepted events on disk only now (pending).
    std::uint64_t spool_writing_events = 0;  ///< Accepted events being written (pending).
    std::uint64_t spool_writes = 0;          ///< Batches written to the spool.
    std::uint64_t spool_written_events = 0;  ///< Their events.
    std::uint64_t spool_write_failures = 0;  ///< Writes refused: spool full or a disk error.
    std::uint64_t spool_reads = 0;           ///< Own batches read back from the spool.
    /// Accepted events left in the spool at close for a later processor with the same
    /// spool.dir (settled: not pending, not dropped).
    std::uint64_t left_in_spool = 0;
    std::uint64_t spool_bytes = 0;          ///< Bytes of this processor's spool files now.
    std::uint64_t spool_bytes_peak = 0;     ///< Their peak.
    std::uint64_t spool_corrupt_bytes = 0;  ///< Bytes skipped with no readable record header.
    std::uint64_t spool_segments_quarantined = 0;  ///< Spool files moved to quarantine/.
    /// Events found in the spools of processes that are gone (their own inflow).
    std::uint64_t recovered = 0;
    std::uint64_t delivered_recovered = 0;  ///< Of those: delivered by this processor.
    /// Of those: dropped, by reason (index: drop_reason).
    std::array<std::uint64_t, drop_reason_count> dropped_recovered{};
    /// Of those: not settled yet (in memory, or still on disk for this or a later processor).
    std::uint64_t pending_recovered = 0;

    /// Count for one reason.
    std::uint64_t dropped_for(drop_reason r) const noexcept {
        return dropped[static_cast<std::size_t>(r)];
    }
    /// All drops, including the events process() refused.
    std::uint64_t dropped_total() const noexcept {
        std::uint64_t n = 0;
        for (auto v : dropped)
            n += v;
        return n;
    }
    /// Drops of events that had been accepted.
    std::uint64_t dropped_after_accept() const noexcept {
        return dropped_total() - dropped_for(drop_reason::queue_full) -
               dropped_for(drop_reason::closed);
    }
    /// All process() calls.
    std::uint64_t submitted() const noexcept {
        return accepted + dropped_for(drop_reason::queue_full) + dropped_for(drop_reason::closed);
    }
    /// Whether pending equals the sum of the pipeline stages and accounting balances.
    bool balanced() const noexcept {
        std::uint64_t dropped_r = 0;
        for (auto v : dropped_recovered)
            dropped_r += v;
        return accepted == delivered + dropped_after_accept() + pending + left_in_spool &&
               pending == queue_depth + open_batch_events + backlog_events + in_flight_events +
                              retry_wait_events + held_events + spool_writing_events +
                              spooled_events &&
               recovered == delivered_recovered + dropped_r + pending_recovered;
    }
};

}  // namespace evdispatch
