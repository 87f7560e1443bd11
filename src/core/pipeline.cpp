#include "pipeline.hpp"

#include <algorithm>
#include <climits>
#include <sstream>

namespace evdispatch::detail {

using boost::system::error_code;

pipeline::pipeline(const pipeline_config& cfg)
    : cfg_(cfg), batcher_(cfg.batch), policy_(cfg.retry) {
    if (cfg_.max_in_flight == 0) cfg_.max_in_flight = 1;
}

template <class... Parts>
void pipeline::log(log_level level, const Parts&... parts) {
    if (!cfg_.logging) return;  // build no string nobody reads
    std::ostringstream s;
    (s << ... << parts);
    actions_.emplace_back(log_action{level, std::move(s).str()});
}

// ---- events --------------------------------------------------------------------------------

void pipeline::on_event(const user_event& ev, clock::time_point now) {
    ++ctr_.dequeued;
    if (deadline_passed_) {
        ++ctr_.dropped[std::size_t(drop_reason::close_deadline)];
        return;
    }
    if (batcher_.add(ev, now, closed_scratch_) == add_result::too_large) {
        ++ctr_.dropped[std::size_t(drop_reason::too_large)];
        log(log_level::warning, "event dropped: larger than batch.max_batch_bytes (",
            ev.visitor_json.size(), " bytes of visitor)");
    }
    // Hand closed batches on at once, so that has_room(), which gates the drain, is current.
    hand_on_closed(now);
    ctr_.open_events = batcher_.open_events();
}

void pipeline::hand_on_closed(clock::time_point now) {
    for (auto& b : closed_scratch_) enqueue(std::move(b), now);
    closed_scratch_.clear();
    ctr_.open_events = batcher_.open_events();
}

// A batch is sealed here: its body becomes the request that every attempt sends.
void pipeline::enqueue(closed_batch&& b, clock::time_point now) {
    ++ctr_.batches_sent;
    auto req = std::make_shared<log_event>(make_log_event(b));
    batch_record rec{b.id, std::move(req), std::move(b.created)};
    if (deadline_passed_) {
        give_up(std::move(rec), drop_reason::close_deadline,
                make_error_code(error::close_deadline), 0, "close deadline passed");
        return;
    }
    if (in_flight_.size() < cfg_.max_in_flight && queued_.empty() && ready_.empty()) {
        send(std::move(rec), now);
        return;
    }
    if (ctr_.queued_bytes + rec.bytes() > cfg_.backlog_max_bytes) {
        log(log_level::warning, "batch of ", rec.events(),
            " events dropped: the backlog of unsent batches is full");
        give_up(std::move(rec), drop_reason::backlog_full, make_error_code(error::backlog_full),
                0, "backlog full");
        return;
    }
    ctr_.queued_events += rec.events();
    ctr_.queued_bytes += rec.bytes();
    queued_.push_back(std::move(rec));
}

// ---- sending -------------------------------------------------------------------------------

void pipeline::pump(clock::time_point now) {
    // Retries first: they are older than anything queued.
    while (in_flight_.size() < cfg_.max_in_flight && !ready_.empty()) {
        batch_record rec = std::move(ready_.front());
        ready_.pop_front();
        leave(stage::ready, rec);
        send(std::move(rec), now);
    }
    while (in_flight_.size() < cfg_.max_in_flight && !queued_.empty()) {
        batch_record rec = std::move(queued_.front());
        queued_.pop_front();
        leave(stage::queued, rec);
        send(std::move(rec), now);
    }
}

void pipeline::send(batch_record&& rec, clock::time_point now) {
    if (rec.attempts == 0) rec.first_attempt = now;
    ++rec.attempts;
    ++ctr_.requests;
    ctr_.in_flight_events += rec.events();
    actions_.emplace_back(send_action{rec.id, rec.attempts, rec.request});
    in_flight_.push_back(std::move(rec));
    ctr_.in_flight = in_flight_.size();
}

// Takes the record's events and bytes off the counters of the stage it leaves.
void pipeline::leave(stage s, const batch_record& rec) noexcept {
    switch (s) {
        case stage::queued:
            ctr_.queued_events -= rec.events();
            ctr_.queued_bytes -= rec.bytes();
            break;
        case stage::in_flight:
            ctr_.in_flight_events -= rec.events();
            break;
        case stage::retry_wait:
        case stage::ready:
            ctr_.retry_events -= rec.events();
            ctr_.retry_bytes -= rec.bytes();
            break;
    }
}

void pipeline::on_result(std::uint64_t id, error_code ec, const dispatch_result& r,
                         clock::time_point now, double jitter) {
    last_now_ = now;
    if (r.connection_opened) ++ctr_.connections_opened;
    auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                           [id](const batch_record& f) { return f.id == id; });
    if (it == in_flight_.end()) {  // given up at the close deadline: the result is late
        after_work(now);
        return;
    }
    batch_record rec = std::move(*it);
    in_flight_.erase(it);
    ctr_.in_flight = in_flight_.size();
    leave(stage::in_flight, rec);
    if (!ec && (r.status == 0 || (r.status >= 200 && r.status < 300))) {
        ctr_.delivered += rec.events();
        ++ctr_.batches_delivered;
        ctr_.bytes_sent += rec.bytes();
        report(std::move(rec), true, drop_reason{}, ec, r.status, r.message, now);
        after_work(now);
        return;
    }
    if (!ec) ec = make_error_code(error::http_status);
    const auto d = policy_.decide(
        rec.attempts, attempt_outcome{ec, r.status, r.retry_after},
        std::chrono::duration_cast<std::chrono::milliseconds>(now - rec.first_attempt), jitter);
    if (d.what == retry_decision::action::retry && !deadline_passed_) {
        // The record keeps its request (and so every event its uuid): a receiver can recognise
        // a re-sent event. It leaves its in-flight slot while it waits.
        ++ctr_.retries;
        ctr_.retry_events += rec.events();
        ctr_.retry_bytes += rec.bytes();
        log(log_level::info, "batch ", rec.id, " attempt ", rec.attempts, " failed (",
            ec.message(), r.status ? ", status " + std::to_string(r.status) : std::string(),
            "); retry in ", d.delay.count(), " ms");
        rec.retry_at = now + d.delay;
        retry_wait_.push_back(std::move(rec));
    } else {
        log(log_level::warning, "batch of ", rec.events(), " events not delivered (",
            to_string(d.reason), "): ", ec.message(), r.message.empty() ? "" : " - ", r.message);
        give_up(std::move(rec), d.reason, ec, r.status, r.message);
    }
    after_work(now);
}

