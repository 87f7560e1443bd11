// The loopback collector: a Beast HTTP/1.1 server that validates event batches with the SAX
// checker (collector_check.hpp), counts them and removes duplicate events by uuid.
//
// Ownership: collector::impl owns the io_context, the threads and the listener. Everything a
// connection needs lives in `server_state`, which sessions hold by shared_ptr; nothing holds
// a raw pointer to impl, so handlers that are still queued when impl dies are harmless.
//
// The session is a template on its stream so TLS (ssl_stream<tcp_stream>) can be added by
// overloading the handshake/shutdown hooks below, and fault injection by extending
// `response_plan` (what to do with each request), without touching the read/write loop.

#include <evdispatch/collector.hpp>

#include "collector_check.hpp"
#include "json_writer.hpp"
#include "uuid_set.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace evdispatch {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

batch_check check_event_batch(std::string_view body) {
    struct string_sink {
        std::vector<std::string>* out;
        void on_uuid(std::string_view s) { out->emplace_back(s); }
    };
    batch_check r;
    string_sink sink{&r.uuids};
    detail::batch_checker<string_sink> checker(sink);
    r.ok = checker.write(body, false);
    if (r.ok) {
        r.visitors = checker.visitors();
    } else {
        r.error = checker.error();
        r.uuids.clear();
    }
    return r;
}

namespace detail {
namespace {

// A session that can be closed from stop().
class session_base {
public:
    virtual ~session_base() = default;
    // Closes the socket and cancels timers. Only called when no server thread runs.
    virtual void close_now() noexcept = 0;
};

// What connections share: configuration, counters, de-dup set, kept bodies, live sessions.
struct server_state {
    explicit server_state(const collector_config& c) : cfg(c), delay_ms(c.delay.count()) {}

    const collector_config cfg;
    std::atomic<std::int64_t> delay_ms;
    std::atomic<bool> stopped{false};

    // Counters: relaxed, each is monotonic on its own; they are updated before the response
    // is written, so a client that has its answer sees them.
    std::atomic<std::uint64_t> connections{0}, requests{0}, batches{0}, events{0}, unique_events{0},
        duplicates{0}, rejected{0}, bytes{0};

    std::mutex seen_mutex;
    uuid_set seen{4096};

    std::mutex bodies_mutex;
    std::vector<std::string> bodies;

    std::mutex sessions_mutex;
    std::list<std::weak_ptr<session_base>> sessions;

    collector_stats snapshot() const {
        collector_stats s;
        s.connections = connections.load(std::memory_order_relaxed);
        s.requests = requests.load(std::memory_order_relaxed);
        s.batches = batches.load(std::memory_order_relaxed);
        s.events = events.load(std::memory_order_relaxed);
        s.unique_events = unique_events.load(std::memory_order_relaxed);
        s.duplicates = duplicates.load(std::memory_order_relaxed);
        s.rejected = rejected.load(std::memory_order_relaxed);
        s.bytes = bytes.load(std::memory_order_relaxed);
        return s;
    }

    void accept_batch(std::string& body, const std::vector<uuid_key>& keys) {
        std::uint64_t fresh = 0;
        {
            std::lock_guard lock(seen_mutex);
            for (const uuid_key& k : keys)
                fresh += seen.insert(k) ? 1 : 0;
        }
        constexpr auto r = std::memory_order_relaxed;
        events.fetch_add(keys.size(), r);
        unique_events.fetch_add(fresh, r);
        duplicates.fetch_add(keys.size() - fresh, r);
        bytes.fetch_add(body.size(), r);
        batches.fetch_add(1, r);
        if (cfg.keep_bodies) {
            std::lock_guard lock(bodies_mutex);
            bodies.push_back(std::move(body));
        }
    }
};

std::string stats_json(const collector_stats& s) {
    std::string out;
    out.reserve(200);
    auto field = [&](std::string_view name, std::uint64_t v, bool first = false) {
        out += first ? "{" : ",";
        append_json_string(out, name);
        out += ':';
        append_json_int(out, static_cast<std::int64_t>(v));
    };
    field("connections", s.connections, true);
    field("requests", s.requests);
    field("batches", s.batches);
    field("events", s.events);
    field("unique_events", s.unique_events);
    field("duplicates", s.duplicates);
    field("rejected", s.rejected);
    field("bytes", s.bytes);
    out += '}';
    return out;
}

// What to do with one request. Fault injection (scripted statuses, stall, reset) extends this.
struct response_plan {
    std::chrono::milliseconds delay{0};
    bool close_after = false;  // close the connection once the response is written
};

// Stream hooks: plain TCP has no handshake and closes by shutting down its sending side.
// An ssl_stream overload would run async_handshake / async_shutdown here.
template <class Handler>
void async_start_stream(beast::tcp_stream&, Handler&& h) {
    std::forward<Handler>(h)(error_code{});
}
inline void shutdown_send(beast::tcp_stream& s) {
    error_code ec;
    s.socket().shutdown(tcp::socket::shutdown_send, ec);
}

// Grace period to drain the peer after our last response, so closing with unread request
// bytes does not turn into a reset that destroys the response before the client reads it.
constexpr std::chrono::seconds linger_timeout{2};

std::string_view path_of(std::string_view target) {
    auto q = target.find('?');
    return q == std::string_view::npos ? target : target.substr(0, q);
}

template <class Stream>
class session : public session_base, public std::enable_shared_from_this<session<Stream>> {
public:
    session(Stream stream, std::shared_ptr<server_state> state)
        : stream_(std::move(stream))
        , state_(std::move(state))
        , timer_(stream_.get_executor())
        , sink_{&keys_}
        , checker_(sink_) {}

