#include "pipeline.hpp"

#include "core/gzip.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <sstream>

namespace evdispatch::detail {

using boost::system::error_code;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

// Inserts `rec` into `q`, which is sorted by id (records usually arrive in order: O(1)).
void insert_by_id(std::deque<batch_record>& q, batch_record&& rec) {
    if (q.empty() || q.back().id < rec.id) {
        q.push_back(std::move(rec));
        return;
    }
    auto it = std::upper_bound(q.begin(), q.end(), rec.id,
                               [](std::uint64_t id, const batch_record& r) { return id < r.id; });
    q.insert(it, std::move(rec));
}

bool is_success(const error_code& ec, unsigned status) noexcept {
    return !ec && (status == 0 || (status >= 200 && status < 300));
}

}  // namespace

pipeline::pipeline(const pipeline_config& cfg)
    : cfg_(cfg), batcher_(cfg.batch), policy_(cfg.retry) {
    if (cfg_.max_in_flight == 0)
        cfg_.max_in_flight = 1;
}

template <class... Parts>
void pipeline::log(log_level level, const Parts&... parts) {
    if (!cfg_.logging)
        return;  // build no string nobody reads
    std::ostringstream s;
    (s << ... << parts);
    actions_.emplace_back(log_action{level, std::move(s).str()});
}

// ---- events --------------------------------------------------------------------------------

void pipeline::on_event(const user_event& ev, clock::time_point now) {
    const std::uint64_t seq = ctr_.dequeued++;  // its ring position
    if (deadline_passed_) {
        ++ctr_.dropped[std::size_t(drop_reason::close_deadline)];
        return;
    }
    if (batcher_.add(ev, now, closed_scratch_, seq) == add_result::too_large) {
        ++ctr_.dropped[std::size_t(drop_reason::too_large)];
        log(log_level::warning, "event dropped: larger than batch.max_batch_bytes (",
            ev.visitor_json.size(), " bytes of visitor)");
    }
    // Hand closed batches on at once, so that has_room(), which gates the drain, is current.
    hand_on_closed(now);
}

void pipeline::hand_on_closed(clock::time_point now) {
    for (auto& b : closed_scratch_)
        enqueue(std::move(b), now);
    closed_scratch_.clear();
    ctr_.open_events = batcher_.open_events();
}

std::uint32_t pipeline::endpoint_index(const std::string& url) {
    for (std::size_t i = 0; i < endpoints_.size(); ++i)
        if (endpoints_[i].url == url)
            return static_cast<std::uint32_t>(i);
    endpoints_.push_back(endpoint{url});
    return static_cast<std::uint32_t>(endpoints_.size() - 1);
}

endpoint_state pipeline::state_of(std::string_view url) const noexcept {
    for (const auto& ep : endpoints_)
        if (ep.url == url)
            return ep.state;
    return endpoint_state::up;
}

// A batch is sealed here: its body becomes the request that every attempt sends.
void pipeline::enqueue(closed_batch&& b, clock::time_point now) {
    ++ctr_.batches_sent;
    batch_record rec;
    rec.id = rec.key = b.id;
    auto request = std::make_shared<log_event>(make_log_event(b));
    if (cfg_.gzip_level > 0)
        compress(*request);
    rec.request = std::move(request);
    rec.created = std::move(b.created);
    rec.event_count = rec.request->event_count;
    rec.byte_count = rec.request->body.size();
    rec.sealed = now;
    rec.endpoint = endpoint_index(rec.request->url);
    rec.first_seq = b.first_seq;
    rec.awaiting_durable = nondurable_.insert(rec.first_seq).second;
    if (deadline_passed_) {
        leave_behind(std::move(rec), now);
        return;
    }
    if (cfg_.spool == pipeline_spool::always && spool_usable(now)) {
        spool_write(std::move(rec), spool_purpose::always, now);  // then route()
        return;
    }
    route(std::move(rec), now);
}

// A batch ready to go: sent at once when a slot is free and nothing waits before it;
// otherwise queued, held while its endpoint is down, or spilled to the spool.
void pipeline::route(batch_record&& rec, clock::time_point now) {
    endpoint& ep = endpoints_[rec.endpoint];
    const bool up = ep.state == endpoint_state::up;
    if (up && in_flight_.size() < cfg_.max_in_flight && queued_.empty() && ready_.empty()) {
        send(std::move(rec), now);
        return;
    }
    // While down, one held batch (the next probe) stays in memory; the others may go to disk.
    if ((up || !ep.held.empty()) && spill(rec, now))
        return;
    if (ctr_.waiting_bytes() + rec.bytes() > cfg_.backlog_max_bytes) {
        const bool spool_full =
            cfg_.spool != pipeline_spool::off && last_spool_error_ == error::spool_full;
        const auto reason = spool_full ? drop_reason::spool_full : drop_reason::backlog_full;
        log(log_level::warning, "batch of ", rec.events(), " events dropped: ",
            spool_full ? "the memory room and the spool are full"
                       : "the backlog of unsent batches is full");
        give_up(std::move(rec), reason,
                make_error_code(spool_full ? error::spool_full : error::backlog_full), 0,
                spool_full ? "memory room and spool full" : "backlog full");
        return;
    }
    if (!up) {
        hold(std::move(rec), now);
        return;
    }
    enter(stage::queued, rec);
    queued_.push_back(std::move(rec));
}

