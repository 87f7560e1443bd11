// evdispatch::relay: a Beast HTTP/1.1 server (TCP or unix socket) in front of a
// batch_event_processor. Each connection is a session (a template on the socket's protocol)
// that reads one request at a time, validates event batches, and admits their visitors to the
// processor all or nothing under one mutex, against the room (max_pending_events).

#include <evdispatch/relay.hpp>

#include <evdispatch/collector/check.hpp>
#include <evdispatch/endpoint_url.hpp>
#include <evdispatch/error.hpp>
#include <evdispatch/optimizely/sdk_batch.hpp>

#include "core/gzip.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/system/system_error.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace evdispatch {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
using boost::system::error_code;

[[noreturn]] void bad_config(const std::string& what) {
    throw boost::system::system_error(error::invalid_config, "evdispatch::relay: " + what);
}

// Largest request header block; more is answered 431 (HTTP clients send far less).
constexpr std::uint32_t header_limit = 16 * 1024;
// How long a connection we close stays open to drain the client's unread bytes, so that the
// close does not become a reset that destroys our last response before the client reads it.
constexpr std::chrono::seconds linger_timeout{2};

std::string_view path_of(std::string_view target) {
    const auto q = target.find('?');
    return q == std::string_view::npos ? target : target.substr(0, q);
}