    ~session() override {
        if (registered_) {
            std::lock_guard lock(state_->sessions_mutex);
            state_->sessions.erase(registration_);
        }
    }

    void run() {
        asio::dispatch(stream_.get_executor(),
                       beast::bind_front_handler(&session::on_run, this->shared_from_this()));
    }

    void close_now() noexcept override {
        error_code ec;
        beast::get_lowest_layer(stream_).socket().close(ec);
        timer_.cancel();
    }

private:
    struct key_sink {
        std::vector<uuid_key>* keys;
        void on_uuid(std::string_view s) { keys->push_back(make_uuid_key(s)); }
    };

    void on_run() {
        {
            std::lock_guard lock(state_->sessions_mutex);
            if (state_->stopped.load())
                return;  // stop() already closed the others
            registration_ = state_->sessions.insert(state_->sessions.end(), this->weak_from_this());
            registered_ = true;
        }
        async_start_stream(
            stream_, beast::bind_front_handler(&session::on_started, this->shared_from_this()));
    }

    void on_started(error_code ec) {
        if (ec)
            return;
        do_read();
    }

    void do_read() {
        parser_.emplace();
        parser_->body_limit(state_->cfg.max_body_bytes);
        http::async_read(stream_, buffer_, *parser_,
                         beast::bind_front_handler(&session::on_read, this->shared_from_this()));
    }

    void on_read(error_code ec, std::size_t) {
        if (ec == http::error::end_of_stream)
            return linger();
        if (ec) {
            // The peer went away (or we are stopping): nothing to answer.
            if (ec.category() != http::make_error_code(http::error::end_of_stream).category() ||
                ec == http::error::partial_message)
                return;
            state_->requests.fetch_add(1, std::memory_order_relaxed);
            state_->rejected.fetch_add(1, std::memory_order_relaxed);
            res_ = {};
            res_.version(11);
            if (ec == http::error::body_limit) {
                set_text(http::status::payload_too_large,
                         "request body larger than " + std::to_string(state_->cfg.max_body_bytes) +
                             " bytes\n");
            } else {
                set_text(http::status::bad_request, "bad HTTP request: " + ec.message() + "\n");
            }
            response_plan plan;
            plan.close_after = true;
            return respond(plan);
        }
        handle(parser_->get());
    }

    void set_text(http::status st, std::string body) {
        res_.result(st);
        res_.set(http::field::content_type, "text/plain; charset=utf-8");
        res_.body() = std::move(body);
    }

    void handle(http::request<http::string_body>& req) {
        state_->requests.fetch_add(1, std::memory_order_relaxed);
        res_ = {};
        res_.version(req.version());
        response_plan plan;
        plan.delay = std::chrono::milliseconds(state_->delay_ms.load(std::memory_order_relaxed));
        plan.close_after = !req.keep_alive();

        std::string_view target = path_of(req.target());
        if (req.method() == http::verb::post && target.ends_with("/events")) {
            keys_.clear();
            checker_.reset();
            if (checker_.write(req.body(), false)) {
                state_->accept_batch(req.body(), keys_);
                res_.result(state_->cfg.success_status);
            } else {
                state_->rejected.fetch_add(1, std::memory_order_relaxed);
                set_text(http::status::bad_request, checker_.error() + "\n");
            }
        } else if (req.method() == http::verb::get && target == "/stats") {
            res_.result(http::status::ok);
            res_.set(http::field::content_type, "application/json");
            res_.body() = stats_json(state_->snapshot());
        } else {
            state_->rejected.fetch_add(1, std::memory_order_relaxed);
            set_text(http::status::not_found,
                     "not found: POST a batch to .../events, or GET /stats\n");
        }
        respond(plan);
    }

    void respond(const response_plan& plan) {
        close_after_ = plan.close_after;
        res_.keep_alive(!close_after_);
        res_.prepare_payload();
        if (plan.delay.count() > 0) {
            timer_.expires_after(plan.delay);
            timer_.async_wait(
                beast::bind_front_handler(&session::on_delay, this->shared_from_this()));
            return;
        }
        do_write();
    }

    void on_delay(error_code ec) {
        if (ec)
            return;  // cancelled by stop()
        do_write();
    }

    void do_write() {
        http::async_write(stream_, res_,
                          beast::bind_front_handler(&session::on_write, this->shared_from_this()));
    }

    void on_write(error_code ec, std::size_t) {
        if (ec)
            return;
        if (close_after_)
            return linger();
        do_read();
    }

