// http_event_dispatcher: Beast HTTP/1.1 (plain or TLS) over per-endpoint pools of keep-alive
// connections. Everything here runs on one strand (the processor's): no locks. The one thing
// that comes from another thread, a resolver's answer, comes through a resolve_job.

#include <evdispatch/host_resolver.hpp>
#include <evdispatch/http_event_dispatcher.hpp>
#include <evdispatch/retry_policy.hpp>

#include <evdispatch/endpoint_url.hpp>
#include "core/config_check.hpp"
#include "http/address_cache.hpp"
#include "http/resolve_job.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <charconv>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace evdispatch {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

namespace detail {

struct http_exchange;

namespace {

bool is_stale_error(const error_code& ec) {
    return ec == asio::error::eof || ec == http::error::end_of_stream ||
           ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
           ec == asio::error::connection_aborted || ec == ssl::error::stream_truncated;
}

}  // namespace

/// One keep-alive connection, plain or TLS.
struct connection {
    connection(asio::any_io_executor ex, ssl::context* tls_ctx) {
        if (tls_ctx)
            tls.emplace(ex, *tls_ctx);
        else
            plain.emplace(ex);
    }

    beast::tcp_stream& lowest() { return tls ? tls->next_layer() : *plain; }

    template <class F>
    void with_stream(F&& f) {
        if (tls)
            f(*tls);
        else
            f(*plain);
    }

    void close() noexcept {
        error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
        lowest().socket().close(ignored);
        connected = false;
    }

    std::optional<beast::tcp_stream> plain;
    std::optional<ssl::stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;
    bool connected = false;
    std::uint64_t requests = 0;
    std::chrono::steady_clock::time_point idle_since{};
};

struct endpoint_pool {
    endpoint_url url;
    std::string header_prefix;  // request line + fixed headers, up to Content-Length value
    std::vector<std::shared_ptr<connection>> idle;
    std::size_t busy = 0;
    // Addresses: `literal` for an IP-literal host (never resolved), else the cache, the one
    // resolution running (if any) and the exchanges waiting for it.
    std::vector<tcp::endpoint> literal;
    address_cache addresses;
    std::shared_ptr<resolve_job> resolving;
    std::vector<std::weak_ptr<http_exchange>> waiting;
    bool gzip_refused = false;  // answered 415/400 to a gzipped batch: JSON from then on
};

struct http_pool : std::enable_shared_from_this<http_pool> {
    http_pool(asio::any_io_executor ex, std::string url, http_config h, tls_config t,
              std::shared_ptr<host_resolver> r)
        : executor(std::move(ex))
        , default_url(std::move(url))
        , http(std::move(h))
        , tls(std::move(t))
        , resolver(r ? std::move(r) : std::make_shared<system_host_resolver>()) {
        check_config(http);
        if (http.user_agent.empty())
            http.user_agent = "evdispatch/" + std::string(version());
        // Parse now so that a bad URL fails at construction.
        endpoint_for(default_url);
    }

    // Late answers of resolutions still running must find the jobs cancelled (resolve_job).
    ~http_pool() { abandon_resolutions(); }

    asio::any_io_executor executor;
    std::string default_url;
    http_config http;
    tls_config tls;
    std::shared_ptr<host_resolver> resolver;
    std::unique_ptr<ssl::context> tls_ctx;
    std::map<std::string, endpoint_pool, std::less<>> pools;
    std::vector<std::shared_ptr<connection>> busy_connections;
    bool shut_down = false;

    ssl::context& tls_context() {
        if (!tls_ctx) {
            tls_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
            SSL_CTX_set_min_proto_version(tls_ctx->native_handle(), TLS1_2_VERSION);
            if (tls.insecure_skip_verify) {
                tls_ctx->set_verify_mode(ssl::verify_none);
            } else {
                tls_ctx->set_verify_mode(ssl::verify_peer);
                tls_ctx->set_default_verify_paths();
                if (!tls.ca_file.empty())
                    tls_ctx->load_verify_file(tls.ca_file);
                if (!tls.ca_path.empty())
                    tls_ctx->add_verify_path(tls.ca_path);
            }
        }
        return *tls_ctx;
    }