void pipeline::give_up(batch_record&& rec, drop_reason reason, error_code ec, unsigned status,
                       std::string_view message) {
    ctr_.dropped[std::size_t(reason)] += rec.events();
    ++ctr_.batches_failed;
    report(std::move(rec), false, reason, ec, status, message, last_now_);
}

void pipeline::report(batch_record&& rec, bool delivered, drop_reason reason, error_code ec,
                      unsigned status, std::string_view message, clock::time_point now) {
    if (!cfg_.report_results) return;
    report_action a;
    a.result.batch_id = rec.id;
    a.result.events = rec.events();
    a.result.bytes = rec.bytes();
    a.result.delivered = delivered;
    a.result.reason = reason;
    a.result.ec = ec;
    a.result.status = status;
    a.result.attempts = rec.attempts;
    a.result.finished = now;
    a.created = std::move(rec.created);
    a.message = std::string(message);
    actions_.emplace_back(std::move(a));
}

// ---- time ----------------------------------------------------------------------------------

void pipeline::on_tick(clock::time_point now) {
    last_now_ = now;
    timer_at_.reset();  // the timer fired (or is no longer needed for what is due by now)
    if (closing_ && !deadline_passed_ && now >= close_deadline_) on_deadline(now);
    batcher_.tick(now, closed_scratch_);
    hand_on_closed(now);
    // Due retries move to ready in the order they were waiting.
    for (auto it = retry_wait_.begin(); it != retry_wait_.end();) {
        if (it->retry_at <= now) {
            ready_.push_back(std::move(*it));
            it = retry_wait_.erase(it);
        } else {
            ++it;
        }
    }
    after_work(now);
}

void pipeline::arm_timer() {
    if (closed_) return;
    std::optional<clock::time_point> next = batcher_.next_deadline();
    auto consider = [&](clock::time_point t) {
        if (!next || t < *next) next = t;
    };
    for (const auto& r : retry_wait_) consider(r.retry_at);
    if (closing_ && !deadline_passed_) consider(close_deadline_);
    if (!next) return;
    // An armed timer that fires earlier is good enough: on_tick re-arms for the rest.
    if (timer_at_ && *timer_at_ <= *next) return;
    timer_at_ = next;
    actions_.emplace_back(arm_timer_action{*next});
}

// ---- flush and close -----------------------------------------------------------------------

void pipeline::begin_flush(std::uint64_t waiter, std::uint64_t ring_target,
                           clock::time_point now) {
    last_now_ = now;
    flush_waiters_.push_back({waiter, ring_target, 0});
    after_work(now);
}

