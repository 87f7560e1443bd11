#include "collector/server_state.hpp"

#include <vector>

namespace evdispatch::detail {

void server_state::set_faults(collector_faults f) {
    std::lock_guard lock(faults_mutex_);
    faults_ = std::move(f);
    progress_ = {};
    update_faults_on();
}

collector_faults server_state::faults() const {
    std::lock_guard lock(faults_mutex_);
    return faults_;
}

void server_state::update_faults_on() {
    faults_on_.store(injects_any(faults_, progress_), std::memory_order_release);
}

response_plan server_state::decide(const request_info& r) {
    std::lock_guard lock(faults_mutex_);
    response_plan plan = detail::decide(faults_, progress_, r);
    update_faults_on();
    return plan;
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

std::vector<std::shared_ptr<session_base>> server_state::live_sessions() {
    std::vector<std::shared_ptr<session_base>> live;
    {
        std::lock_guard lock(sessions_mutex);
        epoch.fetch_add(1);
        for (auto& w : sessions)
            if (auto s = w.lock())
                live.push_back(std::move(s));
    }
    return live;
}

}  // namespace evdispatch::detail
