#include "support/http_client.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cstdio>

namespace evdispatch::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

std::string make_batch(unsigned visitors, unsigned first_uuid) {
    std::string body =
        R"({"account_id":"1","project_id":"2","revision":"3","client_name":"test",)"
        R"("client_version":"1","anonymize_ip":true,"enrich_decisions":true,"visitors":[)";
    for (unsigned i = 0; i < visitors; ++i) {
        char uuid[40];
        std::snprintf(uuid, sizeof uuid, "6a4c2f10-0000-4000-8000-%012x", first_uuid + i);
        if (i != 0)
            body += ',';
        body += R"({"visitor_id":"v)" + std::to_string(i) +
                R"(","attributes":[],"snapshots":[{"events":[{"entity_id":"9","key":"buy",)"
                R"("uuid":")" +
                uuid + R"(","timestamp":1700000000000}]}]})";
    }
    body += "]}";
    return body;
}

struct http_client::impl {
    explicit impl(std::chrono::milliseconds t) : timeout(t) {}

    beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

    template <class F>
    void with_stream(F&& f) {
        if (tls)
            f(*tls);
        else
            f(*plain);
    }

    // Starts one operation and runs the io_context until it completes; tcp_stream's timer
    // bounds it (and then completes it with beast::error::timeout).
    template <class Start>
    error_code run(Start start) {
        error_code result = asio::error::timed_out;
        bool completed = false;
        lowest().expires_after(timeout);
        start([&](error_code e) {
            result = e;
            completed = true;
        });
        io.restart();
        io.run();
        return completed ? result : error_code(asio::error::timed_out);
    }

    std::chrono::milliseconds timeout;
    std::string host = "127.0.0.1";  // of the Host header
    asio::io_context io;             // before the streams: outlives them
    std::optional<ssl::context> tls_ctx;
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;
    error_code ec;
};

http_client::http_client(unsigned short port, std::optional<tls_options> tls,
                         std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>(timeout)) {
    impl& m = *impl_;
    if (tls) {
        m.host = tls->host;
        m.tls_ctx.emplace(ssl::context::tls_client);
        m.tls_ctx->load_verify_file(tls->ca_file);
        m.tls_ctx->set_verify_mode(ssl::verify_peer);
        m.tls.emplace(m.io, *m.tls_ctx);
        SSL* h = m.tls->native_handle();
        error_code not_ip;
        asio::ip::make_address(tls->host, not_ip);
        if (not_ip) {
            SSL_set_tlsext_host_name(h, tls->host.c_str());
            SSL_set1_host(h, tls->host.c_str());
        } else {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(h), tls->host.c_str());
        }
    } else {
        m.plain.emplace(m.io);
    }
    m.ec = m.run([&](auto done) {
        m.lowest().async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                 [done](error_code e) { done(e); });
    });
    if (!m.ec && m.tls) {
        m.ec = m.run([&](auto done) {
            m.tls->async_handshake(ssl::stream_base::client, [done](error_code e) { done(e); });
        });
    }
}

http_client::~http_client() = default;

error_code http_client::error() const noexcept {
    return impl_->ec;
}

void http_client::set_timeout(std::chrono::milliseconds t) noexcept {
    impl_->timeout = t;
}

long http_client::verify_result() const {
    return impl_->tls ? SSL_get_verify_result(impl_->tls->native_handle()) : -1;
}

reply http_client::request(http::verb verb, const std::string& target, const std::string& body,
                           bool keep_alive) {
    send(verb, target, body, keep_alive);
    return read();
}

reply http_client::post(const std::string& body) {
    return request(http::verb::post, "/v1/events", body);
}

void http_client::send(http::verb verb, const std::string& target, const std::string& body,
                       bool keep_alive) {
    impl& m = *impl_;
    if (m.ec)
        return;
    http::request<http::string_body> req(verb, target, 11);
    req.set(http::field::host, m.host);
    if (verb == http::verb::post)
        req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.keep_alive(keep_alive);
    req.prepare_payload();
    m.ec = m.run([&](auto done) {
        m.with_stream([&](auto& s) {
            http::async_write(s, req, [done](error_code e, std::size_t) { done(e); });
        });
    });
}

void http_client::send_raw(const std::string& bytes) {
    impl& m = *impl_;
    if (m.ec)
        return;
    m.ec = m.run([&](auto done) {
        m.with_stream([&](auto& s) {
            asio::async_write(s, asio::buffer(bytes),
                              [done](error_code e, std::size_t) { done(e); });
        });
    });
}

reply http_client::read() {
    impl& m = *impl_;
    if (m.ec)
        return {};
    http::response<http::string_body> res;
    m.ec = m.run([&](auto done) {
        m.with_stream([&](auto& s) {
            http::async_read(s, m.buffer, res, [done](error_code e, std::size_t) { done(e); });
        });
    });
    if (m.ec)
        return {};
    reply r{res.result_int(), res.body(), res.keep_alive(), std::nullopt};
    if (auto it = res.find(http::field::retry_after); it != res.end())
        r.retry_after = std::string(it->value());
    return r;
}

error_code http_client::read_until_closed() {
    impl& m = *impl_;
    char byte;
    return m.run([&](auto done) {
        m.with_stream([&](auto& s) {
            s.async_read_some(asio::buffer(&byte, 1),
                              [done](error_code e, std::size_t) { done(e); });
        });
    });
}

}  // namespace evdispatch::test
