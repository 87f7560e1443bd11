// The loopback collector: a Beast HTTP/1.1 server (plain or TLS) that validates event batches
// with the SAX checker (check.hpp), counts them, removes duplicate events by uuid and injects
// faults on request. The rooms: faults.cpp decides what to do with each request (no I/O),
// session.hpp carries it out on one connection, listener.cpp accepts and runs outages,
// server_state holds what they share; this file owns the threads and the public API.
//
// Ownership: collector::impl owns the io_context, the threads and the listener. Everything a
// connection needs lives in `server_state`, which sessions hold by shared_ptr; nothing holds
// a raw pointer to impl, so handlers that are still queued when impl dies are harmless.

#include <evdispatch/collector/collector.hpp>

#include "collector/faults.hpp"
#include "collector/listener.hpp"
#include "collector/server_state.hpp"

#include <evdispatch/error.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <charconv>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include <pthread.h>
#include <utility>

namespace evdispatch {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

std::string to_json(const collector_stats& s) {
    std::string out;
    out.reserve(480);
    // Names are plain ASCII; values are written unsigned (a counter may pass INT64_MAX).
    auto field = [&](std::string_view name, std::uint64_t v, bool first = false) {
        out += first ? "{\"" : ",\"";
        out += name;
        out += "\":";
        char buf[20];
        out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
    };
    field("connections", s.connections, true);
    field("requests", s.requests);
    field("batches", s.batches);
    field("events", s.events);
    field("unique_events", s.unique_events);
    field("duplicates", s.duplicates);
    field("rejected", s.rejected);
    field("bytes", s.bytes);
    field("failed_batches", s.failed_batches);
    field("failed_events", s.failed_events);
    field("stalled", s.stalled);
    field("resets", s.resets);
    field("dropped_responses", s.dropped_responses);
    field("fault_closes", s.fault_closes);
    field("tls_handshakes", s.tls_handshakes);
    field("tls_handshake_failures", s.tls_handshake_failures);
    field("outages", s.outages);
    field("down_ms", s.down_ms);
    field("gzip_batches", s.gzip_batches);
    field("gzip_bytes", s.gzip_bytes);
    out += '}';
    return out;
}

namespace detail {
namespace {

[[noreturn]] void throw_invalid(const std::string& what) {
    throw boost::system::system_error(make_error_code(error::invalid_config),
                                      "evdispatch::collector: " + what);
}

asio::ssl::context make_tls_context(const collector_config& cfg) {
    asio::ssl::context ctx(asio::ssl::context::tls_server);
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                    asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1)
        throw boost::system::system_error(
            error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()),
            "evdispatch::collector: cannot set TLS 1.2 as the minimum version");
    error_code ec;
    ctx.use_certificate_chain_file(cfg.tls_cert_file, ec);
    if (ec)
        throw boost::system::system_error(
            ec, "evdispatch::collector: cannot load tls_cert_file \"" + cfg.tls_cert_file +
                    "\" (PEM certificate chain expected)");
    ctx.use_private_key_file(cfg.tls_key_file, asio::ssl::context::pem, ec);
    if (!ec && SSL_CTX_check_private_key(ctx.native_handle()) != 1)
        ec = asio::error::invalid_argument;
    if (ec)
        throw boost::system::system_error(
            ec, "evdispatch::collector: cannot use tls_key_file \"" + cfg.tls_key_file +
                    "\" (a PEM private key matching tls_cert_file expected)");
    return ctx;
}

// A count of pending completions a thread can wait for. Mutex and condition variable rather
// than std::future: ThreadSanitizer cannot see the futex-based hand-off of libstdc++'s future.
class countdown {
public:
    explicit countdown(std::size_t n) : left_(n) {}
    void arrive() {
        std::lock_guard lock(mutex_);
        if (--left_ == 0)
            cv_.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return left_ == 0; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t left_;
};

// Runs `f` on `ex` and waits until it has run. The caller must not be running on `ex`, and a
// server thread must be running (the caller holds stop_mutex and the collector is not stopped),
// so the wait ends.
template <class F>
void run_on(const asio::any_io_executor& ex, F f) {
    auto done = std::make_shared<countdown>(1);
    asio::post(ex, [f = std::move(f), done]() mutable {
        struct arrive_on_exit {
            countdown& c;
            ~arrive_on_exit() { c.arrive(); }
        } guard{*done};
        f();
    });
    done->wait();
}

}  // namespace
}  // namespace detail

