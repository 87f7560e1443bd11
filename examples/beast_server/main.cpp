// examples/beast_server: evdispatch inside a Boost.Beast HTTP server.
//
// `GET /decide?user=ID` decides a variation of the datafile's experiment for the user, records
// the impression, and answers `{"user":"ID","variation":"KEY"}`. The server is a thread pool on
// one io_context; the batch_event_processor runs on a strand of that same io_context, so
// recording an impression is a lock-free hand-off and the request never waits on the network.
// SIGINT/SIGTERM: stop accepting, deliver what is left within a deadline, exit.
//
//   evdispatch_example_beast_server [--port 8080 (0: any)] [--threads 4] [--datafile FILE]
//                                   [--endpoint URL]   (default: an embedded collector)
//
// `--demo` measures that promise on loopback: it starts an evdispatch collector that answers
// after --endpoint-delay-ms (a remote endpoint), drives the server with a load client
// (--connections keep-alive connections, --requests in total), once recording through
// evdispatch and once with a handler that POSTs each impression synchronously (blocking the
// server thread), and prints one JSON object. It exits non-zero if a request failed or an
// event was not delivered.

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/optimizely.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct options {
    bool demo = false;
    unsigned short port = 8080;
    unsigned threads = 4;
    std::string datafile = EVDISPATCH_EXAMPLE_DATAFILE;
    std::string endpoint;  // empty: an embedded collector
    unsigned endpoint_delay_ms = 20;
    unsigned connections = 8;
    unsigned requests = 1000;
};

// ---- Deciding ----------------------------------------------------------------------------------

/// Decides a variation of one experiment and builds the impression to report. evdispatch only
/// reports decisions; the stand-in for the SDK's bucketing (MurmurHash3 over the traffic
/// allocation) is a plain FNV-1a hash of the user id over the variations.
class decider {
public:
    decider(const std::string& datafile_path, const std::string& endpoint) {
        std::ifstream in(datafile_path);
        std::stringstream text;
        text << in.rdbuf();
        if (!in)
            throw std::runtime_error("cannot read the datafile " + datafile_path);
        // Parsed once; the config and the builder are shared by all server threads.
        config_ = evdispatch::project_config::parse(text.str(), {.endpoint = endpoint});
        experiment_ = config_->experiment_by_key("test_experiment");
        if (!experiment_ || experiment_->variations.empty())
            throw std::runtime_error("the datafile has no experiment 'test_experiment'");
        builder_.emplace(config_);
    }

    struct result {
        const evdispatch::variation* variation;
        evdispatch::event_ptr impression;  // the visitor JSON, written once, ready to batch
    };

    result decide(std::string_view user_id) const {
        std::uint32_t h = 2166136261u;
        for (unsigned char c : user_id)
            h = (h ^ c) * 16777619u;
        const auto& v = experiment_->variations[h % experiment_->variations.size()];
        auto d = config_->make_decision(*experiment_, &v, "", experiment_->key, "experiment", true);
        return {&v, builder_->make_impression(user_id, {}, d)};
    }

private:
    std::shared_ptr<const evdispatch::project_config> config_;
    const evdispatch::experiment* experiment_ = nullptr;
    std::optional<evdispatch::event_builder> builder_;
};

/// Records one impression; returns whether it was taken (queued or delivered).
using record_fn = std::function<bool(evdispatch::event_ptr)>;

// ---- The baseline: one blocking POST per impression --------------------------------------------

/// What a server without evdispatch does: POST the impression (a v1 batch of one visitor) and
/// wait for the answer, on the request's thread. Keep-alive connections are pooled.
class blocking_poster {
public:
    blocking_poster(tcp::endpoint ep, std::string target) : ep_(ep), target_(std::move(target)) {}

