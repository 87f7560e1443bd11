#include "collector/server_state.hpp"

#include <vector>

namespace evdispatch::detail {

std::uint64_t server_state::set_faults(collector_faults f) {
    std::lock_guard lock(faults_mutex_);
    faults_ = std::move(f);
    progress_ = initial_progress(faults_);
    update_faults_on();
    return ++generation_;
}

collector_faults server_state::faults() const {
    std::lock_guard lock(faults_mutex_);
    return faults_;
}

void server_state::update_faults_on() {
    faults_on_.store(injects_any(faults_, progress_), std::memory_order_release);
}

response_plan server_state::decide(const request_info& r, std::uint64_t& generation) {
    std::lock_guard lock(faults_mutex_);
    response_plan plan = detail::decide(faults_, progress_, r);
    generation = generation_;
    update_faults_on();
    return plan;
}

bool server_state::faults_current(std::uint64_t generation) const {
    std::lock_guard lock(faults_mutex_);
    return generation == generation_;
}

void server_state::outage_began() {
    std::lock_guard lock(outage_mutex_);
    ++outages_;
    down_since_ = std::chrono::steady_clock::now();
}

void server_state::outage_ended(std::uint64_t generation) {
    {
        std::lock_guard lock(outage_mutex_);
        if (down_since_) {
            down_ += std::chrono::steady_clock::now() - *down_since_;
            down_since_.reset();
        }
    }
    std::lock_guard lock(faults_mutex_);
    if (generation == generation_) {
        progress_.down = false;
        update_faults_on();
    }
}

collector_stats server_state::snapshot() const {
    constexpr auto r = std::memory_order_relaxed;
    collector_stats s;
    s.connections = connections.load(r);
    s.requests = requests.load(r);
    s.batches = batches.load(r);
    s.events = events.load(r);
    s.unique_events = unique_events.load(r);
    s.duplicates = duplicates.load(r);
    s.rejected = rejected.load(r);
    s.bytes = bytes.load(r);
    s.failed_batches = failed_batches.load(r);
    s.failed_events = failed_events.load(r);
    s.stalled = stalled.load(r);
    s.resets = resets.load(r);
    s.dropped_responses = dropped_responses.load(r);
    s.fault_closes = fault_closes.load(r);
    s.tls_handshakes = tls_handshakes.load(r);
    s.tls_handshake_failures = tls_handshake_failures.load(r);
    s.gzip_batches = gzip_batches.load(r);
    s.gzip_bytes = gzip_bytes.load(r);
    std::lock_guard lock(outage_mutex_);
    auto down = down_;
    if (down_since_)
        down += std::chrono::steady_clock::now() - *down_since_;
    s.outages = outages_;
    s.down_ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(down).count());
    return s;
}

void server_state::accept_batch(std::string& body, const std::vector<uuid_key>& keys) {
    std::uint64_t fresh = 0;
    {
        std::lock_guard lock(seen_mutex_);
        for (const uuid_key& k : keys)
            fresh += seen_.insert(k) ? 1 : 0;
    }
    constexpr auto r = std::memory_order_relaxed;
    events.fetch_add(keys.size(), r);
    unique_events.fetch_add(fresh, r);
    duplicates.fetch_add(keys.size() - fresh, r);
    bytes.fetch_add(body.size(), r);
    batches.fetch_add(1, r);
    if (cfg.keep_bodies) {
        std::lock_guard lock(bodies_mutex);
        bodies.push_back(std::move(body));
    }
}

std::vector<std::shared_ptr<session_base>> server_state::live_sessions(const session_base* spare) {
    std::vector<std::shared_ptr<session_base>> live;
    {
        std::lock_guard lock(sessions_mutex);
        epoch.fetch_add(1);
        for (auto& w : sessions)
            if (auto s = w.lock())
                live.push_back(std::move(s));
    }
    // Outside the lock: dropping the last reference runs the session's destructor, which
    // takes sessions_mutex.
    std::erase_if(live, [spare](const auto& s) { return s.get() == spare; });
    return live;
}

}  // namespace evdispatch::detail