    endpoint_pool& endpoint_for(std::string_view url) {
        auto it = pools.find(url);
        if (it != pools.end())
            return it->second;
        endpoint_pool p;
        p.url = parse_endpoint_url(url);  // throws invalid_url
        if (p.url.tls) {
            try {
                tls_context();
            } catch (const boost::system::system_error& e) {
                throw boost::system::system_error(
                    make_error_code(error::invalid_config),
                    std::string("TLS setup failed (check tls.ca_file / tls.ca_path): ") + e.what());
            }
        }
        if (p.url.host_is_ip) {
            error_code ec;
            const auto address = asio::ip::make_address(p.url.host, ec);
            if (ec)
                throw boost::system::system_error(
                    make_error_code(error::invalid_url),
                    "invalid endpoint URL \"" + std::string(url) + "\": bad IP address");
            p.literal.emplace_back(address, p.url.port_number);
        }
        p.header_prefix = "POST " + p.url.target + " HTTP/1.1\r\nHost: " + p.url.host_header +
                          "\r\nUser-Agent: " + http.user_agent + "\r\n";
        return pools.emplace(std::string(url), std::move(p)).first->second;
    }

    // Starts the one resolution of `ep` (address_cache::lookup said so). The answer comes
    // back through the job onto our executor, to on_resolved, unless the pool is gone or has
    // shut down by then.
    void start_resolution(endpoint_pool& ep) {
        auto job = std::make_shared<resolve_job>(executor);
        ep.resolving = job;
        std::weak_ptr<http_pool> weak = weak_from_this();
        endpoint_pool* e = &ep;  // std::map nodes never move; used only while the pool lives
        auto deliver = [job, weak, e](error_code ec, std::vector<tcp::endpoint> a) {
            job->post([job, weak, e, ec, a = std::move(a)]() mutable {
                if (auto pool = weak.lock())
                    pool->on_resolved(*e, job, ec, std::move(a));
            });
        };
        try {
            resolver->async_resolve(ep.url.host, ep.url.port, deliver);
        } catch (...) {
            // Reported like any failed resolution, later, on our executor (does nothing if
            // the resolver answered before throwing).
            deliver(asio::error::no_recovery, std::vector<tcp::endpoint>{});
        }
    }

    void on_resolved(endpoint_pool& ep, const std::shared_ptr<resolve_job>& job, error_code ec,
                     std::vector<tcp::endpoint> a);  // after http_exchange

    // shutdown() and the destructor: nothing waits for a running resolution any more, and its
    // answer is dropped whenever it comes.
    void abandon_resolutions() noexcept {
        for (auto& [k, p] : pools) {
            if (!p.resolving)
                continue;
            p.resolving->cancel();
            p.resolving.reset();
            p.addresses.abandon();
        }
    }
};

/// One dispatch: (open: addresses, connect, handshake) -> write -> read, with one transparent
/// retry on a fresh connection when a reused keep-alive connection turns out to be closed by
/// the server.
struct http_exchange : std::enable_shared_from_this<http_exchange> {
    std::shared_ptr<http_pool> pool;
    endpoint_pool* ep = nullptr;  // stable: std::map nodes never move
    std::shared_ptr<connection> conn;
    std::shared_ptr<const log_event> ev;
    asio::any_completion_handler<dispatch_signature> handler;
    std::string header;
    std::optional<http::response_parser<http::string_body>> parser;
    clock::time_point deadline{};  // of opening the connection: addresses, connect, handshake
    std::vector<tcp::endpoint> targets;
    bool waiting_addresses = false;  // listed in ep->waiting, address_timer armed
    asio::steady_timer address_timer;
    dispatch_result result;
    bool reused = false;
    bool stale_retry_done = false;
    bool gzipped = false;  // this attempt sends ev->gzip_body

    const std::string& payload() const noexcept { return gzipped ? ev->gzip_body : ev->body; }

    http_exchange(std::shared_ptr<http_pool> p, endpoint_pool& e,
                  std::shared_ptr<const log_event> r,
                  asio::any_completion_handler<dispatch_signature> h)
        : pool(std::move(p))
        , ep(&e)
        , ev(std::move(r))
        , handler(std::move(h))
        , address_timer(pool->executor) {}

    // After shutdown() nothing new is started: each step checks this first.
    bool stopped() {
        if (!pool->shut_down)
            return false;
        result.message = "dispatcher shut down";
        release(false);
        finish(make_error_code(error::close_deadline));
        return true;
    }