// ---- stages --------------------------------------------------------------------------------

void pipeline::enter(stage s, const batch_record& rec) noexcept {
    if (rec.recovered) {  // its own inflow: only the memory it takes is counted here
        if (s != stage::in_flight)
            ctr_.recovered_memory_bytes += rec.bytes();
        return;
    }
    switch (s) {
        case stage::queued:
            ctr_.queued_events += rec.events();
            ctr_.queued_bytes += rec.bytes();
            break;
        case stage::in_flight:
            ctr_.in_flight_events += rec.events();
            break;
        case stage::retry_wait:
        case stage::ready:
            ctr_.retry_events += rec.events();
            ctr_.retry_bytes += rec.bytes();
            break;
        case stage::held:
            ctr_.held_events += rec.events();
            ctr_.held_bytes += rec.bytes();
            break;
        case stage::spooling:
            ctr_.spooling_events += rec.events();
            ctr_.spooling_bytes += rec.bytes();
            break;
        case stage::spooled:
            ctr_.spooled_events += rec.events();
            ctr_.spooled_bytes += rec.bytes();
            break;
    }
}

// Takes the record's events and bytes off the counters of the stage it leaves.
void pipeline::leave(stage s, const batch_record& rec) noexcept {
    if (rec.recovered) {
        if (s != stage::in_flight)
            ctr_.recovered_memory_bytes -= rec.bytes();
        return;
    }
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
        case stage::held:
            ctr_.held_events -= rec.events();
            ctr_.held_bytes -= rec.bytes();
            break;
        case stage::spooling:
            ctr_.spooling_events -= rec.events();
            ctr_.spooling_bytes -= rec.bytes();
            break;
        case stage::spooled:
            ctr_.spooled_events -= rec.events();
            ctr_.spooled_bytes -= rec.bytes();
            break;
    }
}

void pipeline::hold(batch_record&& rec, clock::time_point now) {
    // One held batch per endpoint (the next probe) stays in memory; the others may go to disk.
    if (!endpoints_[rec.endpoint].held.empty() && spill(rec, now))
        return;
    rec.held_since = now;
    enter(stage::held, rec);
    insert_by_id(endpoints_[rec.endpoint].held, std::move(rec));
}

// ---- sending -------------------------------------------------------------------------------

void pipeline::pump(clock::time_point now) {
    if (deadline_passed_)
        return;
    // Due probes first: one request per down endpoint, on its schedule.
    for (auto& ep : endpoints_) {
        if (in_flight_.size() >= cfg_.max_in_flight)
            return;
        if (ep.state != endpoint_state::down || ep.held.empty() || now < ep.next_probe)
            continue;
        batch_record rec = std::move(ep.held.front());
        ep.held.pop_front();
        leave(stage::held, rec);
        rec.held_for += now - rec.held_since;
        rec.probe = true;
        ++ctr_.probes;
        change(ep, endpoint_state::probing, {}, {}, {});
        send(std::move(rec), now);
    }
    // Then retries and batches back from an outage: they are older than anything queued.
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
    if (rec.attempts == 0)
        rec.first_attempt = now;
    ++rec.attempts;
    if (!rec.probe)
        ++rec.counted;  // a probe is an outage attempt: it does not count
    ++ctr_.requests;
    enter(stage::in_flight, rec);
    actions_.emplace_back(send_action{rec.key, rec.attempts, rec.request});
    in_flight_.push_back(std::move(rec));
    ctr_.in_flight = in_flight_.size();
}

