// The loopback collector: a Beast HTTP/1.1 server (plain or TLS) that validates event batches
// with the SAX checker (collector_check.hpp), counts them, removes duplicate events by uuid and
// injects faults on request.
//
// Ownership: collector::impl owns the io_context, the threads and the listener. Everything a
// connection needs lives in `server_state`, which sessions hold by shared_ptr; nothing holds
// a raw pointer to impl, so handlers that are still queued when impl dies are harmless.
//
// The session is a template on its stream (tcp_stream or ssl_stream<tcp_stream>); the stream
// hooks below are the only places that differ. What to do with each request is a
// `response_plan`, decided by server_state::decide() from the faults in force.
//
// Cost in the fault-free path: one relaxed atomic load per request (`faults_on`); the fault
// mutex is only taken while some fault is set.

#include <evdispatch/collector/collector.hpp>

#include "collector/check.hpp"
#include "core/json_writer.hpp"
#include "collector/uuid_set.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/ssl.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include <pthread.h>
#include <type_traits>
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

[[noreturn]] void throw_invalid(const std::string& what) {
    throw boost::system::system_error(make_error_code(boost::system::errc::invalid_argument),
                                      "evdispatch::collector: " + what);
}

void validate_faults(const collector_faults& f) {
    auto check_status = [](unsigned s, const char* name) {
        if (s < 200 || s > 599)
            throw_invalid(std::string(name) + " must be a status in 200..599, got " +
                          std::to_string(s));
    };
    auto check_header = [](const std::string& v, const char* name) {
        for (unsigned char c : v)
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                throw_invalid(std::string(name) + " must be printable ASCII (it is sent as " +
                              "the Retry-After header)");
    };
    for (unsigned s : f.script)
        check_status(s, "collector_faults::script entry");
    if (f.script_retry_after.size() > f.script.size())
        throw_invalid("collector_faults::script_retry_after has " +
                      std::to_string(f.script_retry_after.size()) + " entries but script only " +
                      std::to_string(f.script.size()));
    for (const auto& v : f.script_retry_after)
        check_header(v, "collector_faults::script_retry_after entry");
    if (f.retry_after_status != 0)
        check_status(f.retry_after_status, "collector_faults::retry_after_status");
    if (f.fail_every != 0)
        check_status(f.fail_status, "collector_faults::fail_status");
    check_header(f.retry_after, "collector_faults::retry_after");
}

// A session that can be closed from stop() or pause_listening().
class session_base {
public:
    virtual ~session_base() = default;
    // Closes the socket and cancels timers. Called on the session's strand, or when no server
    // thread runs.
    virtual void close_now() noexcept = 0;
    // Runs close_now() on the session's strand, then `done`.
    virtual void post_close(std::function<void()> done) = 0;
};

enum class request_kind : std::uint8_t { valid_batch, invalid_batch, other };
enum class plan_action : std::uint8_t { respond, stall, reset, drop };

// What to do with one request.
struct response_plan {
    std::chrono::milliseconds delay{0};
    plan_action action = plan_action::respond;
    bool close_after = false;  // close the connection once the response is written
    bool fault_close = false;  // ... because of a fault (the client asked for keep-alive)
    unsigned status = 0;       // valid batch: 0 = success_status, else a scripted status
    std::string retry_after;   // Retry-After header value; empty: none
};

// What connections share: configuration, counters, de-dup set, kept bodies, live sessions,
// faults.
struct server_state {
    explicit server_state(const collector_config& c) : cfg(c), delay_ms(c.delay.count()) {}

    const collector_config cfg;
    std::optional<asio::ssl::context> tls;  // set before the threads start, then read-only
    std::atomic<std::int64_t> delay_ms;
    std::atomic<bool> stopped{false};
    // Bumped (under sessions_mutex) by pause_listening(): a session accepted in an older epoch
    // that registers late closes itself instead.
    std::atomic<std::uint64_t> epoch{0};

    // Counters: relaxed, each is monotonic on its own; they are updated before the response
    // is written (or the connection closed), so a client that sees the outcome sees them.
    std::atomic<std::uint64_t> connections{0}, requests{0}, batches{0}, events{0}, unique_events{0},
        duplicates{0}, rejected{0}, bytes{0}, failed_batches{0}, failed_events{0}, stalled{0},
        resets{0}, dropped_responses{0}, fault_closes{0}, tls_handshakes{0},
        tls_handshake_failures{0};

    std::mutex seen_mutex;
    uuid_set seen{4096};