    void start() {
        // The gzip bytes, unless the endpoint refused them once (then never again).
        gzipped = !ev->gzip_body.empty() && !ep->gzip_refused;
        header = ep->header_prefix;
        for (auto& [k, v] : ev->headers) {
            header += k;
            header += ": ";
            header += v;
            header += "\r\n";
        }
        if (gzipped)
            header += "Content-Encoding: gzip\r\n";
        header += "Content-Length: ";
        char buf[24];
        auto r = std::to_chars(buf, buf + sizeof buf, payload().size());
        header.append(buf, r.ptr);
        header += "\r\n\r\n";
        acquire();
    }

    void acquire() {
        const auto now = std::chrono::steady_clock::now();
        const auto idle_limit = pool->http.idle_timeout;
        while (!ep->idle.empty()) {
            conn = std::move(ep->idle.back());
            ep->idle.pop_back();
            // Idle too long: the server (or a NAT on the way) has likely dropped it.
            if (idle_limit.count() > 0 && now - conn->idle_since > idle_limit) {
                conn->close();
                conn.reset();
                continue;
            }
            break;
        }
        if (conn) {
            reused = true;
        } else {
            conn = std::make_shared<connection>(pool->executor,
                                                ep->url.tls ? &pool->tls_context() : nullptr);
            reused = false;
        }
        ++ep->busy;
        pool->busy_connections.push_back(conn);
        if (conn->connected)
            write();
        else
            open();
    }

    void release(bool keep) {
        --ep->busy;
        auto& b = pool->busy_connections;
        b.erase(std::remove(b.begin(), b.end(), conn), b.end());
        const auto max_req = pool->http.max_requests_per_connection;
        if (keep && !pool->shut_down && conn->connected &&
            (max_req == 0 || conn->requests < max_req)) {
            conn->idle_since = std::chrono::steady_clock::now();
            ep->idle.push_back(std::move(conn));
        } else {
            conn->close();
            conn.reset();
        }
    }

    // A new connection. One deadline, connect_timeout from now, covers getting addresses
    // (which may mean waiting for a resolution), the TCP connect and the TLS handshake.
    void open() {
        result.connection_opened = true;
        const auto now = clock::now();
        deadline = now + pool->http.connect_timeout;
        if (ep->url.host_is_ip) {
            targets = ep->literal;
            return connect();
        }
        const auto found = ep->addresses.lookup(now, pool->http.dns_ttl);
        if (found.start_resolution)
            pool->start_resolution(*ep);  // answers later, never inline
        if (found.use) {
            targets = *found.use;
            return connect();
        }
        waiting_addresses = true;
        ep->waiting.push_back(weak_from_this());
        address_timer.expires_at(deadline);
        address_timer.async_wait(
            [self = shared_from_this()](error_code) { self->on_address_deadline(); });
    }

    // The deadline passed while waiting for a resolution, or shutdown() woke us.
    void on_address_deadline() {
        if (!waiting_addresses)
            return;  // on_addresses came first
        waiting_addresses = false;
        std::erase_if(ep->waiting, [this](const std::weak_ptr<http_exchange>& w) {
            const auto x = w.lock();
            return !x || x.get() == this;
        });
        if (stopped())
            return;
        // The resolution goes on; its answer fills the cache for the next connection.
        result.message = "name resolution did not finish within http.connect_timeout";
        fail(make_error_code(error::connect_timeout), {});
    }

    // The resolution we waited for answered (from http_pool::on_resolved).
    void on_addresses(const error_code& ec, const std::vector<tcp::endpoint>& a) {
        if (!waiting_addresses)
            return;  // the deadline came first
        waiting_addresses = false;
        address_timer.cancel();
        if (stopped())
            return;
        if (ec)
            return fail(make_error_code(error::resolve_failed), ec);
        if (clock::now() >= deadline) {  // answered, but too late to start connecting
            result.message = "name resolution took longer than http.connect_timeout";
            return fail(make_error_code(error::connect_timeout), {});
        }
        targets = a;
        connect();
    }