void pipeline::on_result(std::uint64_t id, error_code ec, const dispatch_result& r,
                         clock::time_point now, double jitter) {
    last_now_ = now;
    if (r.connection_opened)
        ++ctr_.connections_opened;
    if (r.compression_refused) {
        ++ctr_.compression_refused;
        log(log_level::warning, "the endpoint refused a gzipped batch (", r.message,
            "): sent again uncompressed, and every later batch to it");
    }
    auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                           [id](const batch_record& f) { return f.key == id; });
    if (it == in_flight_.end()) {  // given up at the close deadline: the result is late
        after_work(now);
        return;
    }
    batch_record rec = std::move(*it);
    in_flight_.erase(it);
    ctr_.in_flight = in_flight_.size();
    leave(stage::in_flight, rec);
    const bool was_probe = rec.probe;
    rec.probe = false;
    endpoint& ep = endpoints_[rec.endpoint];
    // Sent before its endpoint went down (while it is not up, only its probe is sent to it):
    // the answer is news from before the outage. It settles the batch but says nothing about
    // the endpoint now (only a probe ends an outage), or an answer overtaken by the failures
    // that made the endpoint down would end the outage at once and the next attempts would
    // begin another.
    const bool stale = !was_probe && ep.state != endpoint_state::up;

    if (is_success(ec, r.status)) {
        (rec.recovered ? ctr_.delivered_recovered : ctr_.delivered) += rec.events();
        settled_on_disk(rec);
        made_durable(rec);
        ++ctr_.batches_delivered;
        ctr_.bytes_sent += rec.bytes();
        report(std::move(rec), true, drop_reason{}, ec, r.status, r.message, now);
        if (!stale)
            endpoint_ok(ep, now);
        after_work(now);
        return;
    }
    if (!ec)
        ec = make_error_code(error::http_status);
    const attempt_outcome outcome{ec, r.status, r.retry_after};
    const auto [reason, retryable] = retry_policy::classify(outcome);
    // Endpoint-level: the endpoint did not take the batch for reasons of its own (down,
    // overloaded, unreachable), not because of this batch or of the configuration.
    const bool endpoint_level = health_on() && retryable && ec != error::dispatcher_failed;
    std::string why;
    if (endpoint_level) {
        why = ec.message();
        if (r.status)
            why += " (status " + std::to_string(r.status) + ")";
        if (!r.message.empty())
            why += ": " + r.message;
        ++ep.failures;
        const bool pause = r.status == 429 && r.retry_after;
        const auto pause_for =
            pause ? clock::duration(std::min(*r.retry_after, cfg_.retry.max_retry_after))
                  : clock::duration{};
        if (ep.state == endpoint_state::up &&
            (pause || ep.failures >= cfg_.health.failure_threshold)) {
            go_down(ep, now, pause ? pause_for : probe_wait(0, jitter), why);
        } else if (was_probe) {
            ++ep.probe_step;
            ep.next_probe = now + (pause ? pause_for : probe_wait(ep.probe_step, jitter));
            change(ep, endpoint_state::down, why, {}, ep.next_probe - now);
        }
        if (ep.state != endpoint_state::up) {
            // Attempts made during an outage do not use up the batch's attempts.
            if (!was_probe)
                --rec.counted;
            hold(std::move(rec), now);
            after_work(now);
            return;
        }
    } else if ((r.status != 0 || was_probe) && !stale) {
        // The endpoint answered (or failed for a reason that is the batch's or the
        // configuration's, not its availability): it is up.
        endpoint_ok(ep, now);
    }
    const auto d =
        policy_.decide(rec.counted, outcome,
                       duration_cast<milliseconds>(now - rec.first_attempt - rec.held_for), jitter);
    if (d.what == retry_decision::action::retry && !deadline_passed_) {
        // The record keeps its request (and so every event its uuid): a receiver can recognise
        // a re-sent event. It leaves its in-flight slot while it waits.
        ++ctr_.retries;
        log(log_level::info, "batch ", rec.id, " attempt ", rec.attempts, " failed (", ec.message(),
            r.status ? ", status " + std::to_string(r.status) : std::string(), "); retry in ",
            d.delay.count(), " ms");
        rec.retry_at = now + d.delay;
        enter(stage::retry_wait, rec);
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
    (rec.recovered ? ctr_.dropped_recovered : ctr_.dropped)[std::size_t(reason)] += rec.events();
    settled_on_disk(rec);
    made_durable(rec);
    ++ctr_.batches_failed;
    report(std::move(rec), false, reason, ec, status, message, last_now_);
}

