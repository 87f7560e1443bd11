#pragma once

// evdispatch bench: one run of producer threads against a receiver, through the processor or
// through a baseline, and what it measured. The runs print progress on stderr (unless
// bench_options::progress is false) and nothing on stdout; bench_report.hpp prints results.

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/config.hpp>
#include <evdispatch/error.hpp>
#include <evdispatch/event_dispatcher.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace evdispatch::app {

/// What `bench` and `sweep` run.
struct bench_options {
    std::uint64_t events = 0;  // 0: run for duration
    std::chrono::milliseconds duration{10'000};
    unsigned producers = 4;
    double rate = 0;  // events/s over all producers; 0 = as fast as possible
    processor_config proc;
    std::chrono::milliseconds collector_delay{0};
    std::string baseline = "sync";  // sync, sync-keepalive, mutex or none
    std::chrono::milliseconds baseline_duration{2'000};
    bool json_out = false;
    std::string url;              // empty: embedded collector
    bool tls = false;             // embedded collector over HTTPS (certificates made for the run)
    std::string collector_fault;  // a preset of bench_cmd.cpp's apply_fault
    std::chrono::milliseconds close_timeout{30'000};
    bool progress = true;
    // A dispatcher that acknowledges every batch at once, sending nothing: the pipeline's own
    // ceiling (ring, batcher, body assembly, accounting), no sockets and no collector.
    bool null_dispatcher = false;
    // --kafka mock | --kafka-brokers: batches go to a Kafka topic (bench_kafka.cpp). `kafka` is
    // "mock" or "brokers" (empty: no Kafka); make_dispatcher makes the evdispatch run's
    // dispatcher (null: the HTTP one).
    std::string kafka;
    std::string kafka_brokers;
    std::string kafka_topic = "evdispatch-bench";
    std::function<std::shared_ptr<event_dispatcher>()> make_dispatcher;
    // The collector runs as a child process (`evdispatch collector`), one per run, instead of
    // inside this process.
    bool collector_process = false;
    // --find-max: search the highest paced rate that runs with no refusal and an accept-to-ack
    // p99 within max_p99 (each trial runs for `duration`).
    bool find_max = false;
    std::chrono::milliseconds max_p99{100};
};

/// What one run measured.
struct run_result {
    std::string name;
    std::uint64_t submitted = 0, accepted = 0, delivered = 0, duplicates = 0;
    std::array<std::uint64_t, drop_reason_count> dropped{};
    double seconds = 0;
    double delivered_per_sec = 0;
    std::uint64_t p50 = 0, p99 = 0, p999 = 0;  // process() ns
    double e2e_p50_ms = 0, e2e_p99_ms = 0;
    std::uint64_t batches = 0;
    double mean_batch_events = 0;
    std::uint64_t connections_opened = 0;
    /// gzip bytes / JSON bytes of the batches compressed (http_config::compression gzip);
    /// 0 when none was.
    double compression_ratio = 0;
    std::uint64_t compression_refused = 0;
    std::uint64_t outages = 0, probes = 0, outage_ms = 0, held_peak_events = 0;
    std::uint64_t outage_connection_attempts = 0;  ///< While an endpoint was not up.
    std::uint64_t drain_after_outage_ms = 0;       ///< From back up to nothing held (longest).
    std::uint64_t spooled = 0;                     ///< Events written to the disk spool.
    std::uint64_t spool_bytes_peak = 0;            ///< Peak bytes of the spool files.
    std::uint64_t left_in_spool = 0;               ///< Events left in the spool at close.
    std::uint64_t recovered = 0;            ///< Events found in the spool of an earlier run...
    std::uint64_t delivered_recovered = 0;  ///< ...and delivered by this one.
    // CPU by role, ns per delivered event: the producer threads (building events and handing
    // them over; in the sync baselines, sending too), the processor's thread (the strand and
    // its HTTP pool), and the embedded collector's threads (-1: no embedded collector).
    double producers_cpu_ns_per_event = 0;
    double dispatcher_cpu_ns_per_event = 0;
    double collector_cpu_ns_per_event = -1;
    double peak_rss_mb = 0;
    std::uint64_t collector_events = 0;
    /// --kafka: distinct uuids read back from the topic after close (-1: not a Kafka run), and
    /// messages gone from the mock cluster's log before they could be read.
    std::int64_t kafka_consumed_unique = -1;
    std::uint64_t kafka_consumed_missed = 0;
    bool balanced = true;
    /// What the first failure of each reason said (for a diagnostic line; empty: none or no
    /// text).
    std::array<std::string, drop_reason_count> first_failure;
};

constexpr std::size_t index_of(drop_reason r) noexcept {
    return static_cast<std::size_t>(r);
}

// Each run sends to `url`. `col`, when not null, is the collector behind `url`: the run counts
// the duplicates and unique events it saw during the run. The options are the caller's;
// `o.url` is not looked at. A configuration the processor refuses throws before any thread
// starts; a producer that throws ends the run and its exception is rethrown.

/// The evdispatch run: `o.producers` threads call process() on one processor, which delivers
/// to `url`; the run ends with async_close(o.close_timeout).
run_result run_ours(const bench_options& o, const std::string& url, collector* col);

/// Baseline "mutex": the producers push into a mutex + condition variable + deque, and one
/// consumer thread hands everything queued to a processor, as batch processors built on a
/// blocking queue do; everything after the hand-off is the evdispatch run. It sends `o.events`
/// when given, else runs for `o.baseline_duration`.
run_result run_mutex_baseline(const bench_options& o, const std::string& url, collector* col);

/// Baselines "sync" and "sync-keepalive": one blocking POST per event on the producer thread,
/// over a new connection each time (what a synchronous SDK dispatcher without a session does)
/// or, with `keep_alive`, over a connection each producer keeps (a synchronous dispatcher at
/// its best). Same transport rules as the processor (TLS verified with o.proc.tls.ca_file, its
/// connect and request timeouts); no retries: a failed POST drops its event, counted by reason.
/// Runs for `o.baseline_duration`. `url` must parse (run_bench checks it).
run_result run_sync_baseline(const bench_options& o, const std::string& url, collector* col,
                             bool keep_alive);

}  // namespace evdispatch::app