bool pipeline::cancel_flush(std::uint64_t waiter) {
    auto it = std::find_if(flush_waiters_.begin(), flush_waiters_.end(),
                           [waiter](const flush_waiter& w) { return w.id == waiter; });
    if (it == flush_waiters_.end()) return false;
    flush_waiters_.erase(it);
    return true;
}

void pipeline::begin_close(std::uint64_t ring_final, clock::time_point deadline,
                           clock::time_point now) {
    last_now_ = now;
    if (closing_) return;
    closing_ = true;
    ring_final_ = ring_final;
    close_deadline_ = deadline;
    if (now >= deadline) on_deadline(now);
    after_work(now);
}

// Everything not delivered by the deadline is given up, stage by stage; the dispatcher is
// told to abandon its outstanding work, and events still in the ring are dropped as the
// shell drains them (has_room() is true from now on).
void pipeline::on_deadline(clock::time_point now) {
    deadline_passed_ = true;
    log(log_level::warning, "close deadline passed: dropping what is not delivered");
    batcher_.flush(closed_scratch_);
    hand_on_closed(now);  // each is given up in enqueue
    struct {
        std::deque<batch_record>* records;
        stage where;
        const char* message;
    } const stages[] = {
        {&queued_, stage::queued, "close deadline passed"},
        {&in_flight_, stage::in_flight, "close deadline passed while in flight"},
        {&retry_wait_, stage::retry_wait, "close deadline passed while waiting to retry"},
        {&ready_, stage::ready, "close deadline passed while waiting to retry"},
    };
    for (const auto& s : stages) {
        for (auto& rec : *s.records) {
            leave(s.where, rec);
            give_up(std::move(rec), drop_reason::close_deadline,
                    make_error_code(error::close_deadline), 0, s.message);
        }
        s.records->clear();
    }
    ctr_.in_flight = 0;
    actions_.emplace_back(shutdown_dispatcher_action{});
}

std::uint64_t pipeline::lowest_unsettled() const noexcept {
    std::uint64_t low = UINT64_MAX;
    if (!queued_.empty()) low = queued_.front().id;
    for (const auto* records : {&in_flight_, &retry_wait_, &ready_})
        for (const auto& r : *records) low = std::min(low, r.id);
    return low;
}

// A flush waits for two things, in order: every event up to its ring target taken from the
// ring (then all open batches are closed), and every batch closed up to then settled.
void pipeline::progress_flushes(clock::time_point now) {
    bool close_batches = closing_ && ctr_.dequeued >= ring_final_ && batcher_.open_events() != 0;
    for (const auto& w : flush_waiters_)
        if (w.batch_target == 0 && ctr_.dequeued >= w.ring_target) close_batches = true;
    if (close_batches) {
        batcher_.flush(closed_scratch_);
        hand_on_closed(now);
        pump(now);
    }
    for (auto& w : flush_waiters_)
        if (w.batch_target == 0 && ctr_.dequeued >= w.ring_target)
            w.batch_target = batcher_.last_closed_id() + 1;
    if (flush_waiters_.empty()) return;
    const auto low = lowest_unsettled();
    const error_code ec = closing_ ? make_error_code(error::closed) : error_code{};
    std::erase_if(flush_waiters_, [&](const flush_waiter& w) {
        if (w.batch_target == 0 || low < w.batch_target) return false;
        actions_.emplace_back(complete_flush_action{w.id, ec});
        return true;
    });
}

void pipeline::check_close_done() {
    if (!closing_ || closed_) return;
    if (ctr_.dequeued < ring_final_ || batcher_.open_events() != 0 || !queued_.empty() ||
        !in_flight_.empty() || !retry_wait_.empty() || !ready_.empty())
        return;
    closed_ = true;
    actions_.emplace_back(complete_close_action{deadline_passed_});
    if (!deadline_passed_) actions_.emplace_back(shutdown_dispatcher_action{});
    // Every flush is settled too: everything is.
    for (const auto& w : flush_waiters_)
        actions_.emplace_back(complete_flush_action{w.id, make_error_code(error::closed)});
    flush_waiters_.clear();
}

// Runs after every input: send what closed, complete what settled, keep the timer right.
void pipeline::after_work(clock::time_point now) {
    last_now_ = now;
    hand_on_closed(now);
    pump(now);
    progress_flushes(now);
    check_close_done();
    if (drain_paused_ && has_room()) {
        drain_paused_ = false;
        actions_.emplace_back(resume_drain_action{});
    }
    arm_timer();
}

}  // namespace evdispatch::detail
