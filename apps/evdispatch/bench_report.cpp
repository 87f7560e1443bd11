// evdispatch bench: the JSON object, the table and the failure lines.

#include "bench_report.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <cctype>
#include <cinttypes>
#include <cstdio>

namespace evdispatch::app {

namespace json = boost::json;

namespace {

json::object to_json(const run_result& r) {
    json::object o;
    o["accepted"] = r.accepted;
    o["submitted"] = r.submitted;
    o["delivered"] = r.delivered;
    json::object d;
    for (auto reason : all_drop_reasons)
        if (r.dropped[index_of(reason)])
            d[to_string(reason)] = r.dropped[index_of(reason)];
    o["dropped"] = std::move(d);
    o["duplicates"] = r.duplicates;
    o["seconds"] = r.seconds;
    o["delivered_events_per_sec"] = r.delivered_per_sec;
    o["process_ns_p50"] = r.p50;
    o["process_ns_p99"] = r.p99;
    o["process_ns_p999"] = r.p999;
    o["e2e_latency_ms_p50"] = r.e2e_p50_ms;
    o["e2e_latency_ms_p99"] = r.e2e_p99_ms;
    o["batches"] = r.batches;
    o["mean_batch_events"] = r.mean_batch_events;
    o["connections_opened"] = r.connections_opened;
    o["compression_ratio"] = r.compression_ratio;
    o["compression_refused"] = r.compression_refused;
    o["outages"] = r.outages;
    o["probes"] = r.probes;
    o["outage_ms"] = r.outage_ms;
    o["held_peak_events"] = r.held_peak_events;
    o["outage_connection_attempts"] = r.outage_connection_attempts;
    o["drain_after_outage_ms"] = r.drain_after_outage_ms;
    o["spooled"] = r.spooled;
    o["spool_bytes_peak"] = r.spool_bytes_peak;
    o["left_in_spool"] = r.left_in_spool;
    o["recovered"] = r.recovered;
    o["delivered_recovered"] = r.delivered_recovered;
    o["dispatcher_cpu_ns_per_event"] = r.dispatcher_cpu_ns_per_event;
    json::object cpu;
    cpu["producers"] = r.producers_cpu_ns_per_event;
    cpu["dispatcher"] = r.dispatcher_cpu_ns_per_event;
    if (r.kafka_consumed_unique >= 0) {
        // --kafka: librdkafka's threads (producer client, mock brokers, read-back consumer).
        cpu["collector"] = nullptr;
        cpu["kafka_threads"] = r.collector_cpu_ns_per_event;
    } else if (r.collector_cpu_ns_per_event >= 0) {
        cpu["collector"] = r.collector_cpu_ns_per_event;
    } else {
        cpu["collector"] = nullptr;  // not embedded: a receiver at --url
    }
    o["cpu_ns_per_event"] = std::move(cpu);
    o["peak_rss_mb"] = r.peak_rss_mb;
    if (r.kafka_consumed_unique >= 0) {
        o["kafka_consumed_unique"] = r.kafka_consumed_unique;
        o["kafka_consumed_missed"] = r.kafka_consumed_missed;
    }
    o["accounting_balanced"] = r.balanced;
    return o;
}

json::object config_json(const bench_options& o, const std::string& url) {
    json::object cfg;
    cfg["url"] = url;
    cfg["embedded_collector"] =
        o.url.empty() && !o.null_dispatcher && !o.collector_process && o.kafka.empty();
    cfg["collector_process"] = o.collector_process;
    cfg["dispatcher"] = o.null_dispatcher ? "null" : !o.kafka.empty() ? "kafka" : "http";
    if (!o.kafka.empty()) {
        cfg["kafka"] = o.kafka;
        cfg["kafka_topic"] = o.kafka_topic;
    }
    cfg["events"] = o.events;
    cfg["duration_s"] = static_cast<double>(o.duration.count()) / 1000.0;
    cfg["producers"] = o.producers;
    cfg["rate"] = o.rate;
    cfg["batch_size"] = o.proc.batch.batch_size;
    cfg["flush_interval_ms"] = o.proc.batch.flush_interval.count();
    cfg["max_batch_bytes"] = o.proc.batch.max_batch_bytes;
    cfg["connections"] = o.proc.http.max_connections;
    cfg["compression"] = o.proc.http.compression == http_compression::gzip ? "gzip" : "none";
    cfg["queue_capacity"] = o.proc.queue_capacity;
    cfg["collector_delay_ms"] = o.collector_delay.count();
    cfg["baseline"] = o.baseline;
    cfg["tls"] = o.tls;
    cfg["collector_fault"] = o.collector_fault;
    cfg["close_timeout_ms"] = o.close_timeout.count();
    cfg["backlog_max_bytes"] = o.proc.backlog_max_bytes;
    if (!o.proc.spool.dir.empty()) {
        cfg["spool_dir"] = o.proc.spool.dir;
        cfg["spool_mode"] = o.proc.spool.mode == spool_mode::always ? "always" : "overflow";
        cfg["spool_fsync"] = o.proc.spool.fsync == spool_fsync::none          ? "none"
                             : o.proc.spool.fsync == spool_fsync::every_batch ? "every_batch"
                                                                              : "interval";
        cfg["spool_max_bytes"] = o.proc.spool.max_bytes;
    }
    return cfg;
}

}  // namespace

void print_json(const bench_options& o, const std::string& url, const run_result& ours,
                const run_result* base) {
    json::object out = to_json(ours);
    out["config"] = config_json(o, url);
    if (base) {
        out["baseline"] = to_json(*base);
        out["speedup"] =
            base->delivered_per_sec > 0 ? ours.delivered_per_sec / base->delivered_per_sec : 0.0;
    }
    std::printf("%s\n", json::serialize(out).c_str());
}

void print_table(const run_result& r, const run_result* base) {
    auto row = [&](const char* name, auto fn) {
        std::printf("  %-30s %16s", name, fn(r).c_str());
        if (base)
            std::printf(" %16s", fn(*base).c_str());
        std::printf("\n");
    };
    auto u = [](std::uint64_t v) { return std::to_string(v); };
    auto f = [](double v, int prec) {
        char b[64];
        std::snprintf(b, sizeof b, "%.*f", prec, v);
        return std::string(b);
    };
    std::printf("\n  %-30s %16s", "", r.name.c_str());
    if (base)
        std::printf(" %16s", base->name.c_str());
    std::printf("\n");
    row("events accepted", [&](const run_result& x) { return u(x.accepted); });
    row("events delivered", [&](const run_result& x) { return u(x.delivered); });
    for (auto reason : all_drop_reasons) {
        const auto i = index_of(reason);
        if (r.dropped[i] || (base && base->dropped[i])) {
            const std::string label = "dropped: " + std::string(to_string(reason));
            row(label.c_str(), [&](const run_result& x) { return u(x.dropped[i]); });
        }
    }
    if (r.kafka_consumed_unique >= 0) {
        row("kafka: consumed unique events",
            [&](const run_result& x) { return std::to_string(x.kafka_consumed_unique); });
        row("kafka: duplicates / missed msgs", [&](const run_result& x) {
            return u(x.duplicates) + " / " + u(x.kafka_consumed_missed);
        });
    } else {
        row("duplicates at collector", [&](const run_result& x) { return u(x.duplicates); });
    }
    row("delivered events/s", [&](const run_result& x) { return f(x.delivered_per_sec, 0); });
    row("process() p50 / p99 / p999 ns",
        [&](const run_result& x) { return u(x.p50) + "/" + u(x.p99) + "/" + u(x.p999); });
    row("accept->ack p50 / p99 ms",
        [&](const run_result& x) { return f(x.e2e_p50_ms, 2) + "/" + f(x.e2e_p99_ms, 2); });
    row("batches (mean events)",
        [&](const run_result& x) { return u(x.batches) + " (" + f(x.mean_batch_events, 1) + ")"; });
    row("connections opened", [&](const run_result& x) { return u(x.connections_opened); });
    if (r.compression_ratio > 0)
        row("gzip bytes / JSON bytes", [&](const run_result& x) {
            return x.compression_ratio > 0 ? f(x.compression_ratio, 3) : std::string("-");
        });
    if (r.outages || (base && base->outages)) {
        row("endpoint outages (ms down)",
            [&](const run_result& x) { return u(x.outages) + " (" + u(x.outage_ms) + ")"; });
        row("probes / held peak events",
            [&](const run_result& x) { return u(x.probes) + " / " + u(x.held_peak_events); });
        row("connections during outages",
            [&](const run_result& x) { return u(x.outage_connection_attempts); });
        row("drain after outage ms",
            [&](const run_result& x) { return u(x.drain_after_outage_ms); });
    }
    if (r.spooled || r.recovered || (base && base->spooled)) {
        row("spooled events / peak bytes",
            [&](const run_result& x) { return u(x.spooled) + " / " + u(x.spool_bytes_peak); });
        row("left in spool / recovered",
            [&](const run_result& x) { return u(x.left_in_spool) + " / " + u(x.recovered); });
    }
    row("CPU ns/event: producers",
        [&](const run_result& x) { return f(x.producers_cpu_ns_per_event, 0); });
    row("CPU ns/event: dispatcher",
        [&](const run_result& x) { return f(x.dispatcher_cpu_ns_per_event, 0); });
    if (r.kafka_consumed_unique >= 0)
        row("CPU ns/event: kafka threads",
            [&](const run_result& x) { return f(x.collector_cpu_ns_per_event, 0); });
    else if (r.collector_cpu_ns_per_event >= 0)
        row("CPU ns/event: collector",
            [&](const run_result& x) { return f(x.collector_cpu_ns_per_event, 0); });
    row("peak RSS MB", [&](const run_result& x) { return f(x.peak_rss_mb, 1); });
    row("accepted == delivered+dropped",
        [&](const run_result& x) { return std::string(x.balanced ? "yes" : "NO"); });
    if (base && base->delivered_per_sec > 0)
        std::printf("\n  speedup (delivered events/s, %s over %s): %.1fx\n", r.name.c_str(),
                    base->name.c_str(), r.delivered_per_sec / base->delivered_per_sec);
}

void report_failures(const run_result& r) {
    for (auto reason : all_drop_reasons) {
        const auto i = index_of(reason);
        std::string first = r.first_failure[i];
        while (!first.empty() && std::isspace(static_cast<unsigned char>(first.back())))
            first.pop_back();
        if (r.dropped[i] == 0 || first.empty())
            continue;
        std::fprintf(
            stderr, "evdispatch bench: %s: %" PRIu64 " events not delivered (%s), first: %s\n",
            r.name.c_str(), r.dropped[i], std::string(to_string(reason)).c_str(), first.c_str());
    }
}

}  // namespace evdispatch::app