    std::mutex bodies_mutex;
    std::vector<std::string> bodies;

    std::mutex sessions_mutex;
    std::list<std::weak_ptr<session_base>> sessions;

    // Faults. faults_on is false when `faults` injects nothing (also once the script has run
    // out and nothing else is set), so the common path never takes faults_mutex.
    std::atomic<bool> faults_on{false};
    mutable std::mutex faults_mutex;
    collector_faults faults;     // guarded by faults_mutex
    std::size_t script_pos = 0;    // guarded by faults_mutex: next script entry
    std::uint64_t fail_count = 0;  // guarded by faults_mutex: batches counted for fail_every

    void set_faults(collector_faults f) {
        std::lock_guard lock(faults_mutex);
        faults = std::move(f);
        script_pos = 0;
        fail_count = 0;
        update_faults_on();
    }

    void update_faults_on() {
        const collector_faults& f = faults;
        bool on = script_pos < f.script.size() || f.retry_after_status != 0 ||
                  f.fail_every != 0 || f.stall || f.reset_mid_request || f.close_after_response ||
                  f.max_requests_per_connection != 0 || f.accept_then_drop_response;
        // Release/acquire: a session that sees `on` also sees the faults that turned it on
        // (decide() locks faults_mutex anyway; this only orders the fast-path check).
        faults_on.store(on, std::memory_order_release);
    }

    bool faults_active() const noexcept { return faults_on.load(std::memory_order_acquire); }

    // Header-time check: should a batch request be reset before its body is read?
    bool reset_requested() const {
        std::lock_guard lock(faults_mutex);
        return faults.reset_mid_request;
    }

    // Applies the faults to `plan` for a request of `kind` that would be the connection's
    // `nth` response. Consumes a script entry for a valid batch.
    void decide(request_kind kind, std::uint64_t nth, response_plan& plan) {
        std::lock_guard lock(faults_mutex);
        const collector_faults& f = faults;
        if (kind != request_kind::other) {
            if (f.reset_mid_request) {
                plan.action = plan_action::reset;
                return;
            }
            if (f.stall) {
                plan.action = plan_action::stall;
                return;
            }
            if (kind == request_kind::valid_batch) {
                if (f.accept_then_drop_response) {
                    plan.action = plan_action::drop;
                    return;
                }
                if (script_pos < f.script.size()) {
                    plan.status = f.script[script_pos];
                    if (script_pos < f.script_retry_after.size())
                        plan.retry_after = f.script_retry_after[script_pos];
                    ++script_pos;
                    update_faults_on();
                } else if (f.fail_every != 0 && ++fail_count % f.fail_every == 0) {
                    plan.status = f.fail_status;
                } else if (f.retry_after_status != 0) {
                    plan.status = f.retry_after_status;
                    plan.retry_after = f.retry_after;
                }
            }
        }
        if (f.close_after_response ||
            (f.max_requests_per_connection != 0 && nth >= f.max_requests_per_connection)) {
            plan.fault_close = !plan.close_after;
            plan.close_after = true;
        }
    }

