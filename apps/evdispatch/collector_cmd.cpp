// evdispatch collector: the loopback collector on its own, with a stats line per second.

#include "commands.hpp"
#include "options.hpp"

#include <evdispatch/collector/collector.hpp>

#include "support/tls_certs.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <system_error>

namespace evdispatch::app {

namespace {

const char* collector_help =
    "usage: evdispatch collector [options]\n"
    "  --listen HOST:PORT        address to listen on (default 127.0.0.1:0; port 0 picks one;\n"
    "                            an IPv6 address in brackets: [::1]:8080)\n"
    "  --url-host NAME           host name printed in the URL (e.g. localhost for TLS)\n"
    "  --tls-cert FILE           serve HTTPS with this certificate chain (PEM)...\n"
    "  --tls-key FILE            ...and this private key (PEM)\n"
    "  --tls-self-signed DIR     serve HTTPS with a CA and a certificate for localhost,\n"
    "                            127.0.0.1 and ::1 made now: writes DIR/ca.pem (give it to\n"
    "                            clients, e.g. bench --ca-file), DIR/cert.pem, DIR/key.pem;\n"
    "                            the URL names localhost unless --url-host says otherwise\n"
    "  --threads N               server threads (default 1)\n"
    "  --status CODE             status for accepted batches (default 204)\n"
    "  --delay-ms N              delay every response by N ms\n"
    "  --max-body-bytes N        larger bodies get 413 (default 8388608; gzip bodies are\n"
    "                            decoded up to this many bytes)\n"
    "  --refuse-gzip             answer 415 to gzip-encoded batches (an endpoint without gzip)\n"
    "faults:\n"
    "  --fault-script S,S,...    answer the next batches with these statuses in order\n"
    "                            (e.g. 500,503,204), then normally\n"
    "  --retry-after-status S    answer every batch with status S and a Retry-After header...\n"
    "  --retry-after V           ...whose value is V (seconds or an HTTP-date)\n"
    "  --fail-every N            answer every Nth batch (N, 2N, ...) with --fail-status\n"
    "  --fail-status S           status of those answers (default 503)\n"
    "  --stall                   read requests, never answer\n"
    "  --reset                   reset the connection in the middle of each request\n"
    "  --close-after-response    close the connection after each response\n"
    "  --max-requests-per-connection N   close after N responses on a connection\n"
    "  --drop-responses          count each batch, then close without answering\n"
    "  --down-after N            after the Nth request (of any kind), go away once...\n"
    "  --down-for T              ...for T (e.g. 10s, 500ms): stop listening (connecting is\n"
    "                            refused), drop every open connection, then listen again on\n"
    "                            the same port\n"
    "  --refuse-for T            refuse connections for the first T, then listen\n"
    "other:\n"
    "  --duration T              stop by itself after T (default: run until SIGINT/SIGTERM)\n"
    "  --quiet                   no per-second stats lines\n"
    "  --record FILE             when it stops, write the accepted batches to FILE (opened at\n"
    "                            the start) as one JSON array of the bodies, in arrival order\n"
    "GET /stats on the collector answers its counters as JSON. Once listening, the first line\n"
    "on stdout is 'evdispatch collector listening on URL (port N)'.\n";

// The statuses of --fault-script, in the range the collector accepts for them (200..599), so
// that a bad one is bad usage naming the option.
std::vector<unsigned> parse_statuses(const std::string& s) {
    std::vector<unsigned> out;
    for (const auto& part : split_list(s)) {
        char* end = nullptr;
        const unsigned long v = std::strtoul(part.c_str(), &end, 10);
        if (part.empty() || *end != '\0' || v < 200 || v > 599)
            throw usage_error("--fault-script: '" + part + "' is not a status in 200..599");
        out.push_back(static_cast<unsigned>(v));
    }
    return out;
}

// The value of a fault's duration option: more than 0, at most a day.
std::chrono::milliseconds fault_duration(const option_parser& p, const char* name) {
    const auto d = p.ms(name, std::chrono::milliseconds(0), "ms");
    if (p.has(name) && (d.count() <= 0 || d > std::chrono::hours(24)))
        throw usage_error(std::string("--") + name + ": '" + p.str(name, "") +
                          "' is not a duration between 1ms and 24h");
    return d;
}

// Makes a CA and a server certificate for localhost, 127.0.0.1 and ::1 (the set bench --tls
// uses), writes DIR/ca.pem, DIR/cert.pem and DIR/key.pem (owner-only), and points `cfg` at them.
void write_self_signed(const std::string& dir, collector_config& cfg) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
        throw std::runtime_error("--tls-self-signed: cannot create the directory \"" + dir +
                                 "\": " + ec.message());
    const test::tls_certs made;  // in a temporary directory, removed at the end of this scope
    const fs::path out(dir);
    const auto copy = [&](const std::string& from, const char* name) {
        const fs::path to = out / name;
        fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
        if (ec)
            throw std::runtime_error("--tls-self-signed: cannot write " + to.string() + ": " +
                                     ec.message());
        return to.string();
    };
    const auto owner_only = fs::perms::owner_read | fs::perms::owner_write;
    copy(made.ca.cert, "ca.pem");
    cfg.tls_cert_file = copy(made.server.cert, "cert.pem");
    // The copy takes the source's mode: make the key owner-only before and after copying.
    fs::permissions(made.server.key, owner_only, fs::perm_options::replace, ec);
    cfg.tls_key_file = copy(made.server.key, "key.pem");
    fs::permissions(cfg.tls_key_file, owner_only, fs::perm_options::replace, ec);
}

int write_failed(const std::string& file) {
    std::fprintf(stderr, "evdispatch collector: cannot write --record file %s: %s\n", file.c_str(),
                 std::strerror(errno));
    return 1;
}

}  // namespace

