#pragma once

// address_cache: the resolved addresses of one endpoint host and when to resolve again.
// A pure state machine (no I/O, no clock of its own): the HTTP pool feeds it the time.

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <vector>

namespace evdispatch::detail {

class address_cache {
public:
    using clock = std::chrono::steady_clock;
    using addresses = std::vector<boost::asio::ip::tcp::endpoint>;

    struct lookup_result {
        const addresses* use = nullptr;  // connect to these now; null: wait for the resolution
        bool start_resolution = false;   // the caller must start one (none is running)
    };

    // What a new connection does at `now` with time-to-live `ttl` (0: nothing is reused).
    // Fresh addresses are used as they are. Stale ones are used too, while a refresh runs in
    // the background. Without usable addresses the connection waits for a resolution. At most
    // one resolution runs at a time: a lookup that asks to start one marks it running.
    lookup_result lookup(clock::time_point now, std::chrono::milliseconds ttl) {
        lookup_result r;
        const bool usable = !addrs_.empty() && ttl.count() > 0;
        const bool fresh = usable && now - resolved_at_ < ttl;
        if (usable)
            r.use = &addrs_;
        if (!fresh && !resolving_)
            r.start_resolution = resolving_ = true;
        return r;
    }

    // The running resolution answered. Addresses replace the entry; a failure keeps the old
    // addresses (still stale: the next lookup tries again).
    void resolved(const boost::system::error_code& ec, const addresses& a, clock::time_point now) {
        resolving_ = false;
        if (ec || a.empty())
            return;
        addrs_ = a;
        resolved_at_ = now;
    }

    // The running resolution will never be reported (the pool shut down).
    void abandon() noexcept { resolving_ = false; }

    bool resolving() const noexcept { return resolving_; }
    const addresses& current() const noexcept { return addrs_; }

private:
    addresses addrs_;
    clock::time_point resolved_at_{};
    bool resolving_ = false;
};

}  // namespace evdispatch::detail
