#pragma once

// The blocking HTTP(S) client of the sync baselines of `evdispatch bench`: what a synchronous
// SDK dispatcher does, one POST at a time on the calling thread. It speaks TLS as
// http_event_dispatcher does (TLS 1.2 minimum, peer and host name verification, SNI, the
// system store plus an extra CA file) and bounds every step by a timeout, so a receiver that is
// down or blackholed costs a failure, never a hang or an exception.

#include <evdispatch/endpoint_url.hpp>

#include <evdispatch/retry_policy.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace evdispatch::test {

struct sync_client_config {
    endpoint_url url;  ///< Where to POST (parse_endpoint_url).
    /// Keep the connection for the next request; false: a new connection per request (the
    /// client closes it after the response). Default false.
    bool keep_alive = false;
    /// Resolve + TCP connect + TLS handshake. Default 5 s (as http_config).
    std::chrono::milliseconds connect_timeout{5'000};
    /// Writing the request and reading the whole response. Default 10 s (as http_config).
    std::chrono::milliseconds request_timeout{10'000};
    /// Largest response (headers + body) read. Default 64 KiB (as http_config).
    std::size_t max_response_bytes = 64 * 1024;
};

/// The TLS client context sync clients share (an SSL_CTX may make streams on several threads
/// at once): TLS 1.2 minimum, verify_peer against the system store and `ca_file` (if not
/// empty). Throws boost::system::system_error when ca_file cannot be loaded.
std::unique_ptr<boost::asio::ssl::context> make_sync_tls_context(const std::string& ca_file);

/// One connection at a time, used by one thread. The client owns its io_context (declared
/// first, so it outlives the sockets that use it); create and destroy it on the thread that
/// uses it. Each step runs the io_context until the step completes or its deadline passes,
/// then closes the socket, which completes the step at once. Exception: name resolution runs
/// getaddrinfo, which cannot be interrupted; a resolver that hangs delays the failure until
/// getaddrinfo returns.
class sync_client {
public:
    /// `tls` must outlive the client; it is needed for an https URL (else TLS steps fail with
    /// tls_handshake_failed).
    sync_client(sync_client_config cfg, boost::asio::ssl::context* tls);
    ~sync_client();
    sync_client(const sync_client&) = delete;
    sync_client& operator=(const sync_client&) = delete;

    /// POSTs `body` (application/json), connecting first if needed. Never throws for network
    /// reasons. outcome.ec is empty when a response arrived (outcome.status holds its status)
    /// or one of evdispatch::error resolve_failed, connect_failed, connect_timeout,
    /// tls_handshake_failed, tls_verify_failed, request_timeout, connection_lost,
    /// response_too_large, bad_response. retry_policy::classify() gives the drop reason.
    attempt_outcome post(std::string body);

    /// Whether the last post() failed before a connection was established (connect phase).
    bool last_failure_was_connect() const noexcept { return connect_failure_; }
    /// What went wrong in the last failed post(), for a diagnostic line.
    const std::string& last_error() const noexcept { return last_error_; }
    /// Connections established (TCP connected and, for TLS, handshake done).
    std::uint64_t connections_opened() const noexcept { return connections_opened_; }

private:
    using tcp = boost::asio::ip::tcp;

    boost::system::error_code connect();
    template <class Start>
    boost::system::error_code run_step(std::chrono::milliseconds timeout, Start start);
    void close() noexcept;
    tcp::socket& socket();
    boost::system::error_code fail(boost::system::error_code code, std::string what);

    boost::asio::io_context io_{1};  // first: destroyed after everything that uses it
    sync_client_config cfg_;
    boost::asio::ssl::context* tls_ctx_;
    tcp::resolver resolver_{io_};
    std::optional<tcp::socket> plain_;
    std::optional<boost::asio::ssl::stream<tcp::socket>> tls_;
    boost::beast::flat_buffer buffer_;
    bool connected_ = false;
    bool connect_failure_ = false;
    std::string last_error_;
    std::uint64_t connections_opened_ = 0;
};

}  // namespace evdispatch::test