void pipeline::report(batch_record&& rec, bool delivered, drop_reason reason, error_code ec,
                      unsigned status, std::string_view message, clock::time_point now) {
    if (!cfg_.report_results)
        return;
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

// ---- endpoint health -----------------------------------------------------------------------

// Each wait is between half and all of its step: probes of many processors do not line up.
clock::duration pipeline::probe_wait(unsigned step, double jitter) const noexcept {
    const double base = static_cast<double>(cfg_.health.probe_initial.count()) *
                        std::pow(2.0, static_cast<double>(std::min(step, 40u)));
    const double capped = std::min(base, static_cast<double>(cfg_.health.probe_max.count()));
    return duration_cast<clock::duration>(
        std::chrono::duration<double, std::milli>(capped * (0.5 + 0.5 * jitter)));
}

void pipeline::change(endpoint& ep, endpoint_state to, std::string_view why, clock::duration outage,
                      clock::duration next_probe) {
    const auto from = ep.state;
    ep.state = to;
    if (to == endpoint_state::down && from == endpoint_state::up)
        log(log_level::warning, "endpoint ", ep.url, " is down after ", ep.failures, " failures (",
            why, "); batches are held, first probe in ",
            duration_cast<milliseconds>(next_probe).count(), " ms");
    else if (to == endpoint_state::up)
        log(log_level::info, "endpoint ", ep.url, " is up again after ",
            duration_cast<milliseconds>(outage).count(), " ms");
    actions_.emplace_back(endpoint_change_action{ep.url, from, to, ep.failures, std::string(why),
                                                 outage, next_probe});
}

// The endpoint went down: its batches waiting anywhere but in flight are held from now on.
void pipeline::go_down(endpoint& ep, clock::time_point now, clock::duration wait,
                       std::string_view why) {
    ++ctr_.outages;
    ep.down_since = now;
    ep.probe_step = 0;
    ep.next_probe = now + wait;
    const auto index = static_cast<std::uint32_t>(&ep - endpoints_.data());
    struct {
        std::deque<batch_record>* records;
        stage where;
    } const stages[] = {
        {&queued_, stage::queued}, {&retry_wait_, stage::retry_wait}, {&ready_, stage::ready}};
    std::vector<batch_record> moving;
    for (const auto& s : stages) {
        for (auto it = s.records->begin(); it != s.records->end();) {
            if (it->endpoint != index) {
                ++it;
                continue;
            }
            moving.push_back(std::move(*it));
            it = s.records->erase(it);
            leave(s.where, moving.back());
        }
    }
    change(ep, endpoint_state::down, why, {}, wait);
    for (auto& rec : moving)  // the endpoint is down now: all but one may go to the spool
        hold(std::move(rec), now);
}

// An answer that is not an endpoint-level failure: the endpoint is up; what it held goes
// first (by id, with the retries), over the whole pool.
void pipeline::endpoint_ok(endpoint& ep, clock::time_point now) {
    ep.failures = 0;
    if (ep.state == endpoint_state::up)
        return;
    const auto outage = now - ep.down_since;
    outage_ms_closed_ += static_cast<std::uint64_t>(duration_cast<milliseconds>(outage).count());
    while (!ep.held.empty()) {
        batch_record rec = std::move(ep.held.front());
        ep.held.pop_front();
        leave(stage::held, rec);
        rec.held_for += now - rec.held_since;
        enter(stage::ready, rec);
        insert_by_id(ready_, std::move(rec));
    }
    change(ep, endpoint_state::up, {}, outage, {});
}

void pipeline::update_health_counters(clock::time_point now) {
    std::uint64_t down = 0, current_ms = 0;
    auto worst = endpoint_state::up;
    for (const auto& ep : endpoints_) {
        if (ep.state == endpoint_state::up)
            continue;
        ++down;
        current_ms +=
            static_cast<std::uint64_t>(duration_cast<milliseconds>(now - ep.down_since).count());
        if (ep.state == endpoint_state::down || worst == endpoint_state::up)
            worst = ep.state;
    }
    ctr_.endpoints_down = down;
    ctr_.worst_state = static_cast<std::uint64_t>(worst);
    ctr_.outage_ms = outage_ms_closed_ + current_ms;
}

// Batches not delivered within health.max_age of their closing are dropped, whatever their
// stage but in flight (the result decides those).
void pipeline::expire(clock::time_point now) {
    if (cfg_.health.max_age.count() <= 0)
        return;
    const auto limit = now - cfg_.health.max_age;
    auto sweep = [&](std::deque<batch_record>& q, stage where) {
        for (auto it = q.begin(); it != q.end();) {
            if (it->sealed > limit) {
                ++it;
                continue;
            }
            batch_record rec = std::move(*it);
            it = q.erase(it);
            leave(where, rec);
            log(log_level::warning, "batch of ", rec.events(),
                " events dropped: not delivered within health.max_age");
            give_up(std::move(rec), drop_reason::expired, make_error_code(error::expired), 0,
                    "not delivered within health.max_age");
        }
    };
    sweep(queued_, stage::queued);
    sweep(retry_wait_, stage::retry_wait);
    sweep(ready_, stage::ready);
    for (auto& ep : endpoints_)
        sweep(ep.held, stage::held);
}

// ---- time ----------------------------------------------------------------------------------

void pipeline::on_tick(clock::time_point now) {
    last_now_ = now;
    timer_at_.reset();  // the timer fired (or is no longer needed for what is due by now)
    if (closing_ && !deadline_passed_ && now >= close_deadline_)
        on_deadline(now);
    batcher_.tick(now, closed_scratch_);
    hand_on_closed(now);
    // Due retries move to ready, by id. A retry whose endpoint went down meanwhile was
    // moved to held by go_down.
    for (auto it = retry_wait_.begin(); it != retry_wait_.end();) {
        if (it->retry_at <= now) {
            batch_record rec = std::move(*it);
            it = retry_wait_.erase(it);
            insert_by_id(ready_, std::move(rec));  // same counters: retry_wait and ready share
        } else {
            ++it;
        }
    }
    expire(now);
    after_work(now);
}

void pipeline::arm_timer() {
    if (closed_)
        return;
    std::optional<clock::time_point> next = batcher_.next_deadline();
    auto consider = [&](clock::time_point t) {
        if (!next || t < *next)
            next = t;
    };
    for (const auto& r : retry_wait_)
        consider(r.retry_at);
    if (closing_ && !deadline_passed_)
        consider(close_deadline_);
    if (read_retry_at_ > last_now_ && (!spooled_.empty() || recovered_unread_ > 0))
        consider(read_retry_at_);
    // A due probe without a free slot waits for a result (which pumps), not for the timer.
    if (in_flight_.size() < cfg_.max_in_flight)
        for (const auto& ep : endpoints_)
            if (ep.state == endpoint_state::down && !ep.held.empty())
                consider(ep.next_probe);
    if (cfg_.health.max_age.count() > 0) {
        // Ids follow closing order, so the oldest batch of a stage sorted by id is its front.
        std::optional<clock::time_point> oldest;
        auto older = [&](const batch_record& r) {
            if (!oldest || r.sealed < *oldest)
                oldest = r.sealed;
        };
        if (!queued_.empty())
            older(queued_.front());
        if (!ready_.empty())
            older(ready_.front());
        for (const auto& r : retry_wait_)
            older(r);
        for (const auto& ep : endpoints_)
            if (!ep.held.empty())
                older(ep.held.front());
        if (oldest)
            consider(*oldest + cfg_.health.max_age);
    }
    if (!next)
        return;
    // An armed timer that fires earlier is good enough: on_tick re-arms for the rest.
    if (timer_at_ && *timer_at_ <= *next)
        return;
    timer_at_ = next;
    actions_.emplace_back(arm_timer_action{*next});
}

// ---- flush and close -----------------------------------------------------------------------

void pipeline::begin_flush(std::uint64_t waiter, std::uint64_t ring_target, clock::time_point now) {
    last_now_ = now;
    flush_waiters_.push_back({waiter, ring_target, 0});
    after_work(now);
}

bool pipeline::cancel_flush(std::uint64_t waiter) {
    auto it = std::find_if(flush_waiters_.begin(), flush_waiters_.end(),
                           [waiter](const flush_waiter& w) { return w.id == waiter; });
    if (it != flush_waiters_.end()) {
        flush_waiters_.erase(it);
        return true;
    }
    return std::erase_if(durable_waiters_,
                         [waiter](const durable_waiter& w) { return w.id == waiter; }) != 0;
}

void pipeline::begin_durable(std::uint64_t waiter, std::uint64_t ring_target,
                             clock::time_point now) {
    last_now_ = now;
    durable_waiters_.push_back({waiter, ring_target});
    after_work(now);
}

std::uint64_t pipeline::durable_watermark() const noexcept {
    // Events not taken from the ring yet, events in open batches, closed batches neither
    // settled nor on disk: the lowest ring position among them.
    std::uint64_t low = std::min(ctr_.dequeued, batcher_.min_open_seq());
    if (!nondurable_.empty())
        low = std::min(low, *nondurable_.begin());
    return low;
}

// Sealed once: every attempt (and a replay after a spool read) sends these bytes.
void pipeline::compress(log_event& request) {
    request.gzip_body = gzip_compress(request.body, cfg_.gzip_level);
    ++ctr_.compressed_batches;
    ctr_.compressed_in_bytes += request.body.size();
    ctr_.compressed_out_bytes += request.gzip_body.size();
}

void pipeline::made_durable(batch_record& rec) noexcept {
    if (!rec.awaiting_durable)
        return;
    nondurable_.erase(rec.first_seq);
    rec.awaiting_durable = false;
}

void pipeline::progress_durable() {
    if (durable_waiters_.empty())
        return;
    const std::uint64_t mark = durable_watermark();
    std::erase_if(durable_waiters_, [&](const durable_waiter& w) {
        if (w.ring_target > mark)
            return false;
        actions_.emplace_back(complete_flush_action{w.id, error_code{}});
        return true;
    });
}

void pipeline::begin_close(std::uint64_t ring_final, clock::time_point deadline,
                           clock::time_point now) {
    last_now_ = now;
    if (closing_)
        return;
    closing_ = true;
    ring_final_ = ring_final;
    close_deadline_ = deadline;
    if (now >= deadline)
        on_deadline(now);
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
    } stages[] = {
        {&queued_, stage::queued, "close deadline passed"},
        {&in_flight_, stage::in_flight, "close deadline passed while in flight"},
        {&retry_wait_, stage::retry_wait, "close deadline passed while waiting to retry"},
        {&ready_, stage::ready, "close deadline passed while waiting to retry"},
    };
    auto give_up_all = [&](std::deque<batch_record>& records, stage where, const char* message) {
        for (auto& rec : records) {
            leave(where, rec);
            if (cfg_.spool != pipeline_spool::off)
                leave_behind(std::move(rec), now);
            else
                give_up(std::move(rec), drop_reason::close_deadline,
                        make_error_code(error::close_deadline), 0, message);
        }
        records.clear();
    };
    for (auto& s : stages)
        give_up_all(*s.records, s.where, s.message);
    for (auto& ep : endpoints_)
        give_up_all(ep.held, stage::held, "close deadline passed while its endpoint was down");
    ctr_.in_flight = 0;
    // Batches on disk only stay there for a later processor; writes under way end as
    // left_in_spool (or close_deadline) when they are answered.
    ctr_.left_in_spool += ctr_.spooled_events;
    ctr_.spooled_events = 0;
    ctr_.spooled_bytes = 0;
    spooled_.clear();
    actions_.emplace_back(shutdown_dispatcher_action{});
}