struct collector::impl {
    explicit impl(collector_config cfg)
        : state(std::make_shared<detail::server_state>(cfg))
        , ioc(static_cast<int>(cfg.threads == 0 ? 1 : cfg.threads))
        , work(asio::make_work_guard(ioc)) {
        if (cfg.threads == 0)
            detail::throw_invalid("collector_config::threads must be at least 1");
        if (cfg.success_status < 200 || cfg.success_status > 299)
            detail::throw_invalid("collector_config::success_status must be a 2xx status, got " +
                                  std::to_string(cfg.success_status));
        detail::validate_faults(cfg.faults);
        const std::uint64_t faults_generation = state->set_faults(cfg.faults);
        if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
            detail::throw_invalid(
                "collector_config::tls_cert_file and tls_key_file must be set together");
        if (!cfg.tls_cert_file.empty())
            state->tls.emplace(detail::make_tls_context(cfg));
        error_code ec;
        auto address = asio::ip::make_address(cfg.listen_address, ec);
        if (ec)
            detail::throw_invalid("collector_config::listen_address \"" + cfg.listen_address +
                                  "\" is not an IP address");
        host = address.is_v6() ? "[" + cfg.listen_address + "]" : cfg.listen_address;
        if (!cfg.url_host.empty()) {
            const bool v6_literal =
                cfg.url_host.find(':') != std::string::npos && cfg.url_host.front() != '[';
            url_host = v6_literal ? "[" + cfg.url_host + "]" : cfg.url_host;
        } else {
            url_host = host;
        }
        listen = std::make_shared<detail::listener>(ioc, state);
        listen->bind(tcp::endpoint(address, cfg.port), host + ":" + std::to_string(cfg.port));
        state->on_outage = [weak = std::weak_ptr<detail::listener>(listen)](
                               std::chrono::milliseconds length, std::uint64_t generation,
                               std::weak_ptr<detail::session_base> spare,
                               std::function<void()> then) {
            auto l = weak.lock();
            if (!l)
                return then();  // not while a server thread runs: impl joins them first
            asio::post(l->executor(),
                       [l, length, generation, spare = std::move(spare), then = std::move(then)] {
                           l->begin_outage(length, generation, spare.lock());
                           then();
                       });
        };
        // No server thread runs yet: the listener's strand is this thread's.
        listen->apply_faults(faults_generation, cfg.faults.refuse_for);
        listen->run();
        try {
            threads.reserve(cfg.threads);
            for (unsigned i = 0; i < cfg.threads; ++i)
                threads.emplace_back([this] { run(); });
        } catch (...) {
            stop();
            throw;
        }
    }

    void run() noexcept {
        // Named, so that a profiler or `evdispatch bench` (CPU by role) can tell them apart.
        pthread_setname_np(pthread_self(), "ev-collector");
        for (;;) {
            try {
                ioc.run();
                return;
            } catch (...) {
                // A handler threw (e.g. bad_alloc): that connection is lost, the server goes on.
            }
        }
    }

    ~impl() { stop(); }

    void stop() {
        std::lock_guard lock(stop_mutex);
        if (stopped)
            return;
        stopped = true;
        // Stop the threads first; then this thread is the only one touching sockets.
        work.reset();
        ioc.stop();
        for (auto& t : threads)
            if (t.joinable())
                t.join();
        listen->close_now();
        std::vector<std::shared_ptr<detail::session_base>> live;
        {
            std::lock_guard sl(state->sessions_mutex);
            state->stopped = true;
            for (auto& w : state->sessions)
                if (auto s = w.lock())
                    live.push_back(std::move(s));
        }
        for (auto& s : live)
            s->close_now();
        live.clear();
        // Let the aborted operations complete so sessions are freed now, not at destruction.
        ioc.restart();
        for (int i = 0; i < 16 && ioc.poll() != 0; ++i) {
        }
    }

    void pause() {
        std::lock_guard lock(stop_mutex);
        if (stopped || paused)
            return;
        paused = true;
        detail::run_on(listen->executor(), [l = listen] { l->pause(); });
        auto live = state->live_sessions(nullptr);
        auto closed = std::make_shared<detail::countdown>(live.size());
        for (auto& s : live)
            s->post_close([closed] { closed->arrive(); });
        live.clear();
        closed->wait();
    }

    void resume() {
        std::lock_guard lock(stop_mutex);
        if (stopped || !paused)
            return;
        error_code ec;
        detail::run_on(listen->executor(), [l = listen, &ec] { ec = l->resume(); });
        if (ec)
            throw boost::system::system_error(ec, "evdispatch::collector: cannot listen again on " +
                                                      host + ":" + std::to_string(listen->port()));
        paused = false;
    }

    void set_faults(collector_faults f) {
        detail::validate_faults(f);
        const auto refuse_for = f.refuse_for;
        std::lock_guard lock(stop_mutex);
        const std::uint64_t generation = state->set_faults(std::move(f));
        if (stopped)
            return;
        detail::run_on(listen->executor(), [l = listen, generation, refuse_for] {
            l->apply_faults(generation, refuse_for);
        });
    }

    std::shared_ptr<detail::server_state> state;
    asio::io_context ioc;
    asio::executor_work_guard<asio::io_context::executor_type> work;
    std::shared_ptr<detail::listener> listen;
    std::vector<std::thread> threads;
    std::string host;      // listen address, bracketed if IPv6
    std::string url_host;  // host part of url()
    std::mutex stop_mutex;
    bool stopped = false;  // guarded by stop_mutex
    bool paused = false;   // guarded by stop_mutex
};

collector::collector(collector_config cfg) : impl_(std::make_shared<impl>(std::move(cfg))) {}

collector::~collector() {
    if (impl_)
        impl_->stop();
}

unsigned short collector::port() const noexcept {
    return impl_->listen->port();
}

bool collector::uses_tls() const noexcept {
    return impl_->state->tls.has_value();
}

std::string collector::url() const {
    return (uses_tls() ? "https://" : "http://") + impl_->url_host + ":" + std::to_string(port()) +
           "/v1/events";
}

collector_stats collector::stats() const {
    return impl_->state->snapshot();
}

std::vector<std::string> collector::bodies() const {
    std::lock_guard lock(impl_->state->bodies_mutex);
    return impl_->state->bodies;
}

void collector::set_delay(std::chrono::milliseconds d) {
    impl_->state->delay_ms.store(d.count(), std::memory_order_relaxed);
}

void collector::set_faults(collector_faults f) {
    impl_->set_faults(std::move(f));
}

collector_faults collector::faults() const {
    return impl_->state->faults();
}

void collector::pause_listening() {
    impl_->pause();
}

void collector::resume_listening() {
    impl_->resume();
}

void collector::stop() {
    impl_->stop();
}

}  // namespace evdispatch