// The value before any ';' parameter, without surrounding blanks, in lower case.
std::string media_token(std::string_view v) {
    v = v.substr(0, v.find(';'));
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    std::string out(v);
    for (auto& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

namespace detail {

// A connection that stop() can close.
class relay_session_base {
public:
    virtual ~relay_session_base() = default;
    // Closes the connection on its own executor.
    virtual void post_close() = 0;
};

// What the sessions share: configuration, counters, the processor, the live sessions.
struct relay_state {
    explicit relay_state(relay_config c) : cfg(std::move(c)) {}

    const relay_config cfg;
    std::unique_ptr<batch_event_processor> processor;  // set before the threads start

    std::atomic<std::uint64_t> connections{0}, connections_open{0}, connections_refused{0},
        requests{0}, accepted_requests{0}, accepted_events{0}, body_bytes{0}, gzip_requests{0},
        bad_requests{0}, too_large{0}, unsupported_media{0}, not_found{0}, refused_full{0},
        refused_full_events{0}, refused_draining{0}, refused_draining_events{0}, timeouts{0},
        metrics_requests{0}, durable_lost{0};

    std::atomic<bool> stopped{false};

    std::mutex sessions_mutex;
    std::list<std::weak_ptr<relay_session_base>> sessions;  // guarded by sessions_mutex

    enum class admission { accepted, full, draining };

    // Hands every event to the processor, or none: under admit_mutex_ this is the processor's
    // only producer, and pending (which counts the ring) plus the batch stays within the room,
    // which is at most the ring's capacity, so process() cannot refuse.
    admission admit(std::vector<event_ptr>& events) {
        std::lock_guard lock(admit_mutex_);
        if (draining_)
            return admission::draining;
        const metrics_snapshot m = processor->metrics();
        if (m.pending + events.size() > cfg.max_pending_events)
            return admission::full;
        for (auto& ev : events)
            (void)processor->process(std::move(ev));
        return admission::accepted;
    }

    void begin_drain() {
        std::lock_guard lock(admit_mutex_);
        draining_ = true;
    }
    bool draining() const {
        std::lock_guard lock(admit_mutex_);
        return draining_;
    }

    relay_stats stats() const {
        constexpr auto r = std::memory_order_relaxed;
        relay_stats s;
        s.connections = connections.load(r);
        s.connections_open = connections_open.load(r);
        s.connections_refused = connections_refused.load(r);
        s.requests = requests.load(r);
        s.accepted_requests = accepted_requests.load(r);
        s.accepted_events = accepted_events.load(r);
        s.body_bytes = body_bytes.load(r);
        s.gzip_requests = gzip_requests.load(r);
        s.bad_requests = bad_requests.load(r);
        s.too_large = too_large.load(r);
        s.unsupported_media = unsupported_media.load(r);
        s.not_found = not_found.load(r);
        s.refused_full = refused_full.load(r);
        s.refused_full_events = refused_full_events.load(r);
        s.refused_draining = refused_draining.load(r);
        s.refused_draining_events = refused_draining_events.load(r);
        s.timeouts = timeouts.load(r);
        s.metrics_requests = metrics_requests.load(r);
        s.durable_lost = durable_lost.load(r);
        s.draining = draining();
        return s;
    }

private:
    mutable std::mutex admit_mutex_;
    bool draining_ = false;  // guarded by admit_mutex_
};

namespace {

template <class Protocol>
class relay_session : public relay_session_base,
                      public std::enable_shared_from_this<relay_session<Protocol>> {
public:
    using stream_type = beast::basic_stream<Protocol>;

    relay_session(std::shared_ptr<relay_state> st, typename Protocol::socket socket)
        : state_(std::move(st)), stream_(std::move(socket)) {
        buffer_.reserve(16 * 1024);
    }

    ~relay_session() override {
        state_->connections_open.fetch_sub(1, std::memory_order_relaxed);
        if (registered_) {
            std::lock_guard lock(state_->sessions_mutex);
            state_->sessions.erase(registration_);
        }
    }

    // `refuse`: one connection too many; answer 503 and close.
    void run(bool refuse) {
        asio::dispatch(stream_.get_executor(),
                       [self = this->shared_from_this(), refuse] { self->on_run(refuse); });
    }

    void post_close() override {
        asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
            self->closing_ = true;
            self->stream_.close();
        });
    }

private:
    void on_run(bool refuse) {
        {
            std::lock_guard lock(state_->sessions_mutex);
            if (state_->stopped.load())
                return stream_.close();
            registration_ = state_->sessions.insert(state_->sessions.end(), this->weak_from_this());
            registered_ = true;
        }
        if (refuse) {
            state_->connections_refused.fetch_add(1, std::memory_order_relaxed);
            res_ = {};
            res_.version(11);
            set_text(http::status::service_unavailable,
                     "too many connections to the relay; try again\n");
            res_.set(http::field::retry_after, std::to_string(state_->cfg.retry_after.count()));
            return send(false);
        }
        do_read();
    }

    // Between requests the connection may idle (idle_timeout); once a request's first byte is
    // here, all of it (headers and body) must come within read_timeout.
    void do_read() {
        parser_.emplace();
        parser_->header_limit(header_limit);
        parser_->body_limit(state_->cfg.max_body_bytes);
        if (buffer_.size() > 0)
            return read_header();  // a pipelined request, already begun
        stream_.expires_after(state_->cfg.idle_timeout);
        stream_.async_read_some(
            buffer_.prepare(16 * 1024),
            beast::bind_front_handler(&relay_session::on_first_bytes, this->shared_from_this()));
    }

    void on_first_bytes(error_code ec, std::size_t n) {
        if (ec) {
            // Idle too long (the stream closed the socket), the client closed, or stop().
            if (ec == beast::error::timeout && !closing_)
                state_->timeouts.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        buffer_.commit(n);
        read_header();
    }

    void read_header() {
        stream_.expires_after(state_->cfg.read_timeout);
        http::async_read_header(
            stream_, buffer_, *parser_,
            beast::bind_front_handler(&relay_session::on_header, this->shared_from_this()));
    }

    // Counts the end of a read that failed; true when the session goes on to answer it.
    bool read_failed(error_code ec) {
        if (closing_ || ec == asio::error::operation_aborted)
            return false;  // stop()
        if (ec == beast::error::timeout) {
            state_->timeouts.fetch_add(1, std::memory_order_relaxed);
            return false;  // the stream closed the socket
        }
        if (ec == http::error::end_of_stream)
            return false;  // the client closed between requests
        if (ec.category() != http::make_error_code(http::error::end_of_stream).category() ||
            ec == http::error::partial_message)
            return false;  // the client went away mid-request
        return true;       // a malformed or oversized request: answer it, then close
    }

    void answer_read_error(error_code ec) {
        state_->requests.fetch_add(1, std::memory_order_relaxed);
        res_ = {};
        res_.version(11);
        if (ec == http::error::body_limit) {
            state_->too_large.fetch_add(1, std::memory_order_relaxed);
            set_text(http::status::payload_too_large,
                     "request body larger than " + std::to_string(state_->cfg.max_body_bytes) +
                         " bytes\n");
        } else if (ec == http::error::header_limit) {
            state_->bad_requests.fetch_add(1, std::memory_order_relaxed);
            set_text(http::status::request_header_fields_too_large,
                     "request headers larger than " + std::to_string(header_limit) + " bytes\n");
        } else {
            state_->bad_requests.fetch_add(1, std::memory_order_relaxed);
            set_text(http::status::bad_request, "bad HTTP request: " + ec.message() + "\n");
        }
        send(false);
    }

    void on_header(error_code ec, std::size_t) {
        if (ec) {
            if (read_failed(ec))
                answer_read_error(ec);
            return;
        }
        const auto& req = parser_->get();
        if (req.version() >= 11 && beast::iequals(req[http::field::expect], "100-continue") &&
            !parser_->is_done()) {
            continue_ = {http::status::continue_, req.version()};
            http::async_write(
                stream_, continue_,
                beast::bind_front_handler(&relay_session::on_continue, this->shared_from_this()));
            return;
        }
        read_body();
    }

    void on_continue(error_code ec, std::size_t) {
        if (ec)
            return;
        read_body();
    }

    void read_body() {
        http::async_read(
            stream_, buffer_, *parser_,
            beast::bind_front_handler(&relay_session::on_read, this->shared_from_this()));
    }

    void on_read(error_code ec, std::size_t) {
        if (ec) {
            if (read_failed(ec))
                answer_read_error(ec);
            return;
        }
        stream_.expires_never();
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
        res_ = {};
        res_.version(req.version());
        bool keep_alive = req.keep_alive();
        const std::string_view path = path_of(req.target());
        const bool us = path == "/v1/events";
        if (us || path == "/eu/v1/events") {
            if (req.method() != http::verb::post) {
                state_->not_found.fetch_add(1, relaxed);
                set_text(http::status::method_not_allowed, "POST an event batch here\n");
                res_.set(http::field::allow, "POST");
            } else {
                switch (take_batch(req, us ? state_->cfg.upstream : state_->cfg.eu_upstream)) {
                    case answer::now:
                        break;
                    case answer::now_and_close:
                        keep_alive = false;
                        break;
                    case answer::when_durable:
                        return wait_durable(keep_alive);
                }
            }
        } else if (path == "/metrics" || path == "/healthz") {
            if (req.method() != http::verb::get) {
                state_->not_found.fetch_add(1, relaxed);
                set_text(http::status::method_not_allowed, "GET only\n");
                res_.set(http::field::allow, "GET");
            } else if (path == "/metrics") {
                state_->metrics_requests.fetch_add(1, relaxed);
                res_.result(http::status::ok);
                res_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
                // Processor first: the relay's counters then include every batch it counts.
                const metrics_snapshot m = state_->processor->metrics();
                res_.body() = to_prometheus(state_->stats(), m);
            } else if (state_->draining()) {
                set_text(http::status::service_unavailable, "draining\n");
            } else {
                set_text(http::status::ok, "ok\n");
            }
        } else {
            state_->not_found.fetch_add(1, relaxed);
            set_text(http::status::not_found,
                     "not found: POST event batches to /v1/events or /eu/v1/events; GET /metrics, "
                     "GET /healthz\n");
        }
        send(keep_alive);
    }

    enum class answer { now, now_and_close, when_durable };

    // Validates an event batch and admits its visitors; fills res_ (for when_durable: once
    // the visitors are durable).
    answer take_batch(http::request<http::string_body>& req, const std::string& upstream) {
        constexpr auto relaxed = std::memory_order_relaxed;
        const std::string type = media_token(req[http::field::content_type]);
        if (type != "application/json") {
            state_->unsupported_media.fetch_add(1, relaxed);
            set_text(http::status::unsupported_media_type,
                     "Content-Type must be application/json, not '" +
                         std::string(req[http::field::content_type]) + "'\n");
            return answer::now;
        }
        const std::string encoding = media_token(req[http::field::content_encoding]);
        std::string_view body = req.body();
        std::string decoded;
        const bool gzip = encoding == "gzip" || encoding == "x-gzip";
        if (gzip) {
            std::string why;
            switch (detail::gunzip(body, state_->cfg.max_body_bytes, decoded, why)) {
                case detail::gunzip_status::ok:
                    body = decoded;
                    break;
                case detail::gunzip_status::too_large:
                    state_->too_large.fetch_add(1, relaxed);
                    set_text(http::status::payload_too_large,
                             "gzip body decodes to more than " +
                                 std::to_string(state_->cfg.max_body_bytes) + " bytes\n");
                    return answer::now;
                case detail::gunzip_status::invalid:
                    state_->bad_requests.fetch_add(1, relaxed);
                    set_text(http::status::bad_request, why + "\n");
                    return answer::now;
            }
        } else if (!encoding.empty() && encoding != "identity") {
            state_->unsupported_media.fetch_add(1, relaxed);
            set_text(http::status::unsupported_media_type,
                     "Content-Encoding '" + std::string(req[http::field::content_encoding]) +
                         "' is not supported (gzip or identity)\n");
            return answer::now;
        }
        const batch_check check = check_event_batch(body);
        if (!check.ok) {
            state_->bad_requests.fetch_add(1, relaxed);
            set_text(http::status::bad_request, "invalid event batch: " + check.error + "\n");
            return answer::now;
        }
        std::vector<event_ptr> events;
        try {
            events = split_event_batch(upstream, body, split_options{.strict = true});
        } catch (const boost::system::system_error& e) {
            state_->bad_requests.fetch_add(1, relaxed);
            set_text(http::status::bad_request, std::string(e.what()) + "\n");
            return answer::now;
        }
        const std::size_t n = events.size();
        switch (state_->admit(events)) {
            case relay_state::admission::accepted:
                state_->accepted_requests.fetch_add(1, relaxed);
                state_->accepted_events.fetch_add(n, relaxed);
                state_->body_bytes.fetch_add(req.body().size(), relaxed);
                if (gzip)
                    state_->gzip_requests.fetch_add(1, relaxed);
                res_.result(http::status::no_content);
                return state_->cfg.durable_ack ? answer::when_durable : answer::now;
            case relay_state::admission::full:
                state_->refused_full.fetch_add(1, relaxed);
                state_->refused_full_events.fetch_add(n, relaxed);
                set_text(http::status::service_unavailable,
                         "the relay is full (" + std::to_string(state_->cfg.max_pending_events) +
                             " events waiting for the upstream); send again later\n");
                res_.set(http::field::retry_after, std::to_string(state_->cfg.retry_after.count()));
                return answer::now;
            case relay_state::admission::draining:
                state_->refused_draining.fetch_add(1, relaxed);
                state_->refused_draining_events.fetch_add(n, relaxed);
                set_text(http::status::service_unavailable,
                         "the relay is shutting down; send to another one or later\n");
                res_.set(http::field::retry_after, std::to_string(state_->cfg.retry_after.count()));
                return answer::now_and_close;
        }
        return answer::now_and_close;
    }

    // --durable-ack: the 204 goes once every event accepted so far is durable. The
    // processor completes on its own thread; the answer is written on this session's.
    void wait_durable(bool keep_alive) {
        state_->processor->async_wait_durable(
            [self = this->shared_from_this(), keep_alive](error_code) {
                asio::post(self->stream_.get_executor(),
                           [self, keep_alive] { self->on_durable(keep_alive); });
            });
    }

    void on_durable(bool keep_alive) {
        if (closing_)
            return;
        // Settled is durable, but a drain whose deadline dropped events (no spool to leave
        // them in) may have dropped these: the client is told to send them again.
        if (state_->processor->metrics().dropped_for(drop_reason::close_deadline) != 0) {
            state_->durable_lost.fetch_add(1, std::memory_order_relaxed);
            set_text(http::status::service_unavailable,
                     "the relay stopped before these events were delivered; send them again\n");
            res_.set(http::field::retry_after, std::to_string(state_->cfg.retry_after.count()));
            return send(false);
        }
        send(keep_alive);
    }

    void send(bool keep_alive) {
        close_after_ = !keep_alive;
        res_.keep_alive(keep_alive);
        res_.prepare_payload();
        stream_.expires_after(state_->cfg.read_timeout);  // a client that does not read
        http::async_write(
            stream_, res_,
            beast::bind_front_handler(&relay_session::on_write, this->shared_from_this()));
    }

    void on_write(error_code ec, std::size_t) {
        if (ec) {
            if (ec == beast::error::timeout)
                state_->timeouts.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        if (close_after_)
            return linger();
        do_read();
    }

    // Shut our side down, then read and discard until the client closes (bounded in time).
    void linger() {
        error_code ignored;
        stream_.socket().shutdown(Protocol::socket::shutdown_send, ignored);
        stream_.expires_after(linger_timeout);
        do_drain();
    }

    void do_drain() {
        stream_.async_read_some(
            asio::buffer(drain_),
            beast::bind_front_handler(&relay_session::on_drain, this->shared_from_this()));
    }

    void on_drain(error_code ec, std::size_t) {
        if (!ec)
            do_drain();
    }

    std::shared_ptr<relay_state> state_;
    stream_type stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::empty_body> continue_;
    http::response<http::string_body> res_;
    bool close_after_ = false;
    bool closing_ = false;
    std::array<char, 4096> drain_{};
    std::list<std::weak_ptr<relay_session_base>>::iterator registration_;
    bool registered_ = false;
};

}  // namespace

}  // namespace detail

struct relay::impl {
    explicit impl(relay_config c, processor_hooks hooks)
        : state(std::make_shared<detail::relay_state>(prepare(std::move(c))))
        , tcp_acceptor(asio::make_strand(ioc))
        , unix_acceptor(tcp_acceptor.get_executor()) {
        const relay_config& cfg = state->cfg;
        processor_config pc = cfg.processor;
        pc.endpoint = cfg.upstream;
        pc.queue_capacity = std::max(pc.queue_capacity, cfg.max_pending_events);
        if (cfg.durable_ack && !pc.spool.dir.empty()) {
            pc.spool.mode = spool_mode::always;
            pc.spool.fsync = spool_fsync::every_batch;
        }
        state->processor = std::make_unique<batch_event_processor>(pc, std::move(hooks));
        if (!cfg.unix_socket.empty())
            bind_unix(cfg.unix_socket);
        else
            bind_tcp(cfg.listen_address, cfg.port);
        accept_next();
        threads.reserve(cfg.threads);
        for (unsigned i = 0; i < cfg.threads; ++i)
            threads.emplace_back([this] { run_thread(); });
    }

    // The processor goes before the io_context: its last completions (durable waits) are
    // posted to sessions of this io_context, which must still exist then (not run).
    ~impl() {
        stop();
        state->processor.reset();
    }

    static relay_config prepare(relay_config c) {
        if (c.max_pending_events == 0)
            bad_config("max_pending_events must be at least 1");
        if (c.max_body_bytes < 1024)
            bad_config("max_body_bytes must be at least 1024, not " +
                       std::to_string(c.max_body_bytes));
        if (c.max_connections == 0)
            bad_config("max_connections must be at least 1");
        if (c.read_timeout.count() <= 0 || c.idle_timeout.count() <= 0)
            bad_config("read_timeout and idle_timeout must be more than 0");
        if (c.retry_after.count() < 1)
            bad_config("retry_after must be at least 1 s");
        if (c.threads == 0 || c.threads > 256)
            bad_config("threads must be in 1..256, not " + std::to_string(c.threads));
        for (const auto* url : {&c.upstream, &c.eu_upstream}) {
            try {
                (void)parse_endpoint_url(*url);
            } catch (const boost::system::system_error& e) {
                bad_config(std::string(url == &c.upstream ? "upstream" : "eu_upstream") + ": " +
                           e.what());
            }
        }
        return c;
    }

    void bind_tcp(const std::string& address, unsigned short port) {
        error_code ec;
        const auto addr = asio::ip::make_address(address, ec);
        if (ec)
            bad_config("listen_address '" + address + "' is not an IP address");
        const tcp::endpoint ep(addr, port);
        tcp_acceptor.open(ep.protocol(), ec);
        if (!ec)
            tcp_acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec)
            tcp_acceptor.bind(ep, ec);
        if (!ec)
            tcp_acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec)
            throw boost::system::system_error(
                ec, "evdispatch::relay: cannot listen on " + address + ":" + std::to_string(port));
        const tcp::endpoint local = tcp_acceptor.local_endpoint();
        bound_port = local.port();
        const auto a = local.address();
        url = "http://" + (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" +
              std::to_string(bound_port) + "/v1/events";
    }

    void bind_unix(const std::string& path) {
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                bad_config("unix_socket " + path + " exists and is not a socket");
            // A socket file: replace it only if nobody listens there.
            unix_socket::socket probe(ioc);
            error_code ec;
            probe.connect(unix_socket::endpoint(path), ec);
            if (!ec)
                throw boost::system::system_error(
                    asio::error::address_in_use,
                    "evdispatch::relay: another process listens on " + path);
            ::unlink(path.c_str());
        }
        error_code ec;
        const unix_socket::endpoint ep(path);
        unix_acceptor.open(ep.protocol(), ec);
        if (!ec)
            unix_acceptor.bind(ep, ec);
        if (!ec)
            unix_acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec)
            throw boost::system::system_error(ec, "evdispatch::relay: cannot listen on " + path);
        unix_path = path;
        url = "unix:" + path;
    }

    void run_thread() {
        // Handlers do not throw (every error is a code); a bug must not end the thread
        // silently with the relay half alive.
        for (;;) {
            try {
                ioc.run();
                return;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "evdispatch relay: unexpected exception in a handler: %s\n",
                             e.what());
            }
        }
    }

    asio::any_io_executor session_executor() {
        if (state->cfg.threads <= 1)
            return ioc.get_executor();
        return asio::make_strand(ioc);
    }

    void accept_next() {
        if (unix_path.empty()) {
            tcp_acceptor.async_accept(session_executor(), [this](error_code ec, tcp::socket s) {
                on_accept<tcp>(ec, std::move(s));
            });
        } else {
            unix_acceptor.async_accept(session_executor(),
                                       [this](error_code ec, unix_socket::socket s) {
                                           on_accept<unix_socket>(ec, std::move(s));
                                       });
        }
    }

    template <class Protocol>
    void on_accept(error_code ec, typename Protocol::socket socket) {
        if (ec == asio::error::operation_aborted || state->stopped.load())
            return;
        if (ec) {
            // Out of descriptors and the like: try again shortly instead of spinning.
            auto timer = std::make_shared<asio::steady_timer>(tcp_acceptor.get_executor());
            timer->expires_after(std::chrono::milliseconds(20));
            timer->async_wait([this, timer](error_code e) {
                if (!e && !state->stopped.load())
                    accept_next();
            });
            return;
        }
        if constexpr (std::is_same_v<Protocol, tcp>) {
            error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
        }
        state->connections.fetch_add(1, std::memory_order_relaxed);
        const auto open = state->connections_open.fetch_add(1, std::memory_order_relaxed) + 1;
        std::make_shared<detail::relay_session<Protocol>>(state, std::move(socket))
            ->run(open > state->cfg.max_connections);
        accept_next();
    }

    void stop() {
        std::lock_guard lock(stop_mutex);
        if (stopped)
            return;
        stopped = true;
        {
            std::lock_guard slock(state->sessions_mutex);
            state->stopped.store(true);
        }
        std::promise<void> closed;
        asio::post(tcp_acceptor.get_executor(), [this, &closed] {
            error_code ignored;
            tcp_acceptor.close(ignored);
            unix_acceptor.close(ignored);
            closed.set_value();
        });
        closed.get_future().wait();
        std::vector<std::shared_ptr<detail::relay_session_base>> live;
        {
            std::lock_guard slock(state->sessions_mutex);
            for (auto& w : state->sessions)
                if (auto s = w.lock())
                    live.push_back(std::move(s));
        }
        for (auto& s : live)
            s->post_close();
        live.clear();
        // With the acceptor and every connection closed the threads run out of work.
        for (auto& t : threads)
            t.join();
        threads.clear();
        if (!unix_path.empty())
            ::unlink(unix_path.c_str());
    }

    std::shared_ptr<detail::relay_state> state;
    asio::io_context ioc;
    tcp::acceptor tcp_acceptor;
    unix_socket::acceptor unix_acceptor;
    unsigned short bound_port = 0;
    std::string unix_path;
    std::string url;
    std::vector<std::thread> threads;

    std::mutex stop_mutex;
    bool stopped = false;  // guarded by stop_mutex

    std::mutex drain_mutex;
    std::optional<close_report> report;  // guarded by drain_mutex
};

relay::relay(relay_config cfg, processor_hooks hooks)
    : impl_(std::make_unique<impl>(std::move(cfg), std::move(hooks))) {}

relay::~relay() = default;

unsigned short relay::port() const noexcept {
    return impl_->bound_port;
}

std::string relay::url() const {
    return impl_->url;
}

relay_stats relay::stats() const {
    return impl_->state->stats();
}

metrics_snapshot relay::metrics() const {
    return impl_->state->processor->metrics();
}

void relay::begin_drain() {
    impl_->state->begin_drain();
}

close_report relay::drain(std::chrono::steady_clock::duration deadline) {
    std::lock_guard lock(impl_->drain_mutex);
    if (!impl_->report) {
        impl_->state->begin_drain();
        std::promise<close_report> done;
        impl_->state->processor->async_close(
            deadline, [&done](error_code, close_report r) { done.set_value(std::move(r)); });
        impl_->report = done.get_future().get();
        impl_->stop();
    }
    return *impl_->report;
}

void relay::stop() {
    impl_->stop();
}

}  // namespace evdispatch