int run_collector(const args& a) {
    option_parser p({"listen",
                     "url-host",
                     "tls-cert",
                     "tls-key",
                     "tls-self-signed",
                     "threads",
                     "status",
                     "delay-ms",
                     "max-body-bytes",
                     "fault-script",
                     "retry-after-status",
                     "retry-after",
                     "fail-every",
                     "fail-status",
                     "max-requests-per-connection",
                     "down-after",
                     "down-for",
                     "refuse-for",
                     "duration",
                     "record"},
                    {"stall", "reset", "close-after-response", "drop-responses", "refuse-gzip",
                     "quiet", "help"});
    p.parse(a);
    if (p.flag("help")) {
        std::fputs(collector_help, stdout);
        return 0;
    }
    collector_config cfg;
    const auto listen = parse_host_port("listen", p.str("listen", "127.0.0.1:0"), 0);
    cfg.listen_address = listen.host;
    cfg.port = listen.port;
    cfg.url_host = p.str("url-host", "");
    cfg.tls_cert_file = p.str("tls-cert", "");
    cfg.tls_key_file = p.str("tls-key", "");
    if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
        throw usage_error("--tls-cert and --tls-key go together");
    const std::string self_signed_dir = p.str("tls-self-signed", "");
    if (p.has("tls-self-signed")) {
        if (self_signed_dir.empty())
            throw usage_error("--tls-self-signed needs a directory");
        if (!cfg.tls_cert_file.empty())
            throw usage_error("--tls-self-signed and --tls-cert/--tls-key exclude each other");
    }
    cfg.threads = static_cast<unsigned>(p.u64("threads", 1, 1, 64));
    cfg.success_status = static_cast<unsigned>(p.u64("status", 204, 200, 299));
    cfg.delay = std::chrono::milliseconds(p.u64("delay-ms", 0, 0, 3'600'000));
    cfg.max_body_bytes = p.u64("max-body-bytes", cfg.max_body_bytes, 1024);
    cfg.refuse_gzip = p.flag("refuse-gzip");

    collector_faults faults;
    if (p.has("fault-script"))
        faults.script = parse_statuses(p.str("fault-script", ""));
    faults.retry_after_status = static_cast<unsigned>(p.u64("retry-after-status", 0, 0, 599));
    faults.retry_after = p.str("retry-after", "");
    if (!faults.retry_after.empty() && faults.retry_after_status == 0)
        faults.retry_after_status = 429;
    faults.stall = p.flag("stall");
    faults.reset_mid_request = p.flag("reset");
    faults.close_after_response = p.flag("close-after-response");
    faults.max_requests_per_connection =
        static_cast<unsigned>(p.u64("max-requests-per-connection", 0, 0, 1'000'000));
    faults.accept_then_drop_response = p.flag("drop-responses");
    faults.fail_every = static_cast<unsigned>(p.u64("fail-every", 0, 0, 1'000'000'000));
    faults.fail_status = static_cast<unsigned>(p.u64("fail-status", 503, 200, 599));
    if (p.has("fail-status") && faults.fail_every == 0)
        throw usage_error("--fail-status needs --fail-every N (N >= 1)");
    faults.down_after = p.u64("down-after", 0, 1);
    faults.down_for = fault_duration(p, "down-for");
    if (p.has("down-after") != p.has("down-for"))
        throw usage_error(p.has("down-after") ? "--down-after needs --down-for T"
                                              : "--down-for needs --down-after N");
    faults.refuse_for = fault_duration(p, "refuse-for");
    const auto duration = p.ms("duration", std::chrono::milliseconds(0), "s");
    const bool quiet = p.flag("quiet");
    const std::string record = p.str("record", "");
    if (p.has("record") && record.empty())
        throw usage_error("--record needs a file name");
    cfg.keep_bodies = !record.empty();
    // Opened now, so that a path that cannot be written is said before the run, not after.
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> record_file(nullptr, &std::fclose);
    if (!record.empty()) {
        record_file.reset(std::fopen(record.c_str(), "wb"));
        if (!record_file)
            throw usage_error("--record: cannot write " + record + ": " + std::strerror(errno));
    }
    if (!self_signed_dir.empty()) {
        write_self_signed(self_signed_dir, cfg);
        if (cfg.url_host.empty())
            cfg.url_host = "localhost";
    }

    // Signals are taken synchronously by this thread; block them before any thread starts.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    cfg.faults = faults;
    std::optional<collector> col_holder;
    try {
        col_holder.emplace(cfg);
    } catch (const boost::system::system_error& e) {
        // What the collector refuses in its configuration (faults, address) is bad usage; a
        // port in use or a TLS file it cannot read is not.
        if (e.code() == error::invalid_config)
            throw usage_error(e.what());
        throw;
    }
    collector& col = *col_holder;
    std::printf("evdispatch collector listening on %s (port %u)\n", col.url().c_str(),
                static_cast<unsigned>(col.port()));
    std::fflush(stdout);

    const auto start = std::chrono::steady_clock::now();
    collector_stats last{};
    for (;;) {
        timespec ts{1, 0};
        const int sig = sigtimedwait(&set, nullptr, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        const auto s = col.stats();
        if (!quiet)
            std::printf(
                "requests %llu  batches %llu  events %llu (+%llu/s)  duplicates %llu  "
                "rejected %llu  failed %llu\n",
                (unsigned long long)s.requests, (unsigned long long)s.batches,
                (unsigned long long)s.events, (unsigned long long)(s.events - last.events),
                (unsigned long long)s.duplicates, (unsigned long long)s.rejected,
                (unsigned long long)s.failed_batches);
        std::fflush(stdout);
        last = s;
        if (duration.count() > 0 && std::chrono::steady_clock::now() - start >= duration)
            break;
    }
    col.stop();
    std::printf("final: %s\n", to_json(col.stats()).c_str());
    if (!record.empty()) {
        // Accepted bodies passed the batch check: each is one JSON object.
        std::string out = "[";
        for (const auto& body : col.bodies()) {
            if (out.size() > 1)
                out += ",\n";
            out += body;
        }
        out += "]\n";
        std::FILE* f = record_file.release();
        const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
        const bool closed = std::fclose(f) == 0;
        if (!ok || !closed)
            return write_failed(record);
    }
    return 0;
}

}  // namespace evdispatch::app
