#pragma once

// What the connections of one collector share: configuration, counters, the de-duplication
// set, kept bodies, the live sessions, the faults and their progress, the outage clock.
//
// Ownership: sessions and the listener hold it by shared_ptr; it holds nothing of theirs but
// weak pointers (sessions) and a hook to the listener that holds one (on_outage), so handlers
// still queued when collector::impl dies are harmless.

#include <evdispatch/collector/collector.hpp>

#include "collector/faults.hpp"
#include "collector/uuid_set.hpp"

#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace evdispatch::detail {

// A session that can be closed from stop(), pause_listening() or an outage.
class session_base {
public:
    virtual ~session_base() = default;
    // Closes the socket and cancels timers. Called on the session's strand, or when no server
    // thread runs.
    virtual void close_now() noexcept = 0;
    // Runs close_now() on the session's strand, then `done`.
    virtual void post_close(std::function<void()> done) = 0;
};

class server_state {
public:
    // Begins an outage of `length` on the listener's strand, then calls `then` there (also
    // when the outage does not begin). Set once by collector::impl before the server threads
    // start, then read-only. `generation` is the faults' (an outage of faults replaced
    // meanwhile does not begin); `spare` is the session that answers the request that began
    // it (it closes after its response).
    using outage_hook =
        std::function<void(std::chrono::milliseconds length, std::uint64_t generation,
                           std::weak_ptr<session_base> spare, std::function<void()> then)>;

    explicit server_state(const collector_config& c) : cfg(c), delay_ms(c.delay.count()) {}

    const collector_config cfg;
    std::optional<boost::asio::ssl::context> tls;  // set before the threads start, then read-only
    std::atomic<std::int64_t> delay_ms;
    std::atomic<bool> stopped{false};
    // Bumped (under sessions_mutex) by pause_listening() and outages: a session accepted in an
    // older epoch that registers late closes itself instead.
    std::atomic<std::uint64_t> epoch{0};
    outage_hook on_outage;

    // Counters: relaxed, each is monotonic on its own; they are updated before the response
    // is written (or the connection closed), so a client that sees the outcome sees them.
    std::atomic<std::uint64_t> connections{0}, requests{0}, batches{0}, events{0}, unique_events{0},
        duplicates{0}, rejected{0}, bytes{0}, failed_batches{0}, failed_events{0}, stalled{0},
        resets{0}, dropped_responses{0}, fault_closes{0}, tls_handshakes{0},
        tls_handshake_failures{0}, gzip_batches{0}, gzip_bytes{0};

    std::mutex bodies_mutex;
    std::vector<std::string> bodies;  // guarded by bodies_mutex

    std::mutex sessions_mutex;
    std::list<std::weak_ptr<session_base>> sessions;  // guarded by sessions_mutex

    // Replaces the faults and restarts their progress; returns their generation.
    std::uint64_t set_faults(collector_faults f);
    collector_faults faults() const;

    // False when the faults inject nothing (also once the script has run out and nothing else
    // is set): the session then skips decide() and never takes the fault mutex.
    bool faults_active() const noexcept { return faults_on_.load(std::memory_order_acquire); }

    // detail::decide() on the faults in force, under the fault mutex; `generation` receives
    // theirs. When the plan begins an outage, the caller passes it on to begin_outage().
    response_plan decide(const request_info& r, std::uint64_t& generation);

    // Asks the listener (on_outage) to begin an outage, then to call `then`.
    void begin_outage(std::chrono::milliseconds length, std::uint64_t generation,
                      std::weak_ptr<session_base> spare, std::function<void()> then) const {
        on_outage(length, generation, std::move(spare), std::move(then));
    }

    // Whether faults of `generation` are still in force, for an outage about to begin.
    bool faults_current(std::uint64_t generation) const;
    // Outage clock, called by the listener on its strand.
    void outage_began();
    // Ends the outage clock; if `generation` is still in force, requests are decided again.
    void outage_ended(std::uint64_t generation);

    collector_stats snapshot() const;

    // Counts an accepted batch and its events (de-duplicated by uuid), keeps its body.
    void accept_batch(std::string& body, const std::vector<uuid_key>& keys);

    // Bumps the epoch and returns the live sessions but `spare` (may be null).
    std::vector<std::shared_ptr<session_base>> live_sessions(const session_base* spare);

private:
    void update_faults_on();

    std::mutex seen_mutex_;
    uuid_set seen_{4096};  // guarded by seen_mutex_

    // Release/acquire: a session that sees faults_on_ also sees the faults that turned it on
    // (decide() locks faults_mutex_ anyway; this only orders the fast-path check).
    std::atomic<bool> faults_on_{false};
    mutable std::mutex faults_mutex_;
    collector_faults faults_;       // guarded by faults_mutex_
    fault_progress progress_;       // guarded by faults_mutex_
    std::uint64_t generation_ = 0;  // guarded by faults_mutex_: bumped by set_faults()

    mutable std::mutex outage_mutex_;
    std::uint64_t outages_ = 0;                                        // guarded by outage_mutex_
    std::chrono::steady_clock::duration down_{};                       // ended outages
    std::optional<std::chrono::steady_clock::time_point> down_since_;  // the current one
};

}  // namespace evdispatch::detail