    collector_stats snapshot() const {
        constexpr auto r = std::memory_order_relaxed;
        collector_stats s;
        s.connections = connections.load(r);
        s.requests = requests.load(r);
        s.batches = batches.load(r);
        s.events = events.load(r);
        s.unique_events = unique_events.load(r);
        s.duplicates = duplicates.load(r);
        s.rejected = rejected.load(r);
        s.bytes = bytes.load(r);
        s.failed_batches = failed_batches.load(r);
        s.failed_events = failed_events.load(r);
        s.stalled = stalled.load(r);
        s.resets = resets.load(r);
        s.dropped_responses = dropped_responses.load(r);
        s.fault_closes = fault_closes.load(r);
        s.tls_handshakes = tls_handshakes.load(r);
        s.tls_handshake_failures = tls_handshake_failures.load(r);
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
    out.reserve(400);
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
    field("failed_batches", s.failed_batches);
    field("failed_events", s.failed_events);
    field("stalled", s.stalled);
    field("resets", s.resets);
    field("dropped_responses", s.dropped_responses);
    field("fault_closes", s.fault_closes);
    field("tls_handshakes", s.tls_handshakes);
    field("tls_handshake_failures", s.tls_handshake_failures);
    out += '}';
    return out;
}

using tls_stream = beast::ssl_stream<beast::tcp_stream>;

template <class Stream>
inline constexpr bool is_tls = std::is_same_v<Stream, tls_stream>;

// Bound on a TLS handshake, so a client that connects and says nothing does not hold a
// session forever.
constexpr std::chrono::seconds handshake_timeout{10};

// Grace period to drain the peer after our last response, so closing with unread request
// bytes does not turn into a reset that destroys the response before the client reads it.
constexpr std::chrono::seconds linger_timeout{2};

// Stream hooks. Plain TCP has no handshake and closes by shutting down its sending side; TLS
// handshakes (bounded by handshake_timeout) and closes with close_notify.
template <class Handler>
void async_start_stream(beast::tcp_stream&, Handler&& h) {
    std::forward<Handler>(h)(error_code{});
}
template <class Handler>
void async_start_stream(tls_stream& s, Handler&& h) {
    beast::get_lowest_layer(s).expires_after(handshake_timeout);
    s.async_handshake(asio::ssl::stream_base::server, std::forward<Handler>(h));
}
template <class Handler>
void async_close_stream(beast::tcp_stream&, Handler&& h) {
    std::forward<Handler>(h)(error_code{});
}
template <class Handler>
void async_close_stream(tls_stream& s, Handler&& h) {
    // Sends close_notify and waits (within the linger timeout) for the peer's.
    s.async_shutdown(std::forward<Handler>(h));
}

std::string_view path_of(std::string_view target) {
    auto q = target.find('?');
    return q == std::string_view::npos ? target : target.substr(0, q);
}

bool is_batch_request(http::verb method, std::string_view target) {
    return method == http::verb::post && path_of(target).ends_with("/events");
}

template <class Stream>
class session : public session_base, public std::enable_shared_from_this<session<Stream>> {
public:
    template <class... StreamArgs>
    session(std::shared_ptr<server_state> state, std::uint64_t epoch, StreamArgs&&... args)
        : stream_(std::forward<StreamArgs>(args)...)
        , state_(std::move(state))
        , epoch_(epoch)
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

    void post_close(std::function<void()> done) override {
        asio::post(stream_.get_executor(),
                   [self = this->shared_from_this(), done = std::move(done)] {
                       self->close_now();
                       done();
                   });
    }

private:
    struct key_sink {
        std::vector<uuid_key>* keys;
        void on_uuid(std::string_view s) { keys->push_back(make_uuid_key(s)); }
    };

    void on_run() {
        {
            std::lock_guard lock(state_->sessions_mutex);
            // stop() or pause_listening() already closed the others: this one came too late.
            if (state_->stopped.load() || state_->epoch.load() != epoch_)
                return close_now();
            registration_ = state_->sessions.insert(state_->sessions.end(), this->weak_from_this());
            registered_ = true;
        }
        async_start_stream(
            stream_, beast::bind_front_handler(&session::on_started, this->shared_from_this()));
    }

