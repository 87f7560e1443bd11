#pragma once

/// @file host_resolver.hpp
/// Name resolution for http_event_dispatcher: the interface it resolves endpoint host names
/// through, and the default implementation.

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include <string>
#include <vector>

namespace evdispatch {

/// Completion signature of host_resolver::async_resolve: the error (empty on success) and the
/// addresses to connect to, in the order to try them (not empty on success).
using resolve_signature = void(boost::system::error_code,
                               std::vector<boost::asio::ip::tcp::endpoint>);

/// Turns an endpoint's host name into addresses.
///
/// http_event_dispatcher asks it when a new connection needs addresses and its cache (see
/// http_config::dns_ttl) has none, or has stale ones (then it refreshes them in the background
/// and keeps using the old ones meanwhile). It runs at most one resolution per endpoint at a
/// time; connections that need addresses while one runs wait for it, each until its own
/// connect deadline (http_config::connect_timeout). IP-literal hosts are never resolved.
///
/// Implement it to resolve another way (an asynchronous DNS library, a service registry, a
/// fixed table in tests); the default is system_host_resolver.
///
/// Threads: async_resolve is called from the dispatcher's executor. A resolver shared by
/// several dispatchers is called from each of their executors, so it must then be thread-safe.
class host_resolver {
public:
    virtual ~host_resolver() = default;

    /// Starts resolving `host` (a name, not an IP literal) for TCP port `port` (decimal,
    /// 1-65535).
    ///
    /// The handler must be invoked exactly once or never, from any thread, at any time (also
    /// from inside this call). The dispatcher moves the result onto its own executor while it
    /// is alive and not shut down, and drops it otherwise: answering late, after the connect
    /// deadline, after shutdown() or after the dispatcher and its io_context are gone, is safe.
    /// A resolution that is never answered leaves its endpoint without fresh addresses (new
    /// connections that have none to use time out) for the dispatcher's life. An exception
    /// thrown from this call counts as a failed resolution (error::resolve_failed).
    virtual void async_resolve(std::string host, std::string port,
                               boost::asio::any_completion_handler<resolve_signature> handler) = 0;
};

/// The default resolver: the system's `getaddrinfo` (hosts file, DNS... as the system is
/// configured), called on a new detached thread for each resolution.
///
/// It does not use Asio's resolver, whose single background thread runs the lookups one after
/// the other and is joined when its io_context is destroyed: one lookup stuck on an
/// unresponsive DNS server would then delay every other lookup and hang the destruction.
/// `getaddrinfo` cannot be interrupted, so a stuck lookup keeps its thread until the system
/// resolver gives up (resolv.conf `timeout` x `attempts`, per server). Nothing waits for that
/// thread: the dispatcher's connect deadline fails the exchange, and destruction never joins
/// it. Since the dispatcher runs at most one resolution per endpoint, a stuck DNS costs at
/// most one thread per endpoint.
///
/// Thread-safe and stateless: one instance may serve any number of dispatchers.
class system_host_resolver final : public host_resolver {
public:
    /// Answers from the new thread (or, if no thread can be started, from inside this call
    /// with `resource_unavailable_try_again`). Errors: Asio's netdb errors
    /// (`host_not_found`, `host_not_found_try_again`, `no_recovery`, ...) or a system error.
    void async_resolve(std::string host, std::string port,
                       boost::asio::any_completion_handler<resolve_signature> handler) override;
};

}  // namespace evdispatch
