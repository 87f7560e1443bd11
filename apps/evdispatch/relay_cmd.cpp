// evdispatch relay: the local relay (evdispatch::relay) as a server process, with signals:
// the first SIGTERM/SIGINT drains (stop taking events, deliver what is held within
// --drain-timeout, report, exit 0), a second exits at once with what was not delivered.

#include "commands.hpp"
#include "options.hpp"

#include <evdispatch/relay.hpp>

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

namespace evdispatch::app {

namespace {

using namespace std::chrono_literals;

const char* relay_help =
    "usage: evdispatch relay [options]\n"
    "Takes Optimizely event batches (POST /v1/events, POST /eu/v1/events, as the event API)\n"
    "from SDKs that send one request per decision, answers at once, and delivers the visitors\n"
    "upstream re-batched, with retries (docs/relay.md).\n"
    "listening:\n"
    "  --listen HOST:PORT        address (default 127.0.0.1:8090; [::1]:8090 for IPv6)\n"
    "  --unix PATH               listen on a unix socket instead\n"
    "  --threads N               server threads (default 1)\n"
    "  --max-connections N       open connections; one more gets 503 (default 1024)\n"
    "  --max-body-bytes N        larger bodies (also once gunzipped) get 413 (default 3500000)\n"
    "  --read-timeout T          a request must arrive within T of its first byte (default 10s)\n"
    "  --idle-timeout T          idle keep-alive connections close after T (default 60s)\n"
    "  --max-pending N           room: events held for the upstream; a batch that does not\n"
    "                            fit gets 503 + Retry-After (default 100000)\n"
    "  --retry-after S           Retry-After seconds in a 503 (default 1)\n"
    "upstream:\n"
    "  --upstream URL            where /v1/events goes (default\n"
    "                            https://logx.optimizely.com/v1/events)\n"
    "  --eu-upstream URL         where /eu/v1/events goes (default\n"
    "                            https://eu.logx.optimizely.com/v1/events)\n"
    "  --batch-size N            visitors per upstream batch (default 100)\n"
    "  --flush-interval T        batch age limit (default 1s)\n"
    "  --connections N           keep-alive connections per upstream (default 4)\n"
    "  --ca-file FILE            extra CA bundle for an https upstream\n"
    "  --max-attempts N          attempts per batch (default 5)\n"
    "  --compression C           none (default) or gzip toward the upstream (falls back to\n"
    "                            JSON if it answers 415/400)\n"
    "  --spool-dir DIR           a disk spool in DIR (must exist): outages longer than memory\n"
    "                            holds, and what the drain timeout cuts short, survive\n"
    "  --durable-ack             answer 204 only once the visitors are durable: written and\n"
    "                            fsynced to the spool (with --spool-dir), else delivered\n"
    "                            upstream; the answer waits up to --flush-interval for the\n"
    "                            batch to close (use a short one)\n"
    "stopping:\n"
    "  --drain-timeout T         on SIGTERM/SIGINT, deliver what is held for up to T\n"
    "                            (default 10s); a second signal exits at once\n"
    "  --duration T              drain by itself after T (default: run until a signal)\n"
    "  --quiet                   no upstream state lines on stderr\n"
    "Once listening, the first line on stdout is 'evdispatch relay listening on URL ...'; at\n"
    "the end a line 'final: {JSON}' reports the relay's counters and the delivery by reason.\n"
    "Exit status: 0 drained (even if the deadline cut delivery short: see the report);\n"
    "1 a second signal or a failure; 2 bad usage.\n";

std::string report_json(const relay_stats& r, const close_report& c, bool interrupted) {
    std::string s = "{\"requests\":" + std::to_string(r.requests) +
                    ",\"accepted_requests\":" + std::to_string(r.accepted_requests) +
                    ",\"accepted_events\":" + std::to_string(r.accepted_events) +
                    ",\"refused_full\":" + std::to_string(r.refused_full) +
                    ",\"refused_draining\":" + std::to_string(r.refused_draining) +
                    ",\"bad_requests\":" + std::to_string(r.bad_requests) +
                    ",\"durable_lost\":" + std::to_string(r.durable_lost) +
                    ",\"delivered\":" + std::to_string(c.delivered) +
                    ",\"not_delivered\":" + std::to_string(c.not_delivered) +
                    ",\"left_in_spool\":" + std::to_string(c.spooled) + ",\"dropped\":{";
    bool first = true;
    for (const auto reason : all_drop_reasons) {
        const auto n = c.dropped[static_cast<std::size_t>(reason)];
        if (n == 0)
            continue;
        if (!first)
            s += ',';
        first = false;
        s += "\"" + std::string(to_string(reason)) + "\":" + std::to_string(n);
    }
    s += "},\"deadline_passed\":" + std::string(c.deadline_passed ? "true" : "false") +
         ",\"interrupted\":" + (interrupted ? "true" : "false") +
         ",\"accounting_balanced\":" + (c.metrics.balanced() ? "true" : "false") + "}";
    return s;
}

}  // namespace

int run_relay(const args& a) {
    option_parser p(
        {"listen",       "unix",         "threads",        "max-connections", "max-body-bytes",
         "read-timeout", "idle-timeout", "max-pending",    "retry-after",     "upstream",
         "eu-upstream",  "batch-size",   "flush-interval", "connections",     "ca-file",
         "max-attempts", "compression",  "spool-dir",      "drain-timeout",   "duration"},
        {"durable-ack", "quiet", "help"});
    p.parse(a);
    if (p.flag("help")) {
        std::fputs(relay_help, stdout);
        return 0;
    }
    relay_config cfg;
    if (p.has("unix") && p.has("listen"))
        throw usage_error("--listen and --unix exclude each other");
    cfg.unix_socket = p.str("unix", "");
    if (p.has("unix") && cfg.unix_socket.empty())
        throw usage_error("--unix needs a path");
    const auto listen = parse_host_port("listen", p.str("listen", "127.0.0.1:8090"), 0);
    cfg.listen_address = listen.host;
    cfg.port = listen.port;
    cfg.threads = static_cast<unsigned>(p.u64("threads", 1, 1, 64));
    cfg.max_connections = p.u64("max-connections", cfg.max_connections, 1, 1'000'000);
    cfg.max_body_bytes = p.u64("max-body-bytes", cfg.max_body_bytes, 1024, 1ull << 30);
    cfg.read_timeout = p.ms("read-timeout", cfg.read_timeout, "s");
    cfg.idle_timeout = p.ms("idle-timeout", cfg.idle_timeout, "s");
    cfg.max_pending_events = p.u64("max-pending", cfg.max_pending_events, 1, 100'000'000);
    cfg.retry_after = std::chrono::seconds(p.u64("retry-after", 1, 1, 86'400));
    cfg.upstream = p.str("upstream", cfg.upstream);
    cfg.eu_upstream = p.str("eu-upstream", cfg.eu_upstream);
    auto& proc = cfg.processor;
    proc.batch.batch_size = p.u64("batch-size", 100, 1);
    proc.batch.flush_interval = p.ms("flush-interval", 1s);
    proc.http.max_connections = p.u64("connections", 4, 1, 1024);
    proc.tls.ca_file = p.str("ca-file", "");
    proc.retry.max_attempts = static_cast<unsigned>(p.u64("max-attempts", 5, 1, 1000));
    const auto compression = p.str("compression", "none");
    if (compression != "none" && compression != "gzip")
        throw usage_error("--compression must be none or gzip");
    proc.http.compression = compression == "gzip" ? http_compression::gzip : http_compression::none;
    proc.spool.dir = p.str("spool-dir", "");
    if (!proc.spool.dir.empty()) {
        std::error_code ec;
        if (!std::filesystem::is_directory(proc.spool.dir, ec))
            throw usage_error("--spool-dir: '" + proc.spool.dir + "' is not an existing directory");
    }
    cfg.durable_ack = p.flag("durable-ack");
    const auto drain_timeout = p.ms("drain-timeout", 10s, "s");
    const auto duration = p.ms("duration", 0ms, "s");
    const bool quiet = p.flag("quiet");
    if (cfg.read_timeout.count() == 0 || cfg.idle_timeout.count() == 0 ||
        proc.batch.flush_interval.count() == 0)
        throw usage_error("--read-timeout, --idle-timeout and --flush-interval must be > 0");

    processor_hooks hooks;
    if (!quiet) {
        hooks.on_endpoint_state = [](const endpoint_change& c) {
            std::fprintf(stderr, "evdispatch relay: upstream %.*s is %.*s%s%.*s\n",
                         static_cast<int>(c.url.size()), c.url.data(),
                         static_cast<int>(to_string(c.to).size()), to_string(c.to).data(),
                         c.message.empty() ? "" : ": ", static_cast<int>(c.message.size()),
                         c.message.data());
        };
    }

    // Signals are taken synchronously by this thread; block them before any thread starts.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    std::optional<relay> holder;
    try {
        holder.emplace(cfg, std::move(hooks));
    } catch (const boost::system::system_error& e) {
        if (e.code() == error::invalid_config || e.code() == error::invalid_url)
            throw usage_error(e.what());
        throw;
    }
    relay& r = *holder;
    std::printf("evdispatch relay listening on %s, forwarding to %s\n", r.url().c_str(),
                cfg.upstream.c_str());
    std::fflush(stdout);

    // Run until a signal or --duration.
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
        timespec ts{0, 200'000'000};
        const int sig = sigtimedwait(&set, nullptr, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (duration.count() > 0 && std::chrono::steady_clock::now() - start >= duration)
            break;
    }
    std::fprintf(stderr, "evdispatch relay: draining (up to %lld ms); a second signal exits now\n",
                 static_cast<long long>(drain_timeout.count()));

    // Drain on another thread; a second signal ends the process without waiting for it.
    std::atomic<bool> done{false};
    close_report report;
    std::thread drainer([&] {
        report = r.drain(drain_timeout);
        done.store(true);
    });
    while (!done.load()) {
        timespec ts{0, 50'000'000};
        const int sig = sigtimedwait(&set, nullptr, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            const metrics_snapshot m = r.metrics();
            close_report now;
            now.delivered = m.delivered;
            now.not_delivered = m.pending + m.dropped_after_accept();
            now.dropped = m.dropped;
            now.metrics = m;
            std::printf("final: %s\n", report_json(r.stats(), now, true).c_str());
            std::fprintf(stderr,
                         "evdispatch relay: second signal: exiting with %llu events not "
                         "delivered (%llu pending)\n",
                         static_cast<unsigned long long>(now.not_delivered),
                         static_cast<unsigned long long>(m.pending));
            std::fflush(stdout);
            std::fflush(stderr);
            ::_exit(1);
        }
    }
    drainer.join();
    std::printf("final: %s\n", report_json(r.stats(), report, false).c_str());
    std::fflush(stdout);
    return 0;
}

}  // namespace evdispatch::app