    // Shut down our side, then read and discard until the peer closes (bounded in time).
    void linger() {
        shutdown_send(stream_);
        beast::get_lowest_layer(stream_).expires_after(linger_timeout);
        do_drain();
    }

    void do_drain() {
        beast::get_lowest_layer(stream_).async_read_some(
            asio::buffer(drain_),
            beast::bind_front_handler(&session::on_drain, this->shared_from_this()));
    }

    void on_drain(error_code ec, std::size_t) {
        if (ec)
            return;  // eof, timeout or closed: the session ends here
        do_drain();
    }

    Stream stream_;
    std::shared_ptr<server_state> state_;
    asio::steady_timer timer_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    bool close_after_ = false;
    std::vector<uuid_key> keys_;
    key_sink sink_;
    batch_checker<key_sink> checker_;
    std::array<char, 4096> drain_;
    std::list<std::weak_ptr<session_base>>::iterator registration_;
    bool registered_ = false;
};

class listener : public std::enable_shared_from_this<listener> {
public:
    listener(asio::io_context& ioc, std::shared_ptr<server_state> state)
        : ioc_(ioc)
        , acceptor_(asio::make_strand(ioc))
        , retry_(acceptor_.get_executor())
        , state_(std::move(state)) {}

    // Throws system_error with `what` naming the address on failure.
    void bind(const tcp::endpoint& ep, const std::string& what) {
        error_code ec;
        acceptor_.open(ep.protocol(), ec);
        if (!ec)
            acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec)
            acceptor_.bind(ep, ec);
        if (!ec)
            acceptor_.listen(asio::socket_base::max_listen_connections, ec);
        if (ec)
            throw boost::system::system_error(ec,
                                              "evdispatch::collector: cannot listen on " + what);
        port_ = acceptor_.local_endpoint().port();
    }

    unsigned short port() const noexcept { return port_; }

    void run() {
        asio::dispatch(acceptor_.get_executor(),
                       beast::bind_front_handler(&listener::do_accept, shared_from_this()));
    }

    // Only called when no server thread runs.
    void close_now() noexcept {
        error_code ec;
        acceptor_.close(ec);
        retry_.cancel();
    }

private:
    void do_accept() {
        acceptor_.async_accept(asio::make_strand(ioc_),
                               beast::bind_front_handler(&listener::on_accept, shared_from_this()));
    }

    void on_accept(error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open())
            return;
        if (ec) {
            // Out of descriptors and the like: try again shortly instead of spinning.
            retry_.expires_after(std::chrono::milliseconds(20));
            retry_.async_wait([self = shared_from_this()](error_code e) {
                if (!e)
                    self->do_accept();
            });
            return;
        }
        state_->connections.fetch_add(1, std::memory_order_relaxed);
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        std::make_shared<session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), state_)
            ->run();
        do_accept();
    }

    asio::io_context& ioc_;
    tcp::acceptor acceptor_;
    asio::steady_timer retry_;
    std::shared_ptr<server_state> state_;
    unsigned short port_ = 0;
};

}  // namespace
}  // namespace detail

struct collector::impl {
    explicit impl(collector_config cfg)
        : state(std::make_shared<detail::server_state>(cfg))
        , ioc(static_cast<int>(cfg.threads == 0 ? 1 : cfg.threads))
        , work(asio::make_work_guard(ioc)) {
        if (cfg.threads == 0)
            throw boost::system::system_error(
                make_error_code(boost::system::errc::invalid_argument),
                "evdispatch::collector: collector_config::threads must be at least 1");
        if (cfg.success_status < 200 || cfg.success_status > 299)
            throw boost::system::system_error(
                make_error_code(boost::system::errc::invalid_argument),
                "evdispatch::collector: success_status must be a 2xx status, got " +
                    std::to_string(cfg.success_status));
        error_code ec;
        auto address = asio::ip::make_address(cfg.listen_address, ec);
        if (ec)
            throw boost::system::system_error(
                ec, "evdispatch::collector: invalid listen_address \"" + cfg.listen_address + "\"");
        host = address.is_v6() ? "[" + cfg.listen_address + "]" : cfg.listen_address;
        listen = std::make_shared<detail::listener>(ioc, state);
        listen->bind(tcp::endpoint(address, cfg.port), host + ":" + std::to_string(cfg.port));
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

    std::shared_ptr<detail::server_state> state;
    asio::io_context ioc;
    asio::executor_work_guard<asio::io_context::executor_type> work;
    std::shared_ptr<detail::listener> listen;
    std::vector<std::thread> threads;
    std::string host;
    std::mutex stop_mutex;
    bool stopped = false;
};

collector::collector(collector_config cfg) : impl_(std::make_shared<impl>(std::move(cfg))) {}

collector::~collector() {
    if (impl_)
        impl_->stop();
}

unsigned short collector::port() const noexcept {
    return impl_->listen->port();
}

std::string collector::url() const {
    return "http://" + impl_->host + ":" + std::to_string(port()) + "/v1/events";
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

void collector::stop() {
    impl_->stop();
}

}  // namespace evdispatch