    bool post(const evdispatch::event_ptr& ev) {
        std::unique_ptr<connection> c;
        {
            std::lock_guard lk(m_);
            if (!idle_.empty()) {
                c = std::move(idle_.back());
                idle_.pop_back();
            }
        }
        boost::system::error_code ec;
        if (!c) {
            c = std::make_unique<connection>(io_);
            c->socket.connect(ep_, ec);
            if (ec)
                return false;
        }
        http::request<http::string_body> req{http::verb::post, target_, 11};
        req.set(http::field::host, ep_.address().to_string());
        req.set(http::field::content_type, "application/json");
        req.body() = envelope(*ev);
        req.prepare_payload();
        http::write(c->socket, req, ec);
        http::response<http::string_body> res;
        if (!ec)
            http::read(c->socket, c->buffer, res, ec);
        if (ec)
            return false;
        const bool ok = res.result_int() / 100 == 2;
        if (res.keep_alive()) {
            std::lock_guard lk(m_);
            idle_.push_back(std::move(c));
        }
        if (ok)
            ++delivered_;
        return ok;
    }

    std::uint64_t delivered() const { return delivered_; }

private:
    struct connection {
        explicit connection(asio::io_context& io) : socket(io) {}
        tcp::socket socket;
        beast::flat_buffer buffer;
    };

    static std::string envelope(const evdispatch::user_event& ev) {
        const auto& c = *ev.context;
        auto str = [](const std::string& s) {
            return boost::json::serialize(boost::json::string(s));
        };
        return "{\"account_id\":" + str(c.account_id) + ",\"project_id\":" + str(c.project_id) +
               ",\"revision\":" + str(c.revision) + ",\"client_name\":" + str(c.client_name) +
               ",\"client_version\":" + str(c.client_version) +
               ",\"anonymize_ip\":" + (c.anonymize_ip ? "true" : "false") +
               ",\"enrich_decisions\":true,\"visitors\":[" + std::string(ev.visitor_json) + "]}";
    }

    asio::io_context io_;  // never run: only blocking operations use it
    tcp::endpoint ep_;
    std::string target_;
    std::mutex m_;
    std::vector<std::unique_ptr<connection>> idle_;
    std::atomic<std::uint64_t> delivered_{0};
};

// ---- The HTTP server ---------------------------------------------------------------------------

std::string user_param(std::string_view target) {
    auto at = target.find("user=");
    if (at == target.npos)
        return {};
    auto v = target.substr(at + 5);
    return std::string(v.substr(0, v.find('&')));
}

/// One keep-alive connection: read a request, decide, record, answer; until the peer closes.
asio::awaitable<void> session(tcp::socket socket, const decider& dec, const record_fn& record) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request<http::string_body> req;
        auto [rec, rn] = co_await http::async_read(stream, buffer, req, use_tuple);
        if (rec)
            break;
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::content_type, "application/json");
        if (auto user = user_param(req.target()); user.empty()) {
            res.result(http::status::bad_request);
            res.body() = R"({"error":"GET /decide?user=ID"})";
        } else {
            auto d = dec.decide(user);
            // The impression is recorded before answering. With evdispatch this is a
            // lock-free hand-off; with the baseline, a blocking POST.
            const bool recorded = record(std::move(d.impression));
            res.body() = "{\"user\":" + boost::json::serialize(boost::json::string(user)) +
                         ",\"variation\":\"" + d.variation->key +
                         "\",\"recorded\":" + (recorded ? "true" : "false") + "}";
        }
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
        if (wec || !res.keep_alive())
            break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> listen(asio::io_context& io, tcp::acceptor& acceptor, const decider& dec,
                             const record_fn& record) {
    for (;;) {
        // Each connection gets its own coroutine on the io_context (any of its threads).
        auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(io), use_tuple);
        if (ec)
            co_return;  // closed: shutting down
        asio::co_spawn(socket.get_executor(), session(std::move(socket), dec, record),
                       asio::detached);
    }
}

enum class recording { evdispatch, blocking_post };