std::uint64_t pipeline::lowest_unsettled() const noexcept {
    std::uint64_t low = UINT64_MAX;
    if (!queued_.empty())
        low = queued_.front().id;
    if (!ready_.empty())
        low = std::min(low, ready_.front().id);
    for (const auto* records : {&in_flight_, &retry_wait_})
        for (const auto& r : *records)
            low = std::min(low, r.id);
    for (const auto& ep : endpoints_)
        if (!ep.held.empty())
            low = std::min(low, ep.held.front().id);
    for (const auto& r : spooling_)
        low = std::min(low, r.id);
    for (const auto& run : spooled_)
        low = std::min(low, run.lowest_batch);
    return low;
}

// A flush waits for two things, in order: every event up to its ring target taken from the
// ring (then all open batches are closed), and every batch closed up to then settled.
void pipeline::progress_flushes(clock::time_point now) {
    bool close_batches = closing_ && ctr_.dequeued >= ring_final_ && batcher_.open_events() != 0;
    for (const auto& w : flush_waiters_)
        if (w.batch_target == 0 && ctr_.dequeued >= w.ring_target)
            close_batches = true;
    if (close_batches) {
        batcher_.flush(closed_scratch_);
        hand_on_closed(now);
        pump(now);
    }
    for (auto& w : flush_waiters_)
        if (w.batch_target == 0 && ctr_.dequeued >= w.ring_target)
            w.batch_target = batcher_.last_closed_id() + 1;
    if (flush_waiters_.empty())
        return;
    const auto low = lowest_unsettled();
    const error_code ec = closing_ ? make_error_code(error::closed) : error_code{};
    std::erase_if(flush_waiters_, [&](const flush_waiter& w) {
        if (w.batch_target == 0 || low < w.batch_target)
            return false;
        actions_.emplace_back(complete_flush_action{w.id, ec});
        return true;
    });
}

