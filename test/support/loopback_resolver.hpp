#pragma once

// A host_resolver for tests: every name is 127.0.0.1, answered at once. Tests that send to
// https://localhost:PORT (the certificates name "localhost") use it so that they never wait
// for the machine's hosts file or DNS server; host name verification still checks the name in
// the URL.

#include <evdispatch/host_resolver.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace evdispatch::test {

/// Answers every query (any host name) with 127.0.0.1 and the query's port, from the calling
/// thread, inside async_resolve. A port that is not a number 1-65535 fails with
/// asio::error::invalid_argument. Thread-safe: one instance may serve several dispatchers.
class loopback_resolver final : public host_resolver {
public:
    void async_resolve(std::string host, std::string port,
                       boost::asio::any_completion_handler<resolve_signature> handler) override;

    /// Queries answered so far (a test checks that its names went through this resolver).
    std::size_t calls() const noexcept { return calls_.load(); }
    /// The host names asked, in order.
    std::vector<std::string> hosts() const;

private:
    std::atomic<std::size_t> calls_{0};
    mutable std::mutex mu_;
    std::vector<std::string> hosts_;
};

}  // namespace evdispatch::test