/// Serves until SIGINT/SIGTERM or, when `drive` is set, until drive(port) returns. Then stops
/// accepting and closes the processor with a deadline. Returns the events delivered.
std::uint64_t serve(const options& opt, recording mode, const std::string& endpoint,
                    std::function<void(unsigned short)> drive) {
    const decider dec(opt.datafile, endpoint);
    asio::io_context io(static_cast<int>(opt.threads));

    // The processor runs on the server's own io_context: no extra thread, and its batches go
    // out over keep-alive connections while the server threads keep answering.
    std::optional<evdispatch::batch_event_processor> processor;
    std::optional<blocking_poster> poster;
    record_fn record;
    if (mode == recording::evdispatch) {
        processor.emplace(io.get_executor(), evdispatch::processor_config{
                                                 .endpoint = endpoint,
                                                 .queue_capacity = 65'536,
                                                 .batch = {.batch_size = 100, .flush_interval = 1s},
                                             });
        record = [&](evdispatch::event_ptr ev) {
            return processor->process(std::move(ev)) == evdispatch::process_result::accepted;
        };
    } else {
        // Only meaningful against the loopback collector (the demo).
        poster.emplace(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                     static_cast<unsigned short>(
                                         std::stoi(endpoint.substr(endpoint.rfind(':') + 1)))),
                       "/v1/events");
        record = [&](evdispatch::event_ptr ev) { return poster->post(ev); };
    }

    auto accept_strand = asio::make_strand(io);
    tcp::acceptor acceptor(accept_strand, {asio::ip::make_address("127.0.0.1"),
                                           static_cast<unsigned short>(opt.demo ? 0 : opt.port)});
    asio::co_spawn(accept_strand, listen(io, acceptor, dec, record), asio::detached);

    // Graceful shutdown: stop accepting, deliver what is queued within 5 s, stop the pool.
    std::uint64_t delivered = 0;
    std::once_flag once;
    auto shutdown = [&] {
        std::call_once(once, [&] {
            asio::post(accept_strand, [&] { acceptor.close(); });
            if (!processor) {
                asio::post(io, [&] {
                    delivered = poster->delivered();
                    io.stop();
                });
                return;
            }
            asio::post(io, [&] {
                processor->async_close(
                    5s, [&](boost::system::error_code ec, evdispatch::close_report report) {
                        delivered = report.delivered;
                        if (!opt.demo)
                            std::cerr << "closed: delivered " << report.delivered
                                      << ", not delivered " << report.not_delivered
                                      << (ec ? " (" + ec.message() + ")" : "") << '\n';
                        io.stop();
                    });
            });
        });
    };
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (!ec)
            shutdown();
    });

    std::vector<std::thread> pool;
    for (unsigned i = 0; i < opt.threads; ++i)
        pool.emplace_back([&] { io.run(); });
    if (drive) {
        drive(acceptor.local_endpoint().port());
        shutdown();
    } else {
        std::cerr << "listening on http://127.0.0.1:" << acceptor.local_endpoint().port()
                  << "/decide?user=alice (events to " << endpoint << "); Ctrl-C to stop\n";
    }
    for (auto& t : pool)
        t.join();
    return delivered;
}

// ---- The demo's load client --------------------------------------------------------------------

struct load_result {
    double seconds = 0;
    std::vector<double> latency_ms;
    unsigned failures = 0;
};