void pipeline::check_close_done() {
    if (!closing_ || closed_)
        return;
    if (ctr_.dequeued < ring_final_ || ctr_.pending() != 0)
        return;
    closed_ = true;
    actions_.emplace_back(complete_close_action{deadline_passed_});
    if (!deadline_passed_)
        actions_.emplace_back(shutdown_dispatcher_action{});
    // Every flush is settled too: everything is.
    for (const auto& w : flush_waiters_)
        actions_.emplace_back(complete_flush_action{w.id, make_error_code(error::closed)});
    flush_waiters_.clear();
    for (const auto& w : durable_waiters_)
        actions_.emplace_back(complete_flush_action{w.id, make_error_code(error::closed)});
    durable_waiters_.clear();
}

// Runs after every input: send what closed, complete what settled, keep the timer right.
void pipeline::after_work(clock::time_point now) {
    last_now_ = now;
    hand_on_closed(now);
    pump(now);
    progress_flushes(now);
    progress_durable();
    update_health_counters(now);
    maybe_read(now);
    check_close_done();
    if (drain_paused_ && has_room()) {
        drain_paused_ = false;
        actions_.emplace_back(resume_drain_action{});
    }
    arm_timer();
}

// ---- the disk spool ------------------------------------------------------------------------

// Moves `rec` out of memory into the spool when the spool is on and usable, and either half
// the memory room is taken or its endpoint is down (the caller keeps the next probe in
// memory). A batch already on disk (mode always, read back) is only released there: the
// spool returns it from a later read. Returns whether it took the record.
bool pipeline::spill(batch_record& rec, clock::time_point now) {
    if (cfg_.spool == pipeline_spool::off || deadline_passed_ || !spool_usable(now))
        return false;
    const bool down = endpoints_[rec.endpoint].state != endpoint_state::up;
    if (!down && ctr_.waiting_bytes() + rec.bytes() <= cfg_.backlog_max_bytes / 2)
        return false;
    if (rec.disk) {
        actions_.emplace_back(spool_settle_action{*rec.disk, true});
        if (rec.recovered) {
            ++recovered_unread_;  // back on disk, unread; still pending_recovered
        } else {
            add_spooled(rec);
        }
        return true;
    }
    spool_write(std::move(rec), spool_purpose::overflow, now);
    return true;
}

