#pragma once

// The collector tests' HTTP client: blocking, one connection, plain or TLS with peer and host
// name verification, raw writes for malformed or pipelined requests. It reports what it saw
// (status, body, keep-alive, Retry-After, the error that ended an operation) and asserts
// nothing, so a test can expect failures. (The benchmark's synchronous baseline is another
// client: sync_client.hpp.)

#include <boost/beast/http/verb.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace evdispatch::test {

/// A batch body the collector accepts: `visitors` visitors with one event each, with the uuids
/// first_uuid, first_uuid + 1, ... (so that tests choose which events are duplicates).
std::string make_batch(unsigned visitors, unsigned first_uuid);

/// A response as http_client read it.
struct reply {
    unsigned status = 0;  ///< 0: no response (http_client::error() says why).
    std::string body;
    bool keep_alive = false;
    std::optional<std::string> retry_after;  ///< The Retry-After header, if sent.
};

/// TLS settings of a client: trust `ca_file` only, and verify the peer's certificate for
/// `host` (a DNS name, also sent as SNI, or an IP literal).
struct tls_options {
    std::string ca_file;
    std::string host = "localhost";
};

/// A blocking HTTP/1.1 client on one connection to 127.0.0.1:`port`. Each operation runs the
/// client's own io_context until it completes or `timeout` passes (then error() is
/// beast::error::timeout). After a failed operation the others do nothing: error() keeps the
/// first error. Use it on one thread.
class http_client {
public:
    /// Connects (and for `tls`, completes the handshake); error() says whether it worked.
    explicit http_client(unsigned short port, std::optional<tls_options> tls = std::nullopt,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~http_client();
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    /// The error that ended the last failed step (empty while everything worked).
    boost::system::error_code error() const noexcept;
    /// The bound of each following operation.
    void set_timeout(std::chrono::milliseconds t) noexcept;

    /// A TLS client's peer verification result (X509_V_OK when verified); -1 for a plain
    /// client.
    long verify_result() const;

    /// Sends one request and reads its response; on failure returns status 0 and sets error().
    /// The Host header names tls_options::host, or 127.0.0.1 for a plain client.
    reply request(boost::beast::http::verb verb, const std::string& target,
                  const std::string& body = {}, bool keep_alive = true);
    /// request(post, "/v1/events", body).
    reply post(const std::string& body);
    /// Sends a request without reading its response (read() reads it).
    void send(boost::beast::http::verb verb, const std::string& target, const std::string& body,
              bool keep_alive = true);
    /// Writes raw bytes (pipelined, partial or malformed requests).
    void send_raw(const std::string& bytes);
    /// Reads one response; on failure returns status 0 and sets error().
    reply read();
    /// Reads until the server closes; returns the error that ended the read (eof: a clean
    /// close) without changing error().
    boost::system::error_code read_until_closed();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace evdispatch::test