/// K keep-alive connections, N requests in total, each connection sending its next request
/// when the previous answer is in. Runs on the calling thread.
load_result run_load(unsigned short port, unsigned connections, unsigned requests) {
    asio::io_context io;
    load_result out;
    unsigned next = 0;
    auto client = [&]() -> asio::awaitable<void> {
        beast::tcp_stream stream(io);
        auto [cec] =
            co_await stream.async_connect({asio::ip::make_address("127.0.0.1"), port}, use_tuple);
        beast::flat_buffer buffer;
        while (!cec && next < requests) {
            const unsigned i = next++;
            http::request<http::empty_body> req{http::verb::get,
                                                "/decide?user=user-" + std::to_string(i), 11};
            req.set(http::field::host, "127.0.0.1");
            http::response<http::string_body> res;
            const auto start = std::chrono::steady_clock::now();
            auto [wec, wn] = co_await http::async_write(stream, req, use_tuple);
            auto [rec, rn] = co_await http::async_read(stream, buffer, res, use_tuple);
            const std::chrono::duration<double, std::milli> took =
                std::chrono::steady_clock::now() - start;
            if (wec || rec)
                break;  // the requests not answered count as failures
            if (res.result() == http::status::ok &&
                res.body().find("\"recorded\":true") != std::string::npos)
                out.latency_ms.push_back(took.count());
        }
    };
    const auto start = std::chrono::steady_clock::now();
    for (unsigned k = 0; k < connections; ++k)
        asio::co_spawn(io, client(), asio::detached);
    io.run();
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    out.failures = requests - static_cast<unsigned>(out.latency_ms.size());
    return out;
}

double percentile(std::vector<double> v, double q) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

int demo(const options& opt) {
    // The event endpoint: an evdispatch collector on loopback that answers after a delay.
    evdispatch::collector sink(
        {.delay = std::chrono::milliseconds(opt.endpoint_delay_ms), .threads = 2});
    std::ostringstream json;
    json.setf(std::ios::fixed);
    json.precision(2);
    json << "{\"requests\":" << opt.requests << ",\"connections\":" << opt.connections
         << ",\"server_threads\":" << opt.threads
         << ",\"endpoint_delay_ms\":" << opt.endpoint_delay_ms;
    bool ok = true;
    for (auto mode : {recording::evdispatch, recording::blocking_post}) {
        const auto before = sink.stats().unique_events;
        load_result load;
        const auto delivered = serve(opt, mode, sink.url(), [&](unsigned short port) {
            load = run_load(port, opt.connections, opt.requests);
        });
        const auto received = sink.stats().unique_events - before;
        ok = ok && load.failures == 0 && delivered == opt.requests && received == opt.requests;
        json << ",\"" << (mode == recording::evdispatch ? "evdispatch" : "synchronous_post")
             << "\":{\"requests_per_s\":"
             << static_cast<double>(load.latency_ms.size()) / load.seconds
             << ",\"p50_ms\":" << percentile(load.latency_ms, 0.50)
             << ",\"p99_ms\":" << percentile(load.latency_ms, 0.99)
             << ",\"failed_requests\":" << load.failures << ",\"events_delivered\":" << delivered
             << ",\"events_received\":" << received << "}";
    }
    json << "}";
    std::cout << json.str() << std::endl;
    if (!ok)
        std::cerr << "demo: a request failed or an event was not delivered\n";
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    options opt;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc)
                    throw std::invalid_argument(a + " needs a value");
                return argv[++i];
            };
            if (a == "--demo")
                opt.demo = true;
            else if (a == "--port")
                opt.port = static_cast<unsigned short>(std::stoul(value()));
            else if (a == "--threads")
                opt.threads = static_cast<unsigned>(std::stoul(value()));
            else if (a == "--datafile")
                opt.datafile = value();
            else if (a == "--endpoint")
                opt.endpoint = value();
            else if (a == "--endpoint-delay-ms")
                opt.endpoint_delay_ms = static_cast<unsigned>(std::stoul(value()));
            else if (a == "--connections")
                opt.connections = static_cast<unsigned>(std::stoul(value()));
            else if (a == "--requests")
                opt.requests = static_cast<unsigned>(std::stoul(value()));
            else
                throw std::invalid_argument("unknown option " + a);
        }
        if (opt.threads == 0 || opt.connections == 0)
            throw std::invalid_argument("--threads and --connections must be at least 1");
        if (opt.demo)
            return demo(opt);
        std::optional<evdispatch::collector> local;  // offline by default
        if (opt.endpoint.empty()) {
            local.emplace();
            opt.endpoint = local->url();
        }
        serve(opt, recording::evdispatch, opt.endpoint, {});
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "beast_server: " << e.what() << '\n';
        return 2;
    }
}