void pipeline::spool_write(batch_record&& rec, spool_purpose purpose, clock::time_point now) {
    rec.purpose = purpose;
    enter(stage::spooling, rec);
    actions_.emplace_back(spool_write_action{rec.key, rec.request, now - rec.sealed,
                                             purpose == spool_purpose::overflow});
    spooling_.push_back(std::move(rec));
}

// An own batch now on disk only: counted in a run of consecutive spool ids, its request
// (the memory) released with the record.
void pipeline::add_spooled(const batch_record& rec) {
    const std::uint64_t ref = rec.disk->id;
    enter(stage::spooled, rec);
    if (!spooled_.empty() && spooled_.back().last + 1 == ref) {
        auto& run = spooled_.back();
        run.last = ref;
        run.lowest_batch = std::min(run.lowest_batch, rec.id);
        run.events += rec.events();
        run.bytes += rec.bytes();
        return;
    }
    const spooled_run run{ref, ref, rec.id, rec.events(), rec.bytes()};
    auto it = std::upper_bound(spooled_.begin(), spooled_.end(), ref,
                               [](std::uint64_t r, const spooled_run& x) { return r < x.first; });
    spooled_.insert(it, run);
}

// Own spooled events that will not come back (their records failed their checksum or
// expired in the spool): dropped, expired ones first as far as the spool counted them.
void pipeline::lose_spooled(std::uint64_t events, std::uint64_t bytes,
                            std::uint64_t& expired_budget) {
    if (events == 0)
        return;
    const auto expired = std::min(events, expired_budget);
    expired_budget -= expired;
    ctr_.dropped[std::size_t(drop_reason::expired)] += expired;
    ctr_.dropped[std::size_t(drop_reason::spool_corrupt)] += events - expired;
    ctr_.spooled_events -= std::min(ctr_.spooled_events, events);
    ctr_.spooled_bytes -= std::min(ctr_.spooled_bytes, bytes);
    log(log_level::error, events, " spooled events could not be read back (", events - expired,
        " failed their checksum, ", expired, " expired)");
}

// What is not delivered when the close deadline passes: left in the spool for a later
// processor (written now when it is not there yet), or dropped without a spool.
void pipeline::leave_behind(batch_record&& rec, clock::time_point now) {
    if (rec.recovered) {
        return;  // still in its spool, unacknowledged: pending for the next processor
    }
    if (rec.disk) {
        ctr_.left_in_spool += rec.events();
        return;
    }
    if (cfg_.spool != pipeline_spool::off && now >= spool_retry_at_) {
        spool_write(std::move(rec), spool_purpose::close, now);
        return;
    }
    give_up(std::move(rec), drop_reason::close_deadline, make_error_code(error::close_deadline), 0,
            "close deadline passed");
}

void pipeline::settled_on_disk(const batch_record& rec) {
    if (rec.disk)
        actions_.emplace_back(spool_settle_action{*rec.disk, false});
}

void pipeline::on_spool_open(std::uint64_t records, std::uint64_t events, clock::time_point now) {
    last_now_ = now;
    recovered_unread_ += records;
    ctr_.recovered += events;
    if (records)
        log(log_level::info, "spool: ", events, " events in ", records,
            " batches left by earlier processes; delivering them");
    after_work(now);
}

void pipeline::on_spool_written(std::uint64_t id, error_code ec, spool_ref ref,
                                clock::time_point now) {
    last_now_ = now;
    auto it = std::find_if(spooling_.begin(), spooling_.end(),
                           [id](const batch_record& r) { return r.key == id; });
    if (it == spooling_.end()) {
        after_work(now);
        return;
    }
    batch_record rec = std::move(*it);
    spooling_.erase(it);
    leave(stage::spooling, rec);
    if (!ec) {
        ++ctr_.spool_writes;
        ctr_.spool_written_events += rec.events();
        rec.disk = ref;
        made_durable(rec);
        if (deadline_passed_ || rec.purpose == spool_purpose::close)
            ctr_.left_in_spool += rec.events();
        else if (rec.purpose == spool_purpose::overflow)
            add_spooled(rec);
        else
            route(std::move(rec), now);  // mode always: on disk, now it may go
        after_work(now);
        return;
    }
    ++ctr_.spool_write_failures;
    last_spool_error_ = ec;
    spool_retry_at_ = now + cfg_.spool_retry;
    log(log_level::warning, "spool write refused (", ec.message(), "); memory only for ",
        duration_cast<milliseconds>(cfg_.spool_retry).count(), " ms");
    if (deadline_passed_ || rec.purpose == spool_purpose::close)
        give_up(std::move(rec), drop_reason::close_deadline, make_error_code(error::close_deadline),
                0, "close deadline passed; the spool refused the batch");
    else
        route(std::move(rec), now);  // back to memory when there is room, else dropped
    after_work(now);
}