    void on_started(error_code ec) {
        if constexpr (is_tls<Stream>) {
            if (ec) {
                // Aborted means stop() or pause_listening() closed us, not a failed handshake.
                if (ec != asio::error::operation_aborted)
                    state_->tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            state_->tls_handshakes.fetch_add(1, std::memory_order_relaxed);
            beast::get_lowest_layer(stream_).expires_never();
        }
        if (ec)
            return;
        do_read();
    }

    void do_read() {
        parser_.emplace();
        parser_->body_limit(state_->cfg.max_body_bytes);
        if (state_->faults_active()) {
            // reset_mid_request needs to act between the headers and the body.
            http::async_read_header(
                stream_, buffer_, *parser_,
                beast::bind_front_handler(&session::on_header, this->shared_from_this()));
            return;
        }
        http::async_read(stream_, buffer_, *parser_,
                         beast::bind_front_handler(&session::on_read, this->shared_from_this()));
    }

    void on_header(error_code ec, std::size_t n) {
        if (ec)
            return on_read(ec, n);
        const auto& req = parser_->get();
        if (is_batch_request(req.method(), req.target()) && state_->reset_requested()) {
            state_->requests.fetch_add(1, std::memory_order_relaxed);
            return do_reset();
        }
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

    template <class Status>
    void set_text(Status st, std::string body) {
        res_.result(st);
        res_.set(http::field::content_type, "text/plain; charset=utf-8");
        res_.body() = std::move(body);
    }

    void handle(http::request<http::string_body>& req) {
        constexpr auto relaxed = std::memory_order_relaxed;
        state_->requests.fetch_add(1, relaxed);
        ++requests_on_connection_;
        res_ = {};
        res_.version(req.version());
        response_plan plan;
        plan.delay = std::chrono::milliseconds(state_->delay_ms.load(relaxed));
        plan.close_after = !req.keep_alive();
        const bool faults = state_->faults_active();

        std::string_view target = path_of(req.target());
        if (req.method() == http::verb::post && target.ends_with("/events")) {
            keys_.clear();
            checker_.reset();
            const bool valid = checker_.write(req.body(), false);
            if (faults)
                state_->decide(valid ? request_kind::valid_batch : request_kind::invalid_batch,
                               requests_on_connection_, plan);
            switch (plan.action) {
                case plan_action::reset:
                    return do_reset();
                case plan_action::stall:
                    state_->stalled.fetch_add(1, relaxed);
                    return do_stall();
                case plan_action::drop:
                    state_->accept_batch(req.body(), keys_);
                    state_->dropped_responses.fetch_add(1, relaxed);
                    return respond(plan);
                case plan_action::respond:
                    break;
            }
            if (!valid) {
                state_->rejected.fetch_add(1, relaxed);
                set_text(http::status::bad_request, checker_.error() + "\n");
            } else {
                const unsigned status = plan.status != 0 ? plan.status : state_->cfg.success_status;
                if (status < 300) {
                    state_->accept_batch(req.body(), keys_);
                    res_.result(status);
                } else {
                    state_->failed_events.fetch_add(keys_.size(), relaxed);
                    state_->failed_batches.fetch_add(1, relaxed);
                    set_text(status, "status " + std::to_string(status) +
                                         " injected by a collector fault\n");
                }
                if (!plan.retry_after.empty())
                    res_.set(http::field::retry_after, plan.retry_after);
            }
        } else {
            if (faults)
                state_->decide(request_kind::other, requests_on_connection_, plan);
            if (req.method() == http::verb::get && target == "/stats") {
                res_.result(http::status::ok);
                res_.set(http::field::content_type, "application/json");
                res_.body() = stats_json(state_->snapshot());
            } else {
                state_->rejected.fetch_add(1, relaxed);
                set_text(http::status::not_found,
                         "not found: POST a batch to .../events, or GET /stats\n");
            }
        }
        respond(plan);
    }

    void respond(const response_plan& plan) {
        close_after_ = plan.close_after;
        drop_ = plan.action == plan_action::drop;
        if (plan.fault_close)
            state_->fault_closes.fetch_add(1, std::memory_order_relaxed);
        if (!drop_) {
            res_.keep_alive(!close_after_);
            res_.prepare_payload();
        }
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
            return;  // cancelled by stop() or pause_listening()
        do_write();
    }

    void do_write() {
        if (drop_)
            return linger();  // accepted, but the response is "lost"
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

    // Abortive close: with SO_LINGER 0 the kernel sends RST instead of FIN.
    void do_reset() {
        state_->resets.fetch_add(1, std::memory_order_relaxed);
        error_code ec;
        auto& sock = beast::get_lowest_layer(stream_).socket();
        sock.set_option(asio::socket_base::linger(true, 0), ec);
        sock.close(ec);
        timer_.cancel();
    }

    // Never answer; keep reading (and discarding) so the session ends when the peer closes.
    void do_stall() {
        beast::get_lowest_layer(stream_).expires_never();
        do_drain();
    }

    // Close our side (TLS: close_notify), then read and discard until the peer closes,
    // bounded in time.
    void linger() {
        beast::get_lowest_layer(stream_).expires_after(linger_timeout);
        async_close_stream(
            stream_, beast::bind_front_handler(&session::on_closed, this->shared_from_this()));
    }

    void on_closed(error_code ec) {
        if (ec)
            return;  // TLS peer closed without close_notify, timeout, or stop()
        error_code ignored;
        beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ignored);
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
    const std::uint64_t epoch_;
    asio::steady_timer timer_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    bool close_after_ = false;
    bool drop_ = false;
    std::uint64_t requests_on_connection_ = 0;
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
        open_and_listen(ep, ec);
        if (ec)
            throw boost::system::system_error(ec,
                                              "evdispatch::collector: cannot listen on " + what);
        endpoint_ = acceptor_.local_endpoint();
        port_ = endpoint_.port();
    }

    unsigned short port() const noexcept { return port_; }

    asio::any_io_executor executor() { return acceptor_.get_executor(); }

    void run() {
        asio::dispatch(acceptor_.get_executor(),
                       [self = shared_from_this()] { self->do_accept(); });
    }

    // On the acceptor's strand, or when no server thread runs. Accepts queued before this are
    // ignored (their generation is stale).
    void close_now() noexcept {
        error_code ec;
        acceptor_.close(ec);
        retry_.cancel();
        ++generation_;
    }

    // On the acceptor's strand, after close_now(): listens again on the same endpoint.
    error_code restart() {
        error_code ec;
        open_and_listen(endpoint_, ec);
        if (!ec)
            do_accept();
        return ec;
    }

private:
    void open_and_listen(const tcp::endpoint& ep, error_code& ec) {
        acceptor_.open(ep.protocol(), ec);
        if (!ec)
            acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec)
            acceptor_.bind(ep, ec);
        if (!ec)
            acceptor_.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            error_code ignored;
            acceptor_.close(ignored);
        }
    }

