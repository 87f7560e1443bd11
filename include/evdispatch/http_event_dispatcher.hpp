#pragma once

/// @file http_event_dispatcher.hpp
/// The default event_dispatcher: HTTP/1.1 (and HTTPS) over a pool of keep-alive connections.

#include <evdispatch/config.hpp>
#include <evdispatch/event_dispatcher.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <string>

namespace evdispatch {

class host_resolver;

namespace detail {
struct http_pool;
}

/// Sends batches with Beast over up to `http.max_connections` keep-alive connections to one
/// endpoint, at most one request in flight per connection. Opens a connection (name
/// resolution, TCP connect, TLS handshake) within one `connect_timeout` deadline, bounds each
/// exchange by `request_timeout` and each response by `max_response_bytes`; any 2xx is
/// success. A kept-alive connection that the server closed while idle is replaced and the
/// request re-sent once on a fresh connection.
///
/// Host names are resolved through a host_resolver (default: system_host_resolver) and the
/// addresses cached for `http.dns_ttl`; see host_resolver.hpp and docs/delivery.md.
///
/// Threads: every member must be called from `ex`, which must be a strand or a single-threaded
/// executor (batch_event_processor passes its strand). Completion handlers are invoked from
/// `ex`.
/// Lifetime: call shutdown(), or destroy the dispatcher and let its handlers run out, before
/// the execution context of `ex` is destroyed (as for any Asio I/O object). A resolution
/// still running then is abandoned: its answer is dropped whenever it comes.
class http_event_dispatcher final : public event_dispatcher {
public:
    /// `resolver` resolves host names; null (the default): a system_host_resolver.
    /// Throws boost::system::system_error (error::invalid_url / invalid_config) with a
    /// message naming the problem.
    http_event_dispatcher(boost::asio::any_io_executor ex, std::string url, http_config http = {},
                          tls_config tls = {}, std::shared_ptr<host_resolver> resolver = nullptr);
    ~http_event_dispatcher() override;

    void async_dispatch(std::shared_ptr<const log_event> ev,
                        boost::asio::any_completion_handler<dispatch_signature> handler) override;
    std::size_t max_in_flight() const noexcept override;
    void shutdown() noexcept override;

private:
    std::shared_ptr<detail::http_pool> pool_;
};

}  // namespace evdispatch
