// evdispatch spool: look into a disk spool (inspect) and deliver what it holds (drain).

#include "commands.hpp"
#include "guarded_thread.hpp"
#include "options.hpp"

#include <evdispatch/endpoint_url.hpp>
#include <evdispatch/evdispatch.hpp>
#include <evdispatch/spool.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <cstdio>
#include <ctime>
#include <string>
#include <thread>

namespace evdispatch::app {

namespace json = boost::json;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

const char* spool_help =
    "usage: evdispatch spool inspect DIR [--json]\n"
    "       evdispatch spool drain DIR [--url URL] [--ca-file FILE] [--timeout T] [--json]\n"
    "inspect  what the spool under DIR holds, per process directory: batches (records), events,\n"
    "         bytes, the oldest batch, corrupt records and bytes, quarantined files. Changes\n"
    "         nothing. Exit 0; 2 when DIR cannot be read.\n"
    "drain    delivers every batch in the spool under DIR (the directories of processes that\n"
    "         are gone; one in use by a running process is left alone), to URL when given\n"
    "         (otherwise to the endpoint each batch was meant for), retrying as the processor\n"
    "         does, for at most --timeout (default 5m). Prints the counts. Exit 0 when every\n"
    "         batch was delivered; 1 when any was dropped (the reasons are printed) or is\n"
    "         still in the spool; 2 bad usage.\n";

std::string iso_time(std::uint64_t unix_ms) {
    if (unix_ms == 0)
        return "-";
    const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

spool_info read_spool(const std::string& dir) {
    try {
        return inspect_spool(dir);
    } catch (const boost::system::system_error& e) {
        throw usage_error(std::string("cannot read the spool: ") + e.what());
    }
}

int run_inspect(const std::string& dir, bool as_json) {
    const auto info = read_spool(dir);
    if (as_json) {
        json::object o;
        json::array dirs;
        for (const auto& d : info.dirs) {
            json::object j;
            j["path"] = d.path;
            j["in_use"] = d.in_use;
            j["segments"] = d.segments;
            j["records"] = d.records;
            j["events"] = d.events;
            j["bytes"] = d.bytes;
            j["acked_records"] = d.acked_records;
            j["oldest"] = iso_time(d.oldest_created_ms);
            j["corrupt_records"] = d.corrupt_records;
            j["corrupt_events"] = d.corrupt_events;
            j["corrupt_bytes"] = d.corrupt_bytes;
            dirs.push_back(std::move(j));
        }
        o["dirs"] = std::move(dirs);
        o["records"] = info.records();
        o["events"] = info.events();
        o["quarantined_files"] = info.quarantined_files;
        o["quarantined_bytes"] = info.quarantined_bytes;
        if (!info.refused.empty())
            o["refused"] = info.refused;
        std::printf("%s\n", json::serialize(o).c_str());
        return 0;
    }
    if (!info.refused.empty())
        std::printf("refused: %s\n", info.refused.c_str());
    std::printf("%-40s %6s %9s %9s %11s %12s %20s %8s\n", "directory", "in use", "segments",
                "records", "events", "bytes", "oldest", "corrupt");
    for (const auto& d : info.dirs)
        std::printf("%-40s %6s %9llu %9llu %11llu %12llu %20s %8llu\n", d.path.c_str(),
                    d.in_use ? "yes" : "no", (unsigned long long)d.segments,
                    (unsigned long long)d.records, (unsigned long long)d.events,
                    (unsigned long long)d.bytes, iso_time(d.oldest_created_ms).c_str(),
                    (unsigned long long)(d.corrupt_records));
    std::printf("total: %llu records, %llu events; quarantined: %llu files, %llu bytes\n",
                (unsigned long long)info.records(), (unsigned long long)info.events(),
                (unsigned long long)info.quarantined_files,
                (unsigned long long)info.quarantined_bytes);
    return 0;
}

/// Sends every batch to one URL, whatever endpoint it was spooled for.
class redirecting_dispatcher final : public event_dispatcher {
public:
    redirecting_dispatcher(std::shared_ptr<event_dispatcher> inner, std::string url)
        : inner_(std::move(inner)), url_(std::move(url)) {}
    void async_dispatch(std::shared_ptr<const log_event> ev,
                        asio::any_completion_handler<dispatch_signature> h) override {
        auto copy = std::make_shared<log_event>(*ev);
        copy->url = url_;
        inner_->async_dispatch(std::move(copy), std::move(h));
    }
    std::size_t max_in_flight() const noexcept override { return inner_->max_in_flight(); }
    void shutdown() noexcept override { inner_->shutdown(); }

private:
    std::shared_ptr<event_dispatcher> inner_;
    std::string url_;
};

int run_drain(const std::string& dir, const option_parser& p) {
    const bool as_json = p.flag("json");
    const auto timeout = p.ms("timeout", 300'000ms, "s");
    const std::string url = p.str("url", "");
    processor_config cfg;
    cfg.spool.dir = dir;
    cfg.tls.ca_file = p.str("ca-file", "");
    if (!url.empty()) {
        try {
            (void)parse_endpoint_url(url);
        } catch (const boost::system::system_error& e) {
            throw usage_error(std::string("--url: ") + e.what());
        }
        cfg.endpoint = url;
    }
    (void)read_spool(dir);  // a missing or unreadable DIR is bad usage

    asio::io_context io;
    auto work = asio::make_work_guard(io);
    guarded_thread io_thread("spool-io", [&io](std::stop_token st) {
        std::stop_callback stop(st, [&io] { io.stop(); });
        io.run();
    });
    processor_hooks hooks;
    if (!url.empty())
        hooks.dispatcher = std::make_shared<redirecting_dispatcher>(
            std::make_shared<http_event_dispatcher>(io.get_executor(), url, cfg.http, cfg.tls),
            url);
    close_report rep;
    {
        std::unique_ptr<batch_event_processor> proc;
        try {
            // On the io_context's one thread, where the HTTP dispatcher runs too: a custom
            // dispatcher is called from the processor's strand, and http_event_dispatcher
            // must only be called from its own (single-threaded) executor.
            proc = std::make_unique<batch_event_processor>(io.get_executor(), cfg, hooks);
        } catch (const boost::system::system_error& e) {
            throw usage_error(e.what());
        }
        const auto until = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < until) {
            const auto m = proc->metrics();
            if (m.pending_recovered == 0)
                break;
            std::this_thread::sleep_for(50ms);
        }
        rep = proc->async_close(5s, asio::use_future).get();
    }
    work.reset();
    io_thread.request_stop();
    io_thread.join();

    const auto& m = rep.metrics;
    std::uint64_t dropped = 0;
    json::object reasons;
    for (auto r : all_drop_reasons) {
        const auto n = m.dropped_recovered[static_cast<std::size_t>(r)];
        dropped += n;
        if (n)
            reasons[to_string(r)] = n;
    }
    if (as_json) {
        json::object o;
        o["recovered"] = m.recovered;
        o["delivered"] = m.delivered_recovered;
        o["dropped"] = reasons;
        o["left_in_spool"] = m.pending_recovered;
        std::printf("%s\n", json::serialize(o).c_str());
    } else {
        std::printf("recovered %llu events: delivered %llu, dropped %llu, left in the spool %llu\n",
                    (unsigned long long)m.recovered, (unsigned long long)m.delivered_recovered,
                    (unsigned long long)dropped, (unsigned long long)m.pending_recovered);
        for (const auto& [k, v] : reasons)
            std::printf("  dropped %s: %llu\n", std::string(k).c_str(),
                        (unsigned long long)v.as_uint64());
    }
    return dropped == 0 && m.pending_recovered == 0 ? 0 : 1;
}

}  // namespace

int run_spool(const args& a) {
    if (a.empty() || a[0] == "--help" || a[0] == "-h") {
        std::fputs(spool_help, a.empty() ? stderr : stdout);
        return a.empty() ? 2 : 0;
    }
    const std::string sub = a[0];
    if (sub != "inspect" && sub != "drain")
        throw usage_error("unknown spool command '" + sub + "' (inspect or drain)");
    if (a.size() < 2 || a[1].rfind("--", 0) == 0)
        throw usage_error("spool " + sub + " needs the spool directory (spool_config::dir)");
    const std::string dir = a[1];
    option_parser p(sub == "drain" ? std::vector<std::string>{"url", "ca-file", "timeout"}
                                   : std::vector<std::string>{},
                    {"json"});
    p.parse(args(a.begin() + 2, a.end()));
    return sub == "inspect" ? run_inspect(dir, p.flag("json")) : run_drain(dir, p);
}

}  // namespace evdispatch::app