    void do_accept() {
        // One server thread (the default) runs every handler in order already: a strand per
        // connection would only add executor copies and locks on the per-request path.
        asio::any_io_executor ex = state_->cfg.threads <= 1
                                       ? asio::any_io_executor(ioc_.get_executor())
                                       : asio::any_io_executor(asio::make_strand(ioc_));
        acceptor_.async_accept(
            ex,
            beast::bind_front_handler(&listener::on_accept, shared_from_this(), generation_));
    }

    void on_accept(std::uint64_t generation, error_code ec, tcp::socket socket) {
        if (generation != generation_ || ec == asio::error::operation_aborted ||
            !acceptor_.is_open())
            return;
        if (ec) {
            // Out of descriptors and the like: try again shortly instead of spinning.
            retry_.expires_after(std::chrono::milliseconds(20));
            retry_.async_wait([self = shared_from_this(), generation](error_code e) {
                if (!e && generation == self->generation_)
                    self->do_accept();
            });
            return;
        }
        state_->connections.fetch_add(1, std::memory_order_relaxed);
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        const std::uint64_t epoch = state_->epoch.load();
        if (state_->tls) {
            std::make_shared<session<tls_stream>>(state_, epoch, std::move(socket), *state_->tls)
                ->run();
        } else {
            std::make_shared<session<beast::tcp_stream>>(state_, epoch, std::move(socket))->run();
        }
        do_accept();
    }

    asio::io_context& ioc_;
    tcp::acceptor acceptor_;
    asio::steady_timer retry_;
    std::shared_ptr<server_state> state_;
    tcp::endpoint endpoint_;
    unsigned short port_ = 0;
    std::uint64_t generation_ = 0;  // on the acceptor's strand
};

asio::ssl::context make_tls_context(const collector_config& cfg) {
    asio::ssl::context ctx(asio::ssl::context::tls_server);
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                    asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1)
        throw_invalid("cannot set TLS 1.2 as the minimum version");
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
            detail::throw_invalid("success_status must be a 2xx status, got " +
                                  std::to_string(cfg.success_status));
        detail::validate_faults(cfg.faults);
        state->set_faults(cfg.faults);
        if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
            detail::throw_invalid(
                "collector_config::tls_cert_file and tls_key_file must be set together");
        if (!cfg.tls_cert_file.empty())
            state->tls.emplace(detail::make_tls_context(cfg));
        error_code ec;
        auto address = asio::ip::make_address(cfg.listen_address, ec);
        if (ec)
            throw boost::system::system_error(
                ec, "evdispatch::collector: invalid listen_address \"" + cfg.listen_address + "\"");
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
                pthread_setname_np(pthread_self(), "ev-collector");
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
        detail::run_on(listen->executor(), [l = listen] { l->close_now(); });
        std::vector<std::shared_ptr<detail::session_base>> live;
        {
            std::lock_guard sl(state->sessions_mutex);
            state->epoch.fetch_add(1);
            for (auto& w : state->sessions)
                if (auto s = w.lock())
                    live.push_back(std::move(s));
        }
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
        detail::run_on(listen->executor(), [l = listen, &ec] { ec = l->restart(); });
        if (ec)
            throw boost::system::system_error(ec, "evdispatch::collector: cannot listen again on " +
                                                      host + ":" + std::to_string(listen->port()));
        paused = false;
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
    detail::validate_faults(f);
    impl_->state->set_faults(std::move(f));
}

collector_faults collector::faults() const {
    std::lock_guard lock(impl_->state->faults_mutex);
    return impl_->state->faults;
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
