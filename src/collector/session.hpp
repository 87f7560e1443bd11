#pragma once

// One connection of the collector: a Beast HTTP/1.1 server session, a template on its stream
// (tcp_stream or ssl_stream<tcp_stream>); the stream hooks below are the only places that
// differ. What to do with each request is a `response_plan`, decided by detail::decide() (via
// server_state) from the faults in force.
//
// Cost in the fault-free path: one relaxed atomic load per request (faults_active()); the fault
// mutex is only taken while some fault is set.

#include "collector/check.hpp"
#include "collector/faults.hpp"
#include "collector/server_state.hpp"
#include "collector/uuid_set.hpp"
#include "core/gzip.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace evdispatch::detail {

namespace collector_io {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

using tls_stream = beast::ssl_stream<beast::tcp_stream>;

template <class Stream>
inline constexpr bool is_tls = std::is_same_v<Stream, tls_stream>;

// Bound on a TLS handshake, so a client that connects and says nothing does not hold a
// session forever.
inline constexpr std::chrono::seconds handshake_timeout{10};

// Grace period to drain the peer after our last response, so closing with unread request
// bytes does not turn into a reset that destroys the response before the client reads it.
inline constexpr std::chrono::seconds linger_timeout{2};

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

inline std::string_view path_of(std::string_view target) {
    auto q = target.find('?');
    return q == std::string_view::npos ? target : target.substr(0, q);
}

inline bool is_batch_request(http::verb method, std::string_view target) {
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
        , sink_(keys_)
        , checker_(sink_) {
        // Beast reads as much as the buffer has room for, and at least 512 bytes: from an
        // empty buffer, a 50 KB batch took about a hundred reads. With room for 64 KiB
        // (Beast's largest read) a body comes in a few.
        buffer_.reserve(64 * 1024);
    }

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
    class key_sink final : public uuid_sink {
    public:
        explicit key_sink(std::vector<uuid_key>& keys) : keys_(&keys) {}
        void on_uuid(std::string_view s) override { keys_->push_back(make_uuid_key(s)); }

    private:
        std::vector<uuid_key>* keys_;
    };

    void on_run() {
        {
            std::lock_guard lock(state_->sessions_mutex);
            // stop(), pause_listening() or an outage already closed the others: this one came
            // too late.
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

    // Asks the faults what to do with this connection's next request.
    response_plan decide(request_kind kind, bool keep_alive) {
        return state_->decide(request_info{kind, requests_on_connection_ + 1, keep_alive},
                              outage_generation_);
    }

    // Runs `next` (on this session's executor) once the outage that `plan` begins has begun:
    // the acceptor is closed and the other sessions are asked to close, so a client that sees
    // this request's outcome can no longer connect. At once if the plan begins none.
    void after_outage(const response_plan& plan, std::function<void()> next) {
        if (plan.outage.count() == 0)
            return next();
        // A response goes out before this connection closes (close_after); the others close
        // with the rest.
        std::weak_ptr<session_base> spare;
        if (plan.action == plan_action::respond)
            spare = this->weak_from_this();
        state_->begin_outage(plan.outage, outage_generation_, std::move(spare),
                             [ex = stream_.get_executor(), next = std::move(next)]() mutable {
                                 asio::post(ex, std::move(next));
                             });
    }

    void on_header(error_code ec, std::size_t n) {
        if (ec)
            return on_read(ec, n);
        const auto& req = parser_->get();
        if (is_batch_request(req.method(), req.target()) && state_->faults_active()) {
            const response_plan plan = decide(request_kind::batch_headers, req.keep_alive());
            if (plan.action != plan_action::read_body) {
                state_->requests.fetch_add(1, std::memory_order_relaxed);
                if (plan.action == plan_action::lose)
                    return close_now();
                // The only other action decided at header time.
                return after_outage(plan, [self = this->shared_from_this()] { self->do_reset(); });
            }
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
            response_plan plan;
            plan.close_after = true;
            if (state_->faults_active()) {
                plan = decide(request_kind::malformed, false);
                if (plan.action == plan_action::lose)
                    return close_now();
            }
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
            return finish(plan);
        }
        handle(parser_->get());
    }

    // A gzip batch body into decoded_, bounded by max_body_bytes; a failure is kept in
    // encoding_status_ (415 refused, 413 too large, 400 corrupt) and encoding_error_.
    void decode_gzip(const std::string& in) {
        if (state_->cfg.refuse_gzip) {
            encoding_status_ = 415;
            encoding_error_ = "gzip is not accepted here (collector refuse_gzip)";
            return;
        }
        switch (gunzip(in, state_->cfg.max_body_bytes, decoded_, encoding_error_)) {
            case gunzip_status::ok:
                return;
            case gunzip_status::too_large:
                encoding_status_ = 413;
                encoding_error_ = "gzip body decodes to more than " +
                                  std::to_string(state_->cfg.max_body_bytes) + " bytes";
                return;
            case gunzip_status::invalid:
                encoding_status_ = 400;
                return;
        }
    }

    void accept(std::string& body, bool gzipped, std::size_t received) {
        if (gzipped) {
            state_->gzip_batches.fetch_add(1, std::memory_order_relaxed);
            state_->gzip_bytes.fetch_add(received, std::memory_order_relaxed);
        }
        state_->accept_batch(body, keys_);
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
        const bool batch = is_batch_request(req.method(), req.target());
        bool valid = false;
        std::string* body = &req.body();
        bool gzipped = false;
        encoding_status_ = 0;
        if (batch) {
            keys_.clear();
            checker_.reset();
            const auto enc = req[http::field::content_encoding];
            if (beast::iequals(enc, "gzip") || beast::iequals(enc, "x-gzip")) {
                gzipped = true;
                body = &decoded_;
                decode_gzip(req.body());
            } else if (!enc.empty() && !beast::iequals(enc, "identity")) {
                encoding_status_ = 415;
                encoding_error_ = "Content-Encoding '" + std::string(enc) + "' is not supported";
            }
            valid = encoding_status_ == 0 && checker_.write(*body, false);
        }
        response_plan plan;
        if (state_->faults_active()) {
            plan = decide(batch ? (valid ? request_kind::valid_batch : request_kind::invalid_batch)
                                : request_kind::other,
                          req.keep_alive());
        } else {
            plan.close_after = !req.keep_alive();
        }
        ++requests_on_connection_;
        plan.delay = std::chrono::milliseconds(state_->delay_ms.load(relaxed));
        res_ = {};
        res_.version(req.version());

        switch (plan.action) {
            case plan_action::lose:
                return close_now();
            case plan_action::reset:
                return after_outage(plan, [self = this->shared_from_this()] { self->do_reset(); });
            case plan_action::stall:
                state_->stalled.fetch_add(1, relaxed);
                return after_outage(plan, [self = this->shared_from_this()] { self->do_stall(); });
            case plan_action::drop:
                accept(*body, gzipped, req.body().size());
                state_->dropped_responses.fetch_add(1, relaxed);
                return finish(plan);
            case plan_action::respond:
            case plan_action::read_body:  // never decided for a whole request
                break;
        }
        if (batch) {
            if (!valid) {
                state_->rejected.fetch_add(1, relaxed);
                if (encoding_status_ != 0)
                    set_text(encoding_status_, encoding_error_ + "\n");
                else
                    set_text(http::status::bad_request, checker_.error() + "\n");
            } else {
                const unsigned status = plan.status != 0 ? plan.status : state_->cfg.success_status;
                if (status < 300) {
                    accept(*body, gzipped, req.body().size());
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
        } else if (req.method() == http::verb::get && path_of(req.target()) == "/stats") {
            res_.result(http::status::ok);
            res_.set(http::field::content_type, "application/json");
            res_.body() = to_json(state_->snapshot());
        } else {
            state_->rejected.fetch_add(1, relaxed);
            set_text(http::status::not_found,
                     "not found: POST a batch to .../events, or GET /stats\n");
        }
        finish(plan);
    }

    // Sends res_ as `plan` says (or, for a drop, closes without it), once the outage the plan
    // begins, if any, has begun.
    void finish(const response_plan& plan) {
        if (plan.outage.count() == 0)
            return respond(plan);
        after_outage(plan, [self = this->shared_from_this(), plan] { self->respond(plan); });
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
            return;  // cancelled by stop(), pause_listening() or an outage
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
    std::uint64_t outage_generation_ = 0;  // of the faults that decided the last request
    std::vector<uuid_key> keys_;
    std::string decoded_;  // a gzip batch body, decoded
    unsigned encoding_status_ = 0;
    std::string encoding_error_;
    key_sink sink_;
    batch_checker checker_;
    std::array<char, 4096> drain_;
    std::list<std::weak_ptr<session_base>>::iterator registration_;
    bool registered_ = false;
};

}  // namespace collector_io

}  // namespace evdispatch::detail