    void connect() {
        auto self = shared_from_this();
        conn->lowest().expires_at(deadline);
        conn->lowest().async_connect(targets, [self](error_code ec, const tcp::endpoint&) {
            if (self->stopped())
                return;
            if (ec) {
                const auto code = ec == beast::error::timeout
                                      ? make_error_code(error::connect_timeout)
                                      : make_error_code(error::connect_failed);
                return self->fail(code, ec);
            }
            error_code ignored;
            self->conn->lowest().socket().set_option(tcp::no_delay(true), ignored);
            if (self->conn->tls)
                self->handshake();
            else {
                self->conn->connected = true;
                self->write();
            }
        });
    }

    void handshake() {
        auto& s = *conn->tls;
        SSL* ssl_handle = s.native_handle();
        const std::string& host = ep->url.host;
        if (!pool->tls.insecure_skip_verify) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (ep->url.host_is_ip)
                X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
            else
                X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
        }
        if (!ep->url.host_is_ip)
            SSL_set_tlsext_host_name(ssl_handle, host.c_str());
        auto self = shared_from_this();
        conn->lowest().expires_at(deadline);  // what is left of connect_timeout
        s.async_handshake(ssl::stream_base::client, [self](error_code ec) {
            if (self->stopped())
                return;
            if (ec) {
                const long vr = SSL_get_verify_result(self->conn->tls->native_handle());
                if (ec == beast::error::timeout)
                    return self->fail(make_error_code(error::connect_timeout), ec);
                if (vr != X509_V_OK) {
                    self->result.message = std::string("certificate verification failed: ") +
                                           X509_verify_cert_error_string(vr);
                    return self->fail(make_error_code(error::tls_verify_failed), ec);
                }
                return self->fail(make_error_code(error::tls_handshake_failed), ec);
            }
            self->conn->connected = true;
            self->write();
        });
    }

    void write() {
        auto self = shared_from_this();
        ++conn->requests;
        conn->lowest().expires_after(pool->http.request_timeout);
        std::array<asio::const_buffer, 2> bufs{asio::buffer(header), asio::buffer(payload())};
        conn->with_stream([&](auto& stream) {
            asio::async_write(stream, bufs, [self](error_code ec, std::size_t n) {
                if (n > 0)
                    self->result.bytes_on_wire = true;
                if (ec)
                    return self->io_failed(ec, false);
                self->result.bytes_sent = n;
                self->read();
            });
        });
    }

    void read() {
        auto self = shared_from_this();
        parser.emplace();
        parser->body_limit(pool->http.max_response_bytes);
        parser->header_limit(static_cast<std::uint32_t>(
            std::min<std::size_t>(pool->http.max_response_bytes, 16 * 1024)));
        conn->with_stream([&](auto& stream) {
            http::async_read(stream, conn->buffer, *parser, [self](error_code ec, std::size_t) {
                if (ec)
                    return self->io_failed(ec, self->parser->got_some());
                self->done();
            });
        });
    }

    void io_failed(error_code ec, bool got_response_bytes) {
        if (reused && !stale_retry_done && !got_response_bytes && is_stale_error(ec) &&
            !pool->shut_down) {
            // The server closed this idle keep-alive connection: retry once on a fresh one.
            stale_retry_done = true;
            conn->close();
            release(false);
            result.bytes_on_wire = false;
            conn = std::make_shared<connection>(pool->executor,
                                                ep->url.tls ? &pool->tls_context() : nullptr);
            reused = false;
            ++ep->busy;
            pool->busy_connections.push_back(conn);
            open();
            return;
        }
        error_code code;
        if (ec == beast::error::timeout)
            code = make_error_code(error::request_timeout);
        else if (ec == http::error::body_limit || ec == http::error::header_limit ||
                 ec == http::error::buffer_overflow)
            code = make_error_code(error::response_too_large);
        else if (ec.category() == make_error_code(http::error::end_of_stream).category() &&
                 ec != http::error::end_of_stream)
            code = make_error_code(error::bad_response);
        else if (ec == asio::error::operation_aborted && pool->shut_down)
            code = make_error_code(error::close_deadline);
        else
            code = make_error_code(error::connection_lost);
        fail(code, ec);
    }

    void fail(error_code code, error_code cause) {
        if (result.message.empty())
            result.message = cause.message();
        if (code == error::connect_failed || code == error::resolve_failed ||
            code == error::connect_timeout)
            result.message = ep->url.host + ":" + ep->url.port + ": " + result.message;
        release(false);
        finish(code);
    }

