#include "support/sync_client.hpp"

#include <evdispatch/error.hpp>
#include <evdispatch/event.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>

namespace evdispatch::test {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;
using std::chrono::milliseconds;

namespace {

// The server closed an idle keep-alive connection: worth one retry on a new connection.
bool is_stale_error(const error_code& ec) {
    return ec == asio::error::eof || ec == http::error::end_of_stream ||
           ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
           ec == asio::error::connection_aborted || ec == ssl::error::stream_truncated;
}

// Marks a step that did not finish before its deadline (run_step's own result).
const error_code step_timed_out = asio::error::timed_out;

}  // namespace

std::unique_ptr<ssl::context> make_sync_tls_context(const std::string& ca_file) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    ctx->set_verify_mode(ssl::verify_peer);
    ctx->set_default_verify_paths();
    if (!ca_file.empty())
        ctx->load_verify_file(ca_file);
    return ctx;
}

sync_client::sync_client(sync_client_config cfg, ssl::context* tls)
    : cfg_(std::move(cfg)), tls_ctx_(tls) {}

sync_client::~sync_client() {
    close();
}

asio::ip::tcp::socket& sync_client::socket() {
    return tls_ ? tls_->next_layer() : *plain_;
}

void sync_client::close() noexcept {
    // Only closes: a pending operation still refers to the stream objects, which are
    // replaced at the next connect().
    error_code ignored;
    if (tls_ || plain_) {
        socket().shutdown(tcp::socket::shutdown_both, ignored);
        socket().close(ignored);
    }
    connected_ = false;
}

error_code sync_client::fail(error_code code, std::string what) {
    last_error_ = std::move(what);
    return code;
}

// Starts one asynchronous step with a `done(error_code)` callback and runs the io_context
// until it completes or `timeout` passes. On timeout, closing the socket and cancelling the
// resolver make the step complete (with operation_aborted) and the io_context drains, so no
// handler is left referring to this frame.
template <class Start>
error_code sync_client::run_step(milliseconds timeout, Start start) {
    std::optional<error_code> result;
    start([&result](error_code ec) { result = ec; });
    io_.restart();
    io_.run_for(timeout);
    if (result)
        return *result;
    resolver_.cancel();
    close();
    io_.restart();
    io_.run();
    return step_timed_out;
}

error_code sync_client::connect() {
    close();
    buffer_.clear();
    const auto deadline = std::chrono::steady_clock::now() + cfg_.connect_timeout;
    auto left = [&] {
        return std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                             deadline - std::chrono::steady_clock::now()));
    };
    const auto& url = cfg_.url;
    const std::string where = url.host + ":" + url.port + ": ";

    tcp::resolver::results_type endpoints;
    error_code ec = run_step(left(), [&](auto done) {
        resolver_.async_resolve(url.host, url.port,
                                [&endpoints, done](error_code e, tcp::resolver::results_type r) {
                                    endpoints = std::move(r);
                                    done(e);
                                });
    });
    if (ec == step_timed_out)
        return fail(make_error_code(error::connect_timeout), where + "name resolution timed out");
    if (ec)
        return fail(make_error_code(error::resolve_failed), where + ec.message());

    if (url.tls) {
        if (!tls_ctx_)
            return fail(make_error_code(error::tls_handshake_failed), "no TLS context");
        plain_.reset();
        tls_.emplace(io_, *tls_ctx_);
    } else {
        tls_.reset();
        plain_.emplace(io_);
    }
    ec = run_step(left(), [&](auto done) {
        asio::async_connect(socket(), endpoints,
                            [done](error_code e, const tcp::endpoint&) { done(e); });
    });
    if (ec == step_timed_out)
        return fail(make_error_code(error::connect_timeout), where + "connect timed out");
    if (ec)
        return fail(make_error_code(error::connect_failed), where + ec.message());
    error_code ignored;
    socket().set_option(tcp::no_delay(true), ignored);

    if (tls_) {
        // As http_event_dispatcher: the certificate must name the host (DNS name or IP
        // address); SNI for names only.
        SSL* handle = tls_->native_handle();
        X509_VERIFY_PARAM* param = SSL_get0_param(handle);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (url.host_is_ip) {
            X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str());
        } else {
            X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size());
            SSL_set_tlsext_host_name(handle, url.host.c_str());
        }
        ec = run_step(left(), [&](auto done) {
            tls_->async_handshake(ssl::stream_base::client, [done](error_code e) { done(e); });
        });
        if (ec == step_timed_out)
            return fail(make_error_code(error::connect_timeout), where + "TLS handshake timed out");
        if (ec) {
            const long vr = SSL_get_verify_result(handle);
            if (vr != X509_V_OK)
                return fail(make_error_code(error::tls_verify_failed),
                            where + "certificate verification failed: " +
                                X509_verify_cert_error_string(vr));
            return fail(make_error_code(error::tls_handshake_failed),
                        where + "TLS handshake failed: " + ec.message());
        }
    }
    connected_ = true;
    ++connections_opened_;
    return {};
}

attempt_outcome sync_client::post(std::string body) {
    connect_failure_ = false;
    last_error_.clear();
    http::request<http::string_body> req{http::verb::post, cfg_.url.target, 11};
    req.set(http::field::host, cfg_.url.host_header);
    req.set(http::field::user_agent, "evdispatch/" + std::string(version()));
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();

    for (bool retried = false;; retried = true) {
        const bool reused = connected_;
        if (!connected_) {
            if (error_code ec = connect()) {
                connect_failure_ = true;
                close();
                return {ec};
            }
        }
        http::response_parser<http::string_body> parser;
        parser.body_limit(cfg_.max_response_bytes);
        parser.header_limit(
            static_cast<std::uint32_t>(std::min<std::size_t>(cfg_.max_response_bytes, 16 * 1024)));
        error_code ec = run_step(cfg_.request_timeout, [&](auto done) {
            auto on_written = [this, &parser, done](error_code e, std::size_t) {
                if (e)
                    return done(e);
                auto read = [&](auto& stream) {
                    http::async_read(stream, buffer_, parser,
                                     [done](error_code e2, std::size_t) { done(e2); });
                };
                if (tls_)
                    read(*tls_);
                else
                    read(*plain_);
            };
            if (tls_)
                http::async_write(*tls_, req, on_written);
            else
                http::async_write(*plain_, req, on_written);
        });
        if (!ec) {
            const auto& res = parser.get();
            if (!cfg_.keep_alive || !res.keep_alive())
                close();
            attempt_outcome out;
            out.status = res.result_int();
            if (out.status < 200 || out.status >= 300)
                last_error_ = std::to_string(out.status) + " " + std::string(res.reason());
            return out;
        }
        close();
        if (reused && !retried && !parser.got_some() && is_stale_error(ec))
            continue;  // the server closed the idle connection: once more on a new one
        error code;
        if (ec == step_timed_out)
            code = error::request_timeout;
        else if (ec == http::error::body_limit || ec == http::error::header_limit ||
                 ec == http::error::buffer_overflow)
            code = error::response_too_large;
        else if (ec.category() == make_error_code(http::error::end_of_stream).category() &&
                 ec != http::error::end_of_stream)
            code = error::bad_response;
        else
            code = error::connection_lost;
        last_error_ = cfg_.url.host + ":" + cfg_.url.port + ": " +
                      (ec == step_timed_out ? std::string("request timed out") : ec.message());
        return {make_error_code(code)};
    }
}

}  // namespace evdispatch::test
