// evdispatch bench: drives the processor with producer threads against the embedded loopback
// collector (or a receiver at --url), and compares with a baseline run in the same process.

#include "bench_kafka.hpp"
#include "bench_report.hpp"
#include "bench_run.hpp"
#include "collector_process.hpp"
#include "commands.hpp"
#include "guarded_thread.hpp"
#include "options.hpp"

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/endpoint_url.hpp>

#include "support/sync_client.hpp"
#include "support/tls_certs.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

namespace evdispatch::app {

using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const char* bench_help =
    "usage: evdispatch bench [options]\n"
    "  --events N              events to send (default: run for --duration)\n"
    "  --duration T            run time when --events is not given (default 10s)\n"
    "  --producers P           producer threads (default 4)\n"
    "  --rate R                events/s over all producers (default: as fast as possible)\n"
    "  --batch-size N          events per batch (default 10)\n"
    "  --flush-interval T      batch age limit (default 30s)\n"
    "  --max-batch-bytes N     bytes per batch body (default 1048576)\n"
    "  --connections N         keep-alive connections (default 4)\n"
    "  --queue-capacity N      hand-off ring capacity (default 10000)\n"
    "  --collector-delay-ms N  delay each collector response (default 0)\n"
    "  --baseline B            baseline run in the same process: sync (one blocking POST per\n"
    "                          event, new connection each), sync-keepalive, mutex (mutex +\n"
    "                          condition variable + deque hand-off), none (default sync)\n"
    "  --baseline-duration T   baseline run time (default 2s)\n"
    "  --tls                   the embedded collector serves HTTPS (a CA and a certificate for\n"
    "                          localhost are made for the run; verification stays on)\n"
    "  --collector-fault F     fault of the embedded collector: close-after-response,\n"
    "                          max-requests=N, 5xx-burst, 429-burst, reset-burst,\n"
    "                          stall-burst, drop-responses-burst (bursts last the first second),\n"
    "                          down-after=N:T (an outage: after the N-th request, connections\n"
    "                          are refused for T), refuse-for=T (refused for T from the start)\n"
    "  --find-max              search the highest --rate that runs with no refusal, nothing\n"
    "                          dropped and an accept-to-ack p99 within --max-p99-ms: trials\n"
    "                          of --duration (default 2s here), doubling, then bisecting\n"
    "  --max-p99-ms N          the p99 bound of --find-max (default 100)\n"
    "  --collector C           embedded (default: in this process) or process (a child\n"
    "                          `evdispatch collector` per run, so that this process's CPU\n"
    "                          is the library's; with --collector-delay-ms only)\n"
    "  --dispatcher D          http (default) or null: batches are acknowledged at once and\n"
    "                          nothing is sent (the pipeline's ceiling; no collector; with\n"
    "                          --baseline mutex or none)\n"
    "  --kafka mock            produce each batch to a Kafka topic on a mock cluster of 3\n"
    "                          brokers started in this process (librdkafka's, on 127.0.0.1);\n"
    "                          the topic is read back along the run and the events' uuids\n"
    "                          counted (kafka_consumed_unique); with --baseline none\n"
    "  --kafka-brokers H:P     the same against a Kafka cluster you run (bootstrap servers)\n"
    "  --kafka-topic T         the topic (default evdispatch-bench; must exist on a real\n"
    "                          cluster or be auto-created, and be empty for the count)\n"
    "  --url URL               send to a receiver you run instead of the embedded collector\n"
    "                          (http:// or https://; checked before anything starts)\n"
    "  --compression C         none (default) or gzip: batches compressed once when sealed,\n"
    "                          sent with Content-Encoding: gzip (the collector decodes them)\n"
    "  --compression-level N   zlib level for gzip, 1..9 (default 6)\n"
    "  --ca-file FILE          extra CA bundle for an https --url (the system store is trusted\n"
    "                          too; the certificate must name the URL's host)\n"
    "  --close-timeout T       deadline for delivering what is left at the end (default 30s)\n"
    "  --backlog-max-bytes N   memory room for batches waiting to be sent (default 16777216)\n"
    "  --spool-dir DIR         a disk spool in DIR (must exist): batches past half the memory\n"
    "                          room or of a down endpoint go to disk; what is left at the\n"
    "                          close deadline stays there, and is delivered by the next run\n"
    "                          with the same DIR (or by `evdispatch spool drain DIR`)\n"
    "  --spool-mode M          overflow (default) or always (every batch written first)\n"
    "  --spool-fsync F         none, interval (default, every 1s) or every_batch\n"
    "  --spool-max-bytes N     largest size of the spool files (default 1073741824)\n"
    "  --json                  print one JSON object on stdout instead of the table\n"
    "  --quiet                 no progress lines\n"
    "Events not delivered are counted by reason (connect_failed, timeout, tls_verify_failed,\n"
    "server_error, rejected_4xx, network_error, ...), in the table and under \"dropped\" in the\n"
    "JSON; stderr gets the first error of each reason. The sync baselines do not retry: a\n"
    "failed POST drops its event. They use the processor's timeouts (connect 5 s, request\n"
    "10 s) and, after a failed connect, a producer waits 10 ms (doubling up to 250 ms) before\n"
    "its next event.\n"
    "Exit status: 0 the run finished and its accounting balances; 3 the same, but the\n"
    "evdispatch run delivered no event at all (receiver down, refusing or unverifiable); the\n"
    "table or JSON is printed all the same; 1 accounting does not balance, the collector\n"
    "counted fewer events than reported delivered, a collector process died, or another\n"
    "failure; 2 bad usage (options, --url, --ca-file).\n";

// The values of --baseline but none, and what each does (for its progress line).
struct baseline_kind {
    const char* name;
    const char* does;
};
constexpr baseline_kind baselines[] = {
    {"sync", "one blocking POST per event on each producer thread, a new connection each"},
    {"sync-keepalive",
     "one blocking POST per event on each producer thread, over a connection it keeps"},
    {"mutex",
     "producers queue events under a mutex + condition variable, one thread hands them to "
     "the processor"},
};

const baseline_kind* find_baseline(const std::string& name) {
    for (const auto& b : baselines)
        if (name == b.name)
            return &b;
    return nullptr;
}

// Refuses a --url the library's parser refuses, and an https --url's --ca-file that does not
// load, before any thread starts: both are bad usage.
void check_url(const bench_options& o) {
    endpoint_url parsed;
    try {
        parsed = parse_endpoint_url(o.url);
    } catch (const boost::system::system_error& e) {
        // what() is "<what the parser said>: <the code's text>": keep the first part.
        std::string why = e.what();
        const std::string code_text = ": " + std::string(e.code().what());
        if (why.size() > code_text.size() && why.ends_with(code_text))
            why.resize(why.size() - code_text.size());
        throw usage_error("--url: " + why +
                          " (expected http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH)");
    }
    if (parsed.tls && !o.proc.tls.ca_file.empty()) {
        try {
            (void)test::make_sync_tls_context(o.proc.tls.ca_file);
        } catch (const boost::system::system_error& e) {
            throw usage_error("--ca-file: cannot load \"" + o.proc.tls.ca_file +
                              "\" as a PEM CA bundle (" + e.code().message() + ")");
        }
    }
}

bench_options read_options(const option_parser& p) {
    bench_options o;
    o.events = p.u64("events", 0);
    o.duration = p.ms("duration", o.duration, "s");
    o.producers = static_cast<unsigned>(p.u64("producers", 4, 1, 256));
    o.rate = p.num("rate", 0, 0, 1e9);
    o.proc.batch.batch_size = p.u64("batch-size", 10, 1);
    o.proc.batch.flush_interval = p.ms("flush-interval", 30'000ms);
    o.proc.batch.max_batch_bytes = p.u64("max-batch-bytes", 1 << 20, 1024);
    o.proc.http.max_connections = p.u64("connections", 4, 1, 1024);
    const auto compression = p.str("compression", "none");
    if (compression != "none" && compression != "gzip")
        throw usage_error("--compression must be none or gzip");
    o.proc.http.compression =
        compression == "gzip" ? http_compression::gzip : http_compression::none;
    o.proc.http.compression_level = static_cast<int>(p.u64("compression-level", 6, 1, 9));
    o.proc.queue_capacity = p.u64("queue-capacity", 10'000, 2);
    o.collector_delay = std::chrono::milliseconds(p.u64("collector-delay-ms", 0, 0, 600'000));
    o.kafka = p.str("kafka", "");
    o.kafka_brokers = p.str("kafka-brokers", "");
    o.kafka_topic = p.str("kafka-topic", o.kafka_topic);
    if (!o.kafka.empty() && o.kafka != "mock")
        throw usage_error("--kafka must be mock (or give --kafka-brokers HOST:PORT)");
    if (!o.kafka.empty() && !o.kafka_brokers.empty())
        throw usage_error("--kafka mock and --kafka-brokers go one without the other");
    if (!o.kafka_brokers.empty())
        o.kafka = "brokers";
    if (o.kafka.empty() && p.has("kafka-topic"))
        throw usage_error("--kafka-topic goes with --kafka mock or --kafka-brokers");
    if (!o.kafka.empty() && !kafka_available())
        throw usage_error(
            "--kafka: this evdispatch was built without Kafka support (librdkafka was not "
            "found when it was built: install librdkafka-dev and build again)");
    o.baseline = p.str("baseline", o.kafka.empty() ? "sync" : "none");
    if (o.baseline != "none" && !find_baseline(o.baseline))
        throw usage_error("--baseline must be sync, sync-keepalive, mutex or none");
    o.baseline_duration = p.ms("baseline-duration", o.baseline_duration, "s");
    o.url = p.str("url", "");
    o.proc.tls.ca_file = p.str("ca-file", "");
    o.tls = p.flag("tls");
    o.collector_fault = p.str("collector-fault", "");
    if (!o.url.empty() && (o.tls || !o.collector_fault.empty() || o.collector_delay.count()))
        throw usage_error(
            "--tls, --collector-fault and --collector-delay-ms apply to the "
            "embedded collector, not to --url");
    const auto dispatcher = p.str("dispatcher", "http");
    if (dispatcher != "http" && dispatcher != "null")
        throw usage_error("--dispatcher must be http or null");
    o.null_dispatcher = dispatcher == "null";
    if (o.null_dispatcher &&
        (!o.url.empty() || o.tls || !o.collector_fault.empty() || o.collector_delay.count() ||
         o.baseline == "sync" || o.baseline == "sync-keepalive"))
        throw usage_error(
            "--dispatcher null sends nothing: it goes without --url, --tls, --collector-fault, "
            "--collector-delay-ms and the sync baselines (use --baseline mutex or none)");
    if (!o.kafka.empty() &&
        (!o.url.empty() || o.tls || !o.collector_fault.empty() || o.collector_delay.count() ||
         o.null_dispatcher || o.baseline != "none" || p.has("collector") || p.flag("find-max")))
        throw usage_error(
            "--kafka sends to Kafka: it goes without --url, --tls, --collector-fault, "
            "--collector-delay-ms, --collector, --dispatcher null, --find-max and baselines "
            "(--baseline none)");
    const auto where = p.str("collector", "embedded");
    if (where != "embedded" && where != "process")
        throw usage_error("--collector must be embedded or process");
    o.collector_process = where == "process";
    if (o.collector_process &&
        (!o.url.empty() || o.tls || !o.collector_fault.empty() || o.null_dispatcher))
        throw usage_error(
            "--collector process goes without --url, --tls, --collector-fault and "
            "--dispatcher null");
    o.find_max = p.flag("find-max");
    o.max_p99 = std::chrono::milliseconds(p.u64("max-p99-ms", 100, 1, 600'000));
    if (o.find_max && (o.events || p.has("rate") || o.collector_process))
        throw usage_error(
            "--find-max chooses the rate: it goes without --events, --rate and "
            "--collector process");
    if (!o.find_max && p.has("max-p99-ms"))
        throw usage_error("--max-p99-ms is the bound of --find-max");
    if (o.find_max && !p.has("duration"))
        o.duration = 2s;
    o.close_timeout = p.ms("close-timeout", o.close_timeout, "s");
    o.proc.backlog_max_bytes = p.u64("backlog-max-bytes", o.proc.backlog_max_bytes, 1024);
    o.proc.spool.dir = p.str("spool-dir", "");
    const auto mode = p.str("spool-mode", "overflow");
    if (mode != "overflow" && mode != "always")
        throw usage_error("--spool-mode must be overflow or always");
    o.proc.spool.mode = mode == "always" ? spool_mode::always : spool_mode::overflow;
    const auto fsync = p.str("spool-fsync", "interval");
    if (fsync != "none" && fsync != "interval" && fsync != "every_batch")
        throw usage_error("--spool-fsync must be none, interval or every_batch");
    o.proc.spool.fsync = fsync == "none"          ? spool_fsync::none
                         : fsync == "every_batch" ? spool_fsync::every_batch
                                                  : spool_fsync::interval;
    o.proc.spool.max_bytes = p.u64("spool-max-bytes", o.proc.spool.max_bytes, 1);
    if (!o.proc.spool.dir.empty()) {
        std::error_code ec;
        if (!std::filesystem::is_directory(o.proc.spool.dir, ec))
            throw usage_error("--spool-dir: spool.dir '" + o.proc.spool.dir +
                              "' is not an existing directory");
    }
    if (o.proc.spool.dir.empty() &&
        (p.has("spool-mode") || p.has("spool-fsync") || p.has("spool-max-bytes")))
        throw usage_error("--spool-mode, --spool-fsync and --spool-max-bytes need --spool-dir");
    o.json_out = p.flag("json");
    o.progress = !p.flag("quiet");
    if (o.proc.batch.flush_interval.count() == 0)
        throw usage_error("--flush-interval must be at least 1ms");
    if (o.duration.count() == 0 && o.events == 0)
        throw usage_error("--duration must be positive when --events is not given");
    if (p.has("url"))
        check_url(o);
    return o;
}

// Sets the named fault on the collector; returns true for a burst (to be cleared after 1 s).
bool apply_fault(collector& col, const std::string& name) {
    collector_faults f;
    bool burst = name.size() > 6 && name.compare(name.size() - 6, 6, "-burst") == 0;
    if (name == "close-after-response") {
        f.close_after_response = true;
    } else if (name.rfind("max-requests=", 0) == 0) {
        option_parser n({"collector-fault"}, {});  // so that a bad N names the option
        n.parse({"--collector-fault", name.substr(13)});
        f.max_requests_per_connection =
            static_cast<unsigned>(n.u64("collector-fault", 1, 1, 1'000'000));
    } else if (name.rfind("down-after=", 0) == 0) {
        // down-after=N:T: after the N-th request, down (refusing) for T, then back.
        const auto spec = name.substr(11);
        const auto colon = spec.find(':');
        if (colon == std::string::npos)
            throw usage_error(
                "--collector-fault down-after=N:T needs both N and T (e.g. "
                "down-after=200:30s)");
        option_parser n({"collector-fault"}, {});
        n.parse({"--collector-fault", spec.substr(0, colon)});
        f.down_after = n.u64("collector-fault", 1, 1, 1'000'000'000);
        option_parser t({"collector-fault"}, {});
        t.parse({"--collector-fault", spec.substr(colon + 1)});
        f.down_for = t.ms("collector-fault", std::chrono::milliseconds(0), "s");
        if (f.down_for.count() <= 0)
            throw usage_error("--collector-fault down-after=N:T: T must be at least 1ms");
    } else if (name.rfind("refuse-for=", 0) == 0) {
        option_parser t({"collector-fault"}, {});
        t.parse({"--collector-fault", name.substr(11)});
        f.refuse_for = t.ms("collector-fault", std::chrono::milliseconds(0), "s");
        if (f.refuse_for.count() <= 0)
            throw usage_error("--collector-fault refuse-for=T: T must be at least 1ms");
    } else if (name == "5xx-burst") {
        f.retry_after_status = 503;
    } else if (name == "429-burst") {
        f.retry_after_status = 429;
        f.retry_after = "1";
    } else if (name == "reset-burst") {
        f.reset_mid_request = true;
    } else if (name == "stall-burst") {
        f.stall = true;
    } else if (name == "drop-responses-burst") {
        f.accept_then_drop_response = true;
    } else {
        throw usage_error("unknown --collector-fault '" + name + "'");
    }
    col.set_faults(f);
    return burst;
}

// The embedded collector of a run without --url, with its certificates (--tls) and the thread
// that ends a burst fault.
struct embedded_collector {
    std::unique_ptr<test::tls_certs> certs;
    std::unique_ptr<collector> col;
    guarded_thread fault_clearer;  // after col: stopped and joined before it goes
};

// Starts the collector `o` asks for; with --tls, points o.proc.tls.ca_file at its CA.
embedded_collector start_collector(bench_options& o) {
    embedded_collector e;
    collector_config cc;
    cc.delay = o.collector_delay;
    if (o.tls) {
        e.certs = std::make_unique<test::tls_certs>();
        cc.tls_cert_file = e.certs->server.cert;
        cc.tls_key_file = e.certs->server.key;
        cc.url_host = "localhost";
        o.proc.tls.ca_file = e.certs->ca.cert;
    }
    e.col = std::make_unique<collector>(cc);
    if (!o.collector_fault.empty() && apply_fault(*e.col, o.collector_fault))
        e.fault_clearer = guarded_thread("ev-faults", [c = e.col.get()](std::stop_token st) {
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock lk(m);
            cv.wait_for(lk, st, 1s, [] { return false; });
            c->set_faults({});
        });
    return e;
}

std::optional<run_result> run_baseline(const bench_options& o, const std::string& url,
                                       collector* col) {
    const baseline_kind* kind = find_baseline(o.baseline);
    if (!kind)
        return std::nullopt;
    if (o.progress)
        std::fprintf(stderr, "baseline %s: %s...\n", kind->name, kind->does);
    if (o.baseline == "mutex") {
        bench_options b = o;
        b.proc.spool = {};  // the spool is the evdispatch run's; the baseline runs without it
        return run_mutex_baseline(b, url, col);
    }
    return run_sync_baseline(o, url, col, o.baseline == "sync-keepalive");
}

// The exit status (see bench_help), with a line on stderr saying why when it is not 0.
int exit_status(const run_result& ours, const std::optional<run_result>& base, bool counted,
                const std::string& url) {
    if (!ours.balanced || (base && !base->balanced)) {
        std::fprintf(stderr, "evdispatch bench: accounting does not balance\n");
        return 1;
    }
    if (counted && ours.collector_events + (base ? base->collector_events : 0) <
                       ours.delivered + (base ? base->delivered : 0)) {
        std::fprintf(stderr,
                     "evdispatch bench: the collector counted fewer events than "
                     "were reported delivered\n");
        return 1;
    }
    if (ours.accepted > 0 && ours.delivered == 0) {
        std::fprintf(stderr, "evdispatch bench: no event was delivered to %s\n", url.c_str());
        return 3;
    }
    return 0;
}

// --find-max: trials at paced rates, doubling from 20,000 events/s until one fails, then
// bisecting four times between the last that passed and the first that failed. A trial passes
// when nothing was refused or dropped, the accounting balances, it delivered at least 90% of
// the rate, and its accept-to-ack p99 is within o.max_p99.
int find_max(bench_options o, const std::string& url, collector* col) {
    struct trial {
        double rate;
        run_result r;
        bool ok;
    };
    std::vector<trial> trials;
    const bool progress = o.progress;
    o.progress = false;
    auto run_at = [&](double rate) {
        o.rate = rate;
        run_result r = run_ours(o, url, col);
        const bool ok = r.balanced && r.accepted == r.submitted && r.delivered == r.accepted &&
                        r.delivered_per_sec >= 0.9 * rate &&
                        r.e2e_p99_ms <= static_cast<double>(o.max_p99.count());
        if (progress)
            std::fprintf(stderr,
                         "  rate %10.0f/s: delivered %10.0f/s, refused %" PRIu64
                         ", e2e p99 %.1f ms: %s\n",
                         rate, r.delivered_per_sec, r.submitted - r.accepted, r.e2e_p99_ms,
                         ok ? "ok" : "too much");
        trials.push_back({rate, std::move(r), ok});
        return ok;
    };
    double good = 0, bad = 0;
    for (double rate = 20'000; rate <= 64e6; rate *= 2) {
        if (!run_at(rate)) {
            bad = rate;
            break;
        }
        good = rate;
    }
    for (int i = 0; i < 4 && bad > 0; ++i) {
        const double mid = std::round(((good > 0 ? good : bad / 4) + bad) / 2);
        (run_at(mid) ? good : bad) = mid;
    }
    if (o.json_out) {
        json::object out;
        out["max_rate"] = good;
        out["max_p99_ms"] = o.max_p99.count();
        out["trial_seconds"] = static_cast<double>(o.duration.count()) / 1000.0;
        json::array ts;
        for (const auto& t : trials) {
            json::object j;
            j["rate"] = t.rate;
            j["ok"] = t.ok;
            j["delivered_events_per_sec"] = t.r.delivered_per_sec;
            j["refused"] = t.r.submitted - t.r.accepted;
            j["e2e_latency_ms_p99"] = t.r.e2e_p99_ms;
            j["cpu_ns_per_event_dispatcher"] = t.r.dispatcher_cpu_ns_per_event;
            ts.push_back(std::move(j));
        }
        out["trials"] = std::move(ts);
        std::printf("%s\n", json::serialize(out).c_str());
    } else {
        std::printf("\n  %12s %14s %10s %12s\n", "rate/s", "delivered/s", "refused", "e2e p99 ms");
        for (const auto& t : trials)
            std::printf("  %12.0f %14.0f %10" PRIu64 " %12.1f  %s\n", t.rate, t.r.delivered_per_sec,
                        t.r.submitted - t.r.accepted, t.r.e2e_p99_ms, t.ok ? "ok" : "");
        std::printf("\n  highest rate with no refusal and e2e p99 <= %lld ms: %.0f events/s\n",
                    static_cast<long long>(o.max_p99.count()), good);
    }
    std::fflush(stdout);
    return good > 0 ? 0 : 3;
}

}  // namespace

int run_bench(const args& a) {
    option_parser p({"events",
                     "duration",
                     "producers",
                     "rate",
                     "batch-size",
                     "flush-interval",
                     "max-batch-bytes",
                     "connections",
                     "compression",
                     "compression-level",
                     "queue-capacity",
                     "collector-delay-ms",
                     "baseline",
                     "baseline-duration",
                     "url",
                     "ca-file",
                     "close-timeout",
                     "collector-fault",
                     "spool-dir",
                     "spool-mode",
                     "spool-fsync",
                     "spool-max-bytes",
                     "backlog-max-bytes",
                     "dispatcher",
                     "kafka",
                     "kafka-brokers",
                     "kafka-topic",
                     "collector",
                     "max-p99-ms"},
                    {"json", "quiet", "help", "tls", "find-max"});
    p.parse(a);
    if (p.flag("help")) {
        std::fputs(bench_help, stdout);
        return 0;
    }
    bench_options o = read_options(p);
    if (!o.kafka.empty()) {
        const run_result ours = run_kafka_bench(o);
        if (o.json_out)
            print_json(o, "http://127.0.0.1:9/v1/events", ours, nullptr);
        else
            print_table(ours, nullptr);
        std::fflush(stdout);
        report_failures(ours);
        if (!ours.balanced) {
            std::fprintf(stderr, "evdispatch bench: accounting does not balance\n");
            return 1;
        }
        if (ours.kafka_consumed_missed == 0 &&
            static_cast<std::uint64_t>(ours.kafka_consumed_unique) < ours.delivered) {
            std::fprintf(stderr,
                         "evdispatch bench: fewer events read back from the topic than were "
                         "reported delivered\n");
            return 1;
        }
        if (ours.kafka_consumed_missed)
            std::fprintf(stderr,
                         "evdispatch bench: %llu messages left the mock cluster's log before "
                         "they were read: the read-back count is incomplete\n",
                         static_cast<unsigned long long>(ours.kafka_consumed_missed));
        if (ours.accepted > 0 && ours.delivered == 0) {
            std::fprintf(stderr, "evdispatch bench: no event was delivered to Kafka\n");
            return 3;
        }
        return 0;
    }
    embedded_collector embedded;
    std::string url = o.url;
    if (o.null_dispatcher) {
        url = "http://127.0.0.1:9/v1/events";  // the events' endpoint; never contacted
    } else if (url.empty()) {
        embedded = start_collector(o);
        url = embedded.col->url();
    }
    collector* col = embedded.col.get();
    if (o.progress && !o.collector_process)
        std::fprintf(stderr, "evdispatch bench: %u producers -> %s (batch %zu, %zu connections)\n",
                     o.producers, url.c_str(), o.proc.batch.batch_size,
                     o.proc.http.max_connections);
    if (o.find_max)
        return find_max(o, url, col);
    run_result ours;
    std::optional<run_result> base;
    bool collector_lost = false;  // a collector process died: exit 1 after the report
    if (o.collector_process) {
        // One child per run; it stops by itself in any case once the run should be long over.
        const auto lifetime = o.duration + o.baseline_duration + o.close_timeout + 300s +
                              (o.events ? std::chrono::milliseconds(24h) : 0ms);
        auto counted = [&](run_result& r, const collector_process::result& c) {
            if (!c.failure.empty()) {  // the run's own counts stand; the collector's are lost
                std::fprintf(stderr, "evdispatch bench: %s: its counts for the %s run are lost\n",
                             c.failure.c_str(), r.name.c_str());
                collector_lost = true;
                return;
            }
            r.collector_events = c.unique_events;
            r.duplicates = c.duplicates;
            r.collector_cpu_ns_per_event =
                r.delivered ? static_cast<double>(c.cpu_ns) / static_cast<double>(r.delivered) : 0;
        };
        collector_process first(o.collector_delay, lifetime);
        url = first.url();
        if (o.progress)
            std::fprintf(stderr,
                         "evdispatch bench: %u producers -> %s, a collector process (batch %zu, "
                         "%zu connections)\n",
                         o.producers, url.c_str(), o.proc.batch.batch_size,
                         o.proc.http.max_connections);
        ours = run_ours(o, url, nullptr);
        counted(ours, first.stop());
        if (find_baseline(o.baseline)) {
            collector_process second(o.collector_delay, lifetime);
            base = run_baseline(o, second.url(), nullptr);
            if (base)
                counted(*base, second.stop());
        }
    } else {
        ours = run_ours(o, url, col);
        embedded.fault_clearer.join();
        base = run_baseline(o, url, col);
    }

    if (o.json_out)
        print_json(o, url, ours, base ? &*base : nullptr);
    else
        print_table(ours, base ? &*base : nullptr);
    std::fflush(stdout);
    report_failures(ours);
    if (base)
        report_failures(*base);
    if (collector_lost)
        return 1;
    return exit_status(ours, base, col || o.collector_process, url);
}

}  // namespace evdispatch::app
