// The relay's GET /metrics: its counters and its processor's in Prometheus text exposition
// format 0.0.4 (HELP and TYPE for every family, counters ending in _total).

#include <evdispatch/relay.hpp>

#include <evdispatch/error.hpp>

#include <cstdio>
#include <string>
#include <string_view>

namespace evdispatch {

namespace {

class exposition {
public:
    // One family: HELP and TYPE lines, then its samples (sample()).
    void family(std::string_view name, std::string_view type, std::string_view help) {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;  // plain text without backslashes or newlines
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    void sample(std::string_view name, std::uint64_t v, std::string_view label = {},
                std::string_view value = {}) {
        out_ += name;
        if (!label.empty()) {
            // Label values here are snake_case names and status codes: nothing to escape.
            out_ += '{';
            out_ += label;
            out_ += "=\"";
            out_ += value;
            out_ += "\"}";
        }
        out_ += ' ';
        out_ += std::to_string(v);
        out_ += '\n';
    }
    void counter(std::string_view name, std::string_view help, std::uint64_t v) {
        family(name, "counter", help);
        sample(name, v);
    }
    void gauge(std::string_view name, std::string_view help, std::uint64_t v) {
        family(name, "gauge", help);
        sample(name, v);
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

}  // namespace

std::string to_prometheus(const relay_stats& r, const metrics_snapshot& m) {
    exposition e;
    // ---- the relay's side: what clients sent and were answered ------------------------------
    e.counter("evdispatch_relay_connections_total", "Client connections accepted.", r.connections);
    e.gauge("evdispatch_relay_connections_open", "Client connections open now.",
            r.connections_open);
    e.counter("evdispatch_relay_connections_refused_total",
              "Client connections answered 503 and closed: too many open.", r.connections_refused);
    e.counter("evdispatch_relay_requests_total", "HTTP requests read from clients.", r.requests);
    e.family("evdispatch_relay_responses_total", "counter",
             "Event batch requests answered, by outcome.");
    e.sample("evdispatch_relay_responses_total", r.accepted_requests, "outcome", "accepted");
    e.sample("evdispatch_relay_responses_total", r.bad_requests, "outcome", "bad_request");
    e.sample("evdispatch_relay_responses_total", r.too_large, "outcome", "too_large");
    e.sample("evdispatch_relay_responses_total", r.unsupported_media, "outcome",
             "unsupported_media_type");
    e.sample("evdispatch_relay_responses_total", r.not_found, "outcome", "not_found");
    e.sample("evdispatch_relay_responses_total", r.refused_full, "outcome", "refused_full");
    e.sample("evdispatch_relay_responses_total", r.refused_draining, "outcome", "refused_draining");
    e.family("evdispatch_relay_refused_events_total", "counter",
             "Visitors of batches answered 503 (the client keeps them), by reason.");
    e.sample("evdispatch_relay_refused_events_total", r.refused_full_events, "reason", "full");
    e.sample("evdispatch_relay_refused_events_total", r.refused_draining_events, "reason",
             "draining");
    e.counter("evdispatch_relay_received_events_total",
              "Visitors of accepted batches, handed to the processor.", r.accepted_events);
    e.counter("evdispatch_relay_received_bytes_total",
              "Body bytes of accepted batches, as received.", r.body_bytes);
    e.counter("evdispatch_relay_gzip_requests_total", "Accepted batches sent with gzip.",
              r.gzip_requests);
    e.counter("evdispatch_relay_timeouts_total",
              "Client connections closed by the read or idle timeout.", r.timeouts);
    e.gauge("evdispatch_relay_draining", "1 while the relay drains (refuses new batches).",
            r.draining ? 1 : 0);

    // ---- the processor: the accounting identity and the pipeline ----------------------------
    e.counter("evdispatch_events_accepted_total", "Events accepted by the processor.", m.accepted);
    e.counter("evdispatch_events_delivered_total",
              "Events in batches the upstream acknowledged (2xx).", m.delivered);
    e.family("evdispatch_events_dropped_total", "counter",
             "Events not delivered, by reason (queue_full and closed: refused by process()).");
    for (const auto reason : all_drop_reasons)
        e.sample("evdispatch_events_dropped_total", m.dropped_for(reason), "reason",
                 to_string(reason));
    e.gauge("evdispatch_events_pending", "Events accepted, not yet delivered nor dropped.",
            m.pending);
    e.counter("evdispatch_events_left_in_spool_total",
              "Events left in the disk spool at close for a later process.", m.left_in_spool);
    e.gauge("evdispatch_accounting_balanced",
            "1 when accepted == delivered + dropped after acceptance + pending + left in spool.",
            m.balanced() ? 1 : 0);

    e.gauge("evdispatch_queue_depth_events", "Events in the hand-off ring.", m.queue_depth);
    e.gauge("evdispatch_open_batch_events", "Events in batches still being filled.",
            m.open_batch_events);
    e.gauge("evdispatch_backlog_events", "Events in closed batches waiting for a connection.",
            m.backlog_events);
    e.gauge("evdispatch_backlog_bytes", "Bytes of those batches.", m.backlog_bytes);
    e.gauge("evdispatch_in_flight_events", "Events in batches being sent.", m.in_flight_events);
    e.gauge("evdispatch_in_flight_requests", "Requests being sent.", m.in_flight);
    e.gauge("evdispatch_retry_wait_events", "Events in batches waiting to be retried.",
            m.retry_wait_events);
    e.gauge("evdispatch_held_events", "Events held while their endpoint is down.", m.held_events);
    e.gauge("evdispatch_held_bytes", "Bytes of those batches.", m.held_bytes);

    e.gauge("evdispatch_endpoint_up", "1 when every endpoint in use is up.",
            m.state == endpoint_state::up ? 1 : 0);
    e.gauge("evdispatch_endpoints_down", "Endpoints down or probing now.", m.endpoints_down);
    e.counter("evdispatch_outages_total", "Times an endpoint went down.", m.outages);
    e.counter("evdispatch_outage_milliseconds_total",
              "Milliseconds endpoints spent down, current outages included.", m.outage_ms);
    e.counter("evdispatch_probes_total", "Probe requests sent during outages.", m.probes);

    e.counter("evdispatch_batches_sent_total", "Batches closed and handed to the dispatcher.",
              m.batches_sent);
    e.counter("evdispatch_batches_delivered_total", "Batches acknowledged.", m.batches_delivered);
    e.counter("evdispatch_batches_failed_total", "Batches given up.", m.batches_failed);
    e.counter("evdispatch_upstream_requests_total", "Delivery attempts (requests started).",
              m.requests);
    e.counter("evdispatch_retries_total", "Attempts scheduled after a failed one.", m.retries);
    e.counter("evdispatch_sent_bytes_total", "Request body bytes of delivered batches.",
              m.bytes_sent);
    e.counter("evdispatch_upstream_connections_opened_total", "Connections the dispatcher opened.",
              m.connections_opened);

    e.counter("evdispatch_compressed_bytes_in_total",
              "JSON bytes of the batches gzip-compressed when sealed.", m.compressed_in_bytes);
    e.counter("evdispatch_compressed_bytes_out_total", "Their gzip bytes.", m.compressed_out_bytes);
    e.counter("evdispatch_compression_refused_total",
              "Gzipped requests the upstream refused (415/400), sent again as JSON.",
              m.compression_refused);

    e.gauge("evdispatch_spooled_events", "Accepted events on disk only now.", m.spooled_events);
    e.counter("evdispatch_spool_writes_total", "Batches written to the spool.", m.spool_writes);
    e.counter("evdispatch_spool_write_failures_total",
              "Spool writes refused: spool full or a disk error.", m.spool_write_failures);
    e.gauge("evdispatch_spool_bytes", "Bytes of this process's spool files now.", m.spool_bytes);
    e.gauge("evdispatch_spool_bytes_peak", "Peak bytes of this process's spool files.",
            m.spool_bytes_peak);
    e.gauge("evdispatch_spool_writing_events", "Accepted events being written to the spool.",
            m.spool_writing_events);
    e.counter("evdispatch_spool_written_events_total", "Events of the batches written.",
              m.spool_written_events);
    e.counter("evdispatch_spool_reads_total", "Own batches read back from the spool.",
              m.spool_reads);
    e.counter("evdispatch_spool_corrupt_bytes_total",
              "Spool bytes skipped with no readable record header.", m.spool_corrupt_bytes);
    e.counter("evdispatch_spool_segments_quarantined_total", "Spool files moved to quarantine/.",
              m.spool_segments_quarantined);
    e.counter("evdispatch_recovered_events_total",
              "Events found in the spools of processes that are gone.", m.recovered);
    e.counter("evdispatch_recovered_delivered_total", "Of those: delivered by this process.",
              m.delivered_recovered);
    e.family("evdispatch_recovered_dropped_total", "counter",
             "Of those: dropped by this process, by reason.");
    for (const auto reason : all_drop_reasons)
        e.sample("evdispatch_recovered_dropped_total",
                 m.dropped_recovered[static_cast<std::size_t>(reason)], "reason",
                 to_string(reason));
    e.gauge("evdispatch_recovered_pending_events",
            "Of those: not settled yet (in memory, or still on disk).", m.pending_recovered);
    return e.take();
}

}  // namespace evdispatch