// Reads back when every endpoint is up and the batches waiting in memory leave room for a
// quarter of the memory room below its half (where spilling starts), a quarter at a time:
// replay interleaves with live batches, and what is read back is not spilled again while the
// endpoint keeps up. (With a room of about one batch: only when nothing waits.)
void pipeline::maybe_read(clock::time_point now) {
    if (cfg_.spool == pipeline_spool::off || read_pending_ || deadline_passed_ ||
        now < read_retry_at_)
        return;
    // Closing delivers its own events; recovered ones are left for the next processor.
    if (spooled_.empty() && (recovered_unread_ == 0 || closing_))
        return;
    for (const auto& ep : endpoints_)
        if (ep.state != endpoint_state::up)
            return;
    const std::size_t quarter = std::max(cfg_.backlog_max_bytes / 4, cfg_.batch.max_batch_bytes);
    if (ctr_.waiting_bytes() + quarter > std::max(cfg_.backlog_max_bytes / 2, quarter))
        return;
    read_pending_ = true;
    actions_.emplace_back(spool_read_action{quarter});
}

void pipeline::on_spool_read(std::vector<spool_replay>&& batches, const spool_read_status& status,
                             clock::time_point now) {
    last_now_ = now;
    read_pending_ = false;
    recovered_unread_ = status.recovered_unread_records;
    if (deadline_passed_ || closed_) {
        // Too late to send: the records stay in the spool, unacknowledged, for the next
        // processor (own ones are counted in left_in_spool already).
        after_work(now);
        return;
    }
    std::uint64_t expired_budget = status.skipped_expired_events;
    std::uint64_t own_lost = 0;
    auto lose_front = [&] {
        const auto& run = spooled_.front();
        own_lost += run.events;
        lose_spooled(run.events, run.bytes, expired_budget);
        spooled_.pop_front();
    };
    for (auto& b : batches) {
        batch_record rec;
        if (cfg_.gzip_level > 0 && b.request->gzip_body.empty()) {
            // The spool keeps the JSON: compressed again once, when it comes back.
            auto copy = std::make_shared<log_event>(*b.request);
            compress(*copy);
            b.request = std::move(copy);
        }
        rec.request = std::move(b.request);
        rec.event_count = rec.request->event_count;
        rec.byte_count = rec.request->body.size();
        rec.sealed = now - b.age;
        rec.disk = b.ref;
        rec.endpoint = endpoint_index(rec.request->url);
        rec.key = next_key_++;
        if (b.ref.origin != 0) {
            rec.recovered = true;
            rec.id = next_recovered_id_++;
        } else {
            // Own records come back in spool-id order: runs before this id are lost.
            while (!spooled_.empty() && spooled_.front().last < b.ref.id)
                lose_front();
            if (spooled_.empty() || spooled_.front().first > b.ref.id) {
                // Not one of ours (cannot happen): leave it to a later processor.
                log(log_level::error, "spool returned an unknown record ", b.ref.id);
                continue;
            }
            auto& run = spooled_.front();
            rec.id = run.lowest_batch;  // flushes wait for it as for the run
            run.first = b.ref.id + 1;
            run.events -= std::min(run.events, std::uint64_t(rec.events()));
            run.bytes -= std::min(run.bytes, std::uint64_t(rec.bytes()));
            leave(stage::spooled, rec);
            if (run.first > run.last)
                lose_front();  // what is left of it was skipped
            ++ctr_.spool_reads;
        }
        enter(stage::ready, rec);
        insert_by_id(ready_, std::move(rec));
    }
    if (status.own_unread_records == 0)
        while (!spooled_.empty())
            lose_front();
    // What the spool skipped beyond the own losses belonged to recovered batches.
    const std::uint64_t corrupt_own = own_lost - std::min(own_lost, status.skipped_expired_events);
    ctr_.dropped_recovered[std::size_t(drop_reason::expired)] += expired_budget;
    ctr_.dropped_recovered[std::size_t(drop_reason::spool_corrupt)] +=
        status.skipped_corrupt_events - std::min(status.skipped_corrupt_events, corrupt_own);
    if (batches.empty() && (!spooled_.empty() || recovered_unread_ > 0))
        read_retry_at_ = now + cfg_.spool_retry;  // nothing came back: do not spin
    after_work(now);
}

}  // namespace evdispatch::detail