    void done() {
        auto& res = parser->get();
        result.status = res.result_int();
        const bool ok = result.status >= 200 && result.status < 300;
        if (!ok) {
            if (auto it = res.find(http::field::retry_after); it != res.end())
                result.retry_after =
                    parse_retry_after(std::string_view(it->value().data(), it->value().size()),
                                      std::chrono::system_clock::now());
            result.message = std::string(res.reason());
            const auto& body = res.body();
            if (!body.empty())
                result.message += ": " + body.substr(0, std::min<std::size_t>(body.size(), 200));
            // One line for logs and hooks: the body's line breaks and control bytes become
            // spaces, trailing ones go.
            for (auto& c : result.message)
                if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                    c = ' ';
            while (!result.message.empty() && result.message.back() == ' ')
                result.message.pop_back();
        }
        conn->buffer.consume(conn->buffer.size());
        release(res.keep_alive());
        if (gzipped && (result.status == 415 || result.status == 400) && !pool->shut_down) {
            // The endpoint does not take gzip: this batch again as JSON, at once, on a
            // connection of the pool, and every later one to this endpoint as JSON too.
            ep->gzip_refused = true;
            const bool opened = result.connection_opened;
            result = {};
            result.connection_opened = opened;
            result.compression_refused = true;
            conn.reset();
            reused = false;
            stale_retry_done = false;
            start();
            return;
        }
        finish(ok ? error_code{} : make_error_code(error::http_status));
    }

    void finish(error_code ec) {
        auto h = std::move(handler);
        std::move(h)(ec, std::move(result));
    }
};

void http_pool::on_resolved(endpoint_pool& ep, const std::shared_ptr<resolve_job>& job,
                            error_code ec, std::vector<tcp::endpoint> a) {
    if (ep.resolving != job)
        return;  // abandoned at shutdown, answered just before
    ep.resolving.reset();
    if (!ec && a.empty())
        ec = asio::error::host_not_found;
    ep.addresses.resolved(ec, a, clock::now());
    auto waiting = std::exchange(ep.waiting, {});
    for (auto& w : waiting)
        if (auto x = w.lock())
            x->on_addresses(ec, a);
}

}  // namespace detail

http_event_dispatcher::http_event_dispatcher(asio::any_io_executor ex, std::string url,
                                             http_config http, tls_config tls,
                                             std::shared_ptr<host_resolver> resolver)
    : pool_(std::make_shared<detail::http_pool>(std::move(ex), std::move(url), std::move(http),
                                                std::move(tls), std::move(resolver))) {}

http_event_dispatcher::~http_event_dispatcher() = default;

void http_event_dispatcher::async_dispatch(
    std::shared_ptr<const log_event> ev, asio::any_completion_handler<dispatch_signature> handler) {
    if (pool_->shut_down) {
        dispatch_result r;
        r.message = "dispatcher shut down";
        std::move(handler)(make_error_code(error::close_deadline), std::move(r));
        return;
    }
    detail::endpoint_pool* ep = nullptr;
    try {
        ep = &pool_->endpoint_for(ev->url.empty() ? pool_->default_url : ev->url);
    } catch (const boost::system::system_error& e) {
        dispatch_result r;
        r.message = e.what();
        std::move(handler)(e.code(), std::move(r));
        return;
    }
    auto x = std::make_shared<detail::http_exchange>(pool_, *ep, std::move(ev), std::move(handler));
    x->start();
}

std::size_t http_event_dispatcher::max_in_flight() const noexcept {
    return pool_->http.max_connections;
}

void http_event_dispatcher::shutdown() noexcept {
    pool_->shut_down = true;
    pool_->abandon_resolutions();
    for (auto& [k, p] : pool_->pools) {
        for (auto& c : p.idle)
            c->close();
        p.idle.clear();
        // Exchanges waiting for addresses: wake them; they complete with close_deadline.
        for (auto& w : p.waiting)
            if (auto x = w.lock())
                x->address_timer.cancel();
    }
    // Busy connections: closing the socket aborts their operations; each exchange then
    // completes its handler with an error.
    for (auto& c : pool_->busy_connections)
        c->close();
}

}  // namespace evdispatch
