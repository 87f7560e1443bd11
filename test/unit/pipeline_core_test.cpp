// The sans-io pipeline core, driven with a fake clock and no threads: accounting after every
// step, flush ordering, the close deadline over every stage, the retry schedule, backpressure.

#include "core/pipeline.hpp"
#include "support/workload.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <variant>

using namespace evdispatch;
using namespace evdispatch::detail;
using namespace std::chrono_literals;
using boost::system::error_code;

namespace {

// The event lives until the end of the full expression that uses it (the batcher copies it).
event_ptr visitor_event(const context_ptr& ctx, int n, std::size_t pad = 0) {
    return evdispatch::make_event(ctx, R"({"visitor_id":"u)" + std::to_string(n) + R"(","pad":")" +
                                           std::string(pad, 'x') + R"(","snapshots":[]})");
}

pipeline_config base_config() {
    pipeline_config c;
    c.batch.batch_size = 3;
    c.batch.flush_interval = 100ms;
    c.batch.max_batch_bytes = 64 * 1024;
    c.retry.max_attempts = 3;
    c.retry.base_backoff = 100ms;
    c.retry.max_backoff = 10s;
    c.retry.max_retry_time = 60s;
    c.backlog_max_bytes = 1024 * 1024;
    c.max_in_flight = 2;
    c.health.failure_threshold = 0;  // the retry policy alone; health tests turn it on
    c.report_results = true;
    c.logging = true;
    return c;
}

// Drives a pipeline the way the shell does and records what it asked for.
struct harness {
    explicit harness(pipeline_config c = base_config()) : cfg(c), p(c) {}

    pipeline_config cfg;
    pipeline p;
    context_ptr ctx = test::make_context("http://127.0.0.1:9/v1/events");
    clock::time_point now = clock::time_point{} + 1000h;
    std::uint64_t pushed = 0;  // the ring's push count, as the shell would read it
    std::vector<pipeline_action> scratch;

    std::vector<send_action> in_flight;  // sent, no result yet
    std::vector<send_action> all_sends;
    std::vector<send_action> abandoned;  // in flight when the dispatcher was shut down
    std::vector<batch_result> reports;
    std::map<std::uint64_t, error_code> flushes_done;
    std::optional<bool> closed_with_deadline;
    std::optional<clock::time_point> timer;
    int shutdowns = 0, resumes = 0, logs = 0;
    // The disk spool, as the shell would see it (the tests play the spool's part).
    std::vector<spool_write_action> spool_writes;  // not answered yet
    std::vector<spool_write_action> all_spool_writes;
    std::vector<std::size_t> spool_reads;  // max_bytes of unanswered reads
    std::vector<spool_ref> acks, releases;

    void collect() {
        for (auto& a : p.take_actions(scratch)) {
            std::visit(
                [&](auto& x) {
                    using T = std::decay_t<decltype(x)>;
                    if constexpr (std::is_same_v<T, send_action>) {
                        in_flight.push_back(x);
                        all_sends.push_back(x);
                    } else if constexpr (std::is_same_v<T, arm_timer_action>) {
                        timer = x.at;
                    } else if constexpr (std::is_same_v<T, complete_flush_action>) {
                        REQUIRE(flushes_done.count(x.waiter) == 0);  // completed once
                        flushes_done[x.waiter] = x.ec;
                    } else if constexpr (std::is_same_v<T, complete_close_action>) {
                        REQUIRE_FALSE(closed_with_deadline);  // completed once
                        closed_with_deadline = x.deadline_passed;
                    } else if constexpr (std::is_same_v<T, report_action>) {
                        reports.push_back(x.result);
                    } else if constexpr (std::is_same_v<T, shutdown_dispatcher_action>) {
                        ++shutdowns;  // outstanding requests are abandoned
                        abandoned.insert(abandoned.end(), in_flight.begin(), in_flight.end());
                        in_flight.clear();
                    } else if constexpr (std::is_same_v<T, resume_drain_action>) {
                        ++resumes;
                    } else if constexpr (std::is_same_v<T, spool_write_action>) {
                        spool_writes.push_back(x);
                        all_spool_writes.push_back(x);
                    } else if constexpr (std::is_same_v<T, spool_read_action>) {
                        spool_reads.push_back(x.max_bytes);
                    } else if constexpr (std::is_same_v<T, spool_settle_action>) {
                        (x.release ? releases : acks).push_back(x.ref);
                    } else {
                        ++logs;
                    }
                },
                a);
        }
        scratch.clear();
        // The invariant every step must keep.
        REQUIRE(p.counters().balanced());
        REQUIRE(p.counters().in_flight == in_flight.size());
        REQUIRE(in_flight.size() <= cfg.max_in_flight);
    }

    // `n` events pushed into the ring and drained at once.
    void events(int n, std::size_t pad = 0) {
        for (int i = 0; i < n; ++i) {
            ++pushed;
            p.on_event(*visitor_event(ctx, static_cast<int>(pushed), pad), now);
        }
        p.after_events(now);
        collect();
    }
    // Events pushed but not drained yet (still in the ring).
    void push_only(int n) { pushed += static_cast<std::uint64_t>(n); }
    // Drain what push_only left in the ring.
    void drain_ring() {
        while (p.counters().dequeued < pushed)
            p.on_event(*visitor_event(ctx, static_cast<int>(p.counters().dequeued + 1)), now);
        p.after_events(now);
        collect();
    }

    void answer(std::size_t index, error_code ec, unsigned status = 0,
                std::optional<std::chrono::milliseconds> retry_after = {}, double jitter = 0.5) {
        REQUIRE(index < in_flight.size());
        const auto s = in_flight[index];
        in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(index));
        dispatch_result r;
        r.status = status;
        r.retry_after = retry_after;
        p.on_result(s.id, ec, r, now, jitter);
        collect();
    }
    void ok(std::size_t index = 0) { answer(index, {}, 204); }
    void fail_503(std::size_t index = 0, double jitter = 0.5) {
        answer(index, make_error_code(error::http_status), 503, {}, jitter);
    }

    // Moves the clock on by `d`, firing the timer at each time it was armed for on the way.
    void advance(clock::duration d) {
        const auto target = now + d;
        while (timer && *timer <= target) {
            now = std::max(now, *timer);
            timer.reset();
            p.on_tick(now);
            collect();
        }
        now = target;
    }
    // Moves the clock on 1 ms at a time until something is sent; returns the time it took.
    clock::duration until_next_send(clock::duration limit = 60s) {
        const auto start = now;
        const auto sends = all_sends.size();
        while (all_sends.size() == sends && now - start < limit)
            advance(1ms);
        REQUIRE(all_sends.size() > sends);
        return now - start;
    }
    void flush(std::uint64_t id) {
        p.begin_flush(id, pushed, now);
        collect();
    }
    void wait_durable(std::uint64_t id) {
        p.begin_durable(id, pushed, now);
        collect();
    }
    void close(clock::duration deadline) {
        p.begin_close(pushed, now + deadline, now);
        collect();
    }

    // Answers the oldest unanswered spool write: stored as own record `ref`, or refused.
    spool_ref written(std::uint64_t ref, error_code ec = {}) {
        REQUIRE_FALSE(spool_writes.empty());
        const auto w = spool_writes.front();
        spool_writes.erase(spool_writes.begin());
        p.on_spool_written(w.id, ec, {0, ref}, now);
        collect();
        return {0, ref};
    }
    // Answers the pending spool read with `batches` (and the spool's status after it).
    void read_back(std::vector<spool_replay> batches, spool_read_status st = {}) {
        REQUIRE(spool_reads.size() == 1);
        spool_reads.clear();
        p.on_spool_read(std::move(batches), st, now);
        collect();
    }
    // A batch as the spool returns it: `events` events of 100 bytes.
    spool_replay replay(std::uint32_t origin, std::uint64_t ref, std::size_t events) const {
        auto le = std::make_shared<log_event>();
        le->url = ctx->endpoint;
        le->event_count = events;
        le->body = std::string(100 * events, 'x');
        return {{origin, ref}, std::move(le), 1s};
    }

    std::uint64_t dropped(drop_reason r) const {
        return p.counters().dropped[static_cast<std::size_t>(r)];
    }
};

}  // namespace

TEST_CASE("pipeline: accounting balances after every step of a scripted run", "[unit][pipeline]") {
    // Each script is a list of steps; harness::collect() checks balanced() after every one.
    struct script {
        const char* name;
        std::function<void(harness&)> run;
        std::uint64_t delivered, dropped;
    };
    const script s = GENERATE(values<script>({
        {"all delivered",
         [](harness& h) {
             h.events(7);  // 2 full batches sent, 1 event open
             h.ok();
             h.ok();
             h.advance(100ms);  // the open batch closes by age
             h.ok();
         },
         7, 0},
        {"a 4xx is given up at once",
         [](harness& h) {
             h.events(3);
             h.answer(0, make_error_code(error::http_status), 400);
         },
         0, 3},
        {"retried until the attempts run out",
         [](harness& h) {
             h.events(3);
             for (int i = 0; i < 3; ++i) {
                 h.fail_503();
                 h.advance(10s);
             }
         },
         0, 3},
        {"a retry then success",
         [](harness& h) {
             h.events(6);
             h.fail_503(0);
             h.ok(0);
             h.advance(10s);
             h.ok(0);
         },
         6, 0},
        {"too large events are dropped on their own",
         [](harness& h) {
             h.events(2);
             h.events(1, 70 * 1024);
             h.events(1);
             h.ok();
         },
         3, 1},
    }));
    harness h;
    s.run(h);
    CHECK(h.p.counters().delivered == s.delivered);
    CHECK(h.p.counters().dropped_total() == s.dropped);
    CHECK(h.p.counters().pending() == 0);
    CHECK(h.in_flight.empty());
    std::uint64_t reported = 0;
    for (auto& r : h.reports)
        reported += r.events;
    CHECK(reported == s.delivered + s.dropped - h.dropped(drop_reason::too_large));
}

TEST_CASE("pipeline: at most max_in_flight requests, the rest queued in order",
          "[unit][pipeline]") {
    harness h;
    h.events(12);  // 4 batches of 3; 2 slots
    CHECK(h.in_flight.size() == 2);
    CHECK(h.p.counters().queued_events == 6);
    CHECK(h.in_flight[0].id == 1);
    CHECK(h.in_flight[1].id == 2);
    h.ok(1);  // batch 2 done: batch 3 takes its slot
    REQUIRE(h.in_flight.size() == 2);
    CHECK(h.in_flight[1].id == 3);
    h.ok(0);
    h.ok(0);
    h.ok(0);
    CHECK(h.p.counters().delivered == 12);
    CHECK(h.all_sends.size() == 4);
}

TEST_CASE("pipeline: flush waits for its ring target, then for its batches, in order",
          "[unit][pipeline]") {
    harness h;
    h.events(2);     // one open batch of 2
    h.push_only(1);  // one event still in the ring
    h.flush(1);      // covers 3 events
    CHECK(h.flushes_done.empty());
    CHECK(h.all_sends.empty());  // the ring part is not done: nothing closed yet
    h.drain_ring();              // the third event arrives: the batch fills (3) and is sent
    REQUIRE(h.in_flight.size() == 1);
    h.events(1);  // after the flush: a new open batch
    h.flush(2);   // covers 4 events: closes the open batch of 1
    REQUIRE(h.in_flight.size() == 2);
    CHECK(h.flushes_done.empty());
    h.ok(1);  // the later batch settles first: flush 2 still waits for batch 1
    CHECK(h.flushes_done.empty());
    h.ok(0);
    REQUIRE(h.flushes_done.size() == 2);
    CHECK(!h.flushes_done[1]);
    CHECK(!h.flushes_done[2]);
    // Nothing pending: a flush completes at once.
    h.flush(3);
    CHECK(h.flushes_done.count(3) == 1);
}

TEST_CASE("pipeline: a durable wait closes no batch early and ends when its events settle",
          "[unit][pipeline]") {
    harness h;  // batches of 3, no spool: durable means delivered or dropped
    h.events(2);
    h.wait_durable(1);  // covers events 0-1, in an open batch
    CHECK(h.p.durable_watermark() == 0);
    h.events(1);  // the batch fills (0-2) and is sent
    h.events(2);  // a new open batch (3-4)
    h.wait_durable(2);
    CHECK(h.all_sends.size() == 1);  // nothing closed early
    CHECK(h.flushes_done.empty());
    h.ok();  // 0-2 delivered: the open batch (from 3) is the lowest not durable
    CHECK(h.p.durable_watermark() == 3);
    REQUIRE(h.flushes_done.count(1) == 1);
    CHECK(!h.flushes_done[1]);
    CHECK(h.flushes_done.count(2) == 0);
    h.advance(100ms);  // the open batch closes by age and is sent
    REQUIRE(h.in_flight.size() == 1);
    CHECK(h.flushes_done.count(2) == 0);
    // A dropped batch is settled: it no longer holds the watermark.
    h.answer(0, make_error_code(error::http_status), 400);
    CHECK(h.p.durable_watermark() == 5);
    CHECK(h.flushes_done.count(2) == 1);
    SECTION("events still in the ring hold it") {
        h.push_only(1);
        h.wait_durable(3);
        CHECK(h.flushes_done.count(3) == 0);
        h.drain_ring();
        h.advance(100ms);
        h.ok();
        CHECK(h.flushes_done.count(3) == 1);
    }
    SECTION("a durable wait can be cancelled") {
        h.events(1);
        h.wait_durable(4);
        CHECK(h.p.cancel_flush(4));
        CHECK_FALSE(h.p.cancel_flush(4));
        h.advance(100ms);
        h.ok();
        CHECK(h.flushes_done.count(4) == 0);
    }
}

TEST_CASE("pipeline: a cancelled flush is forgotten, the events still go", "[unit][pipeline]") {
    harness h;
    h.events(1);
    h.flush(1);
    CHECK(h.p.cancel_flush(1));
    CHECK_FALSE(h.p.cancel_flush(1));
    h.ok();
    CHECK(h.flushes_done.empty());
    CHECK(h.p.counters().delivered == 1);
}

TEST_CASE("pipeline: the close deadline gives up every stage with close_deadline",
          "[unit][pipeline]") {
    auto cfg = base_config();
    cfg.max_in_flight = 1;
    harness h(cfg);
    h.events(3);                       // batch 1: in flight
    h.events(3);                       // batch 2: queued
    h.events(3);                       // batch 3: queued
    h.ok();                            // batch 1 delivered; batch 2 in flight
    h.fail_503(0, 0.99);               // batch 2 waits to retry (~99 ms)
    REQUIRE(h.in_flight.size() == 1);  // batch 3 took the slot
    h.events(1);                       // an open batch
    h.push_only(2);                    // two events still in the ring
    CHECK(h.p.counters().retry_events == 3);
    CHECK(h.p.counters().in_flight_events == 3);
    CHECK(h.p.counters().open_events == 1);

    h.close(50ms);
    CHECK_FALSE(h.closed_with_deadline);
    h.advance(50ms);  // deadline: everything taken is given up at once
    CHECK(h.shutdowns == 1);
    CHECK(h.p.counters().pending() == 0);
    CHECK_FALSE(h.closed_with_deadline);  // the ring still holds 2 events
    CHECK(h.p.has_room());
    h.drain_ring();  // dropped as they are taken
    REQUIRE(h.closed_with_deadline);
    CHECK(*h.closed_with_deadline);
    CHECK(h.p.counters().delivered == 3);
    CHECK(h.dropped(drop_reason::close_deadline) == 3 + 3 + 1 + 2);
    // A late result of the abandoned request is ignored (its connection is still counted).
    REQUIRE(h.abandoned.size() == 1);
    const auto before = h.p.counters();
    dispatch_result late;
    late.status = 204;
    late.connection_opened = true;
    h.p.on_result(h.abandoned[0].id, {}, late, h.now, 0.5);
    h.collect();
    CHECK(h.p.counters().delivered == before.delivered);
    CHECK(h.p.counters().connections_opened == before.connections_opened + 1);
    // Every batch was reported exactly once.
    std::map<std::uint64_t, int> seen;
    for (auto& r : h.reports)
        ++seen[r.batch_id];
    for (auto& [id, n] : seen)
        CHECK(n == 1);
    CHECK(seen.size() == 4);
}

TEST_CASE("pipeline: a close without a deadline drains, flushes and completes once",
          "[unit][pipeline]") {
    harness h;
    h.events(4);  // 1 batch in flight, 1 event open
    h.flush(7);
    h.close(10s);
    REQUIRE(h.in_flight.size() == 2);
    h.ok(0);
    CHECK_FALSE(h.closed_with_deadline);
    h.ok(0);
    REQUIRE(h.closed_with_deadline);
    CHECK_FALSE(*h.closed_with_deadline);
    CHECK(h.shutdowns == 1);
    CHECK(h.flushes_done.count(7) == 1);
    CHECK(h.flushes_done[7] == error::closed);
    CHECK(h.p.counters().delivered == 4);
}

TEST_CASE("pipeline: retry schedule follows the policy and re-sends the same bytes",
          "[unit][pipeline]") {
    harness h;
    h.events(3);
    const auto first = h.in_flight[0].request;
    // Attempt 1 fails; jitter 0.5 of base 100 ms: retry in 50 ms.
    h.fail_503(0, 0.5);
    REQUIRE(h.timer);
    CHECK(*h.timer == h.now + 50ms);
    CHECK(h.p.counters().retry_events == 3);
    h.advance(49ms);
    CHECK(h.in_flight.empty());
    h.advance(1ms);
    REQUIRE(h.in_flight.size() == 1);
    CHECK(h.in_flight[0].attempt == 2);
    CHECK(h.in_flight[0].request == first);  // sealed: the same request object, same uuids
    // Attempt 2: 429 with Retry-After 2 s replaces the backoff.
    h.answer(0, make_error_code(error::http_status), 429, 2000ms);
    REQUIRE(h.timer);
    CHECK(*h.timer == h.now + 2000ms);
    h.advance(2s);
    REQUIRE(h.in_flight.size() == 1);
    CHECK(h.in_flight[0].attempt == 3);
    // Attempt 3 of 3 fails: given up with the reason of the last failure.
    h.answer(0, make_error_code(error::connect_failed));
    CHECK(h.dropped(drop_reason::connect_failed) == 3);
    REQUIRE(h.reports.size() == 1);
    CHECK(h.reports[0].attempts == 3);
    CHECK(h.p.counters().retries == 2);
    CHECK(h.p.counters().requests == 3);
}

TEST_CASE("pipeline: a retry waits for a slot, before newer batches", "[unit][pipeline]") {
    auto cfg = base_config();
    cfg.max_in_flight = 1;
    harness h(cfg);
    h.events(3);
    h.fail_503(0, 0.0);  // retry due at once (jitter 0)
    h.events(6);         // batches 2 and 3: batch 2 takes the free slot
    REQUIRE(h.in_flight.size() == 1);
    CHECK(h.in_flight[0].id == 2);
    h.advance(1ms);  // batch 1 is ready but the slot is busy
    CHECK(h.p.counters().retry_events == 3);
    h.ok(0);  // slot free: the retry of batch 1 goes before batch 3
    REQUIRE(h.in_flight.size() == 1);
    CHECK(h.in_flight[0].id == 1);
    CHECK(h.in_flight[0].attempt == 2);
}

TEST_CASE("pipeline: backpressure pauses the drain and resumes it once", "[unit][pipeline]") {
    auto cfg = base_config();
    cfg.max_in_flight = 1;
    cfg.batch.max_batch_bytes = 2048;
    cfg.backlog_max_bytes = 4096;  // room for one queued batch of ~1.5 KB next to a full one
    harness h(cfg);
    h.events(3, 400);  // batch 1 in flight (~1.3 KB)
    CHECK(h.p.has_room());
    h.events(3, 400);  // batch 2 queued
    CHECK(h.p.has_room());
    h.events(3, 400);  // batch 3 queued: 2.6 KB + 2 KB > 4 KB
    CHECK_FALSE(h.p.has_room());
    h.p.pause_drain();
    h.ok();  // batch 2 goes: 1.3 KB queued, room again
    CHECK(h.p.has_room());
    CHECK(h.resumes == 1);
    h.ok();
    CHECK(h.resumes == 1);  // not paused anymore: no second resume
    h.ok();
    CHECK(h.p.counters().delivered == 9);
}

TEST_CASE("pipeline: a batch that does not fit the backlog is dropped as backlog_full",
          "[unit][pipeline]") {
    auto cfg = base_config();
    cfg.max_in_flight = 1;
    cfg.batch.batch_size = 100;
    cfg.batch.max_batch_bytes = 2048;
    cfg.backlog_max_bytes = 2048;
    harness h(cfg);
    h.ctx = test::make_context("http://a/v1/events");
    h.events(1, 1500);
    h.ctx = test::make_context("http://b/v1/events");
    h.events(1, 1500);
    h.ctx = test::make_context("http://c/v1/events");
    h.events(1, 1500);
    h.flush(1);  // closes three batches at once: one sent, one queued, one does not fit
    CHECK(h.in_flight.size() == 1);
    CHECK(h.p.counters().queued_events == 1);
    CHECK(h.dropped(drop_reason::backlog_full) == 1);
    h.ok();
    h.ok();
    CHECK(h.flushes_done.count(1) == 1);
}

TEST_CASE("pipeline: the timer is armed for the earliest of age, retry and deadline",
          "[unit][pipeline]") {
    harness h;
    h.events(1);  // open batch: due in 100 ms
    REQUIRE(h.timer);
    CHECK(*h.timer == h.now + 100ms);
    h.timer.reset();
    h.close(30ms);  // the deadline comes first
    REQUIRE(h.timer);
    CHECK(*h.timer == h.now + 30ms);
}

TEST_CASE("pipeline: logging and reporting cost nothing when off", "[unit][pipeline]") {
    auto cfg = base_config();
    cfg.report_results = false;
    cfg.logging = false;
    harness h(cfg);
    h.events(3);
    h.answer(0, make_error_code(error::http_status), 400);
    CHECK(h.reports.empty());
    CHECK(h.logs == 0);
    CHECK(h.dropped(drop_reason::rejected_4xx) == 3);
}

// ---- endpoint health ----------------------------------------------------------------------

namespace {

pipeline_config health_config_for_tests() {
    auto c = base_config();
    c.health.failure_threshold = 3;
    c.health.probe_initial = 250ms;
    c.health.probe_max = 2s;
    c.max_in_flight = 4;
    return c;
}

struct failure_kind {
    const char* name;
    error_code ec;
    unsigned status;
};

}  // namespace

TEST_CASE("pipeline health: every endpoint-level failure kind counts toward down",
          "[unit][pipeline][health]") {
    const failure_kind k = GENERATE(values<failure_kind>({
        {"refused", make_error_code(error::connect_failed), 0},
        {"resolve", make_error_code(error::resolve_failed), 0},
        {"connect timeout", make_error_code(error::connect_timeout), 0},
        {"request timeout", make_error_code(error::request_timeout), 0},
        {"reset", make_error_code(error::connection_lost), 0},
        {"bad response", make_error_code(error::bad_response), 0},
        {"tls handshake", make_error_code(error::tls_handshake_failed), 0},
        {"500", make_error_code(error::http_status), 500},
        {"503", make_error_code(error::http_status), 503},
        {"429", make_error_code(error::http_status), 429},
        {"408", make_error_code(error::http_status), 408},
    }));
    CAPTURE(k.name);
    harness h(health_config_for_tests());
    h.events(12);  // 4 batches in flight
    REQUIRE(h.in_flight.size() == 4);
    h.answer(0, k.ec, k.status);
    h.answer(0, k.ec, k.status);
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::up);
    h.answer(0, k.ec, k.status);  // the third in a row
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);
    CHECK(h.p.counters().outages == 1);
    CHECK(h.p.counters().held_events == 9);  // the two waiting to retry and the third
    h.answer(0, k.ec, k.status);             // the last one in flight joins them
    CHECK(h.p.counters().held_events == 12);
    CHECK(h.p.counters().retry_events == 0);
    CHECK(h.p.counters().dropped_total() == 0);
    CHECK(h.p.counters().endpoints_down == 1);
    CHECK(h.p.counters().worst_state == std::uint64_t(endpoint_state::down));
}

TEST_CASE("pipeline health: answers that concern the batch do not make it down",
          "[unit][pipeline][health]") {
    const failure_kind k = GENERATE(values<failure_kind>({
        {"400", make_error_code(error::http_status), 400},
        {"413", make_error_code(error::http_status), 413},
        {"tls verify", make_error_code(error::tls_verify_failed), 0},
        {"custom dispatcher", make_error_code(error::dispatcher_failed), 0},
    }));
    CAPTURE(k.name);
    auto cfg = health_config_for_tests();
    cfg.retry.max_attempts = 1;
    harness h(cfg);
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.answer(0, k.ec, k.status);
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::up);
    CHECK(h.p.counters().outages == 0);
    CHECK(h.p.counters().dropped_total() == 12);
}

TEST_CASE("pipeline health: a 4xx answer breaks a run of failures", "[unit][pipeline][health]") {
    harness h(health_config_for_tests());
    h.events(12);
    h.fail_503();
    h.fail_503();
    h.answer(0, make_error_code(error::http_status), 400);  // the endpoint answered
    h.fail_503();
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::up);
}

TEST_CASE("pipeline health: one probe at a time on an exponential, jittered, capped schedule",
          "[unit][pipeline][health]") {
    harness h(health_config_for_tests());
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.answer(0, make_error_code(error::connect_failed), 0, {}, 1.0);
    REQUIRE(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);
    // Jitter 1.0: the whole step. The first probe 250 ms after the outage began.
    std::vector<clock::duration> waits;
    for (int probe = 0; probe < 6; ++probe) {
        waits.push_back(h.until_next_send());
        REQUIRE(h.in_flight.size() == 1);  // exactly one probe
        CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::probing);
        CHECK(h.in_flight[0].id == 1);  // the oldest held batch
        h.answer(0, make_error_code(error::connect_failed), 0, {}, 1.0);
        CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);
    }
    const std::vector<clock::duration> expected = {250ms, 500ms, 1000ms, 2000ms, 2000ms, 2000ms};
    CHECK(waits == expected);
    CHECK(h.p.counters().probes == 6);
    // Half the step with jitter 0.
    h.until_next_send();
    h.answer(0, make_error_code(error::connect_failed), 0, {}, 0.0);
    CHECK(h.until_next_send() == 1000ms);
}

TEST_CASE("pipeline health: outage attempts do not use up a batch's attempts",
          "[unit][pipeline][health]") {
    auto cfg = health_config_for_tests();
    cfg.retry.max_attempts = 2;
    cfg.retry.max_retry_time = 1s;
    harness h(cfg);
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    // Twenty failed probes over much more than max_retry_time: nothing is given up.
    for (int probe = 0; probe < 20; ++probe) {
        h.until_next_send();
        REQUIRE(h.in_flight.size() == 1);
        h.answer(0, make_error_code(error::connect_failed));
    }
    CHECK(h.p.counters().dropped_total() == 0);
    CHECK(h.p.counters().held_events == 12);
    // The endpoint comes back: the probe is delivered, the rest go at once, oldest first.
    h.until_next_send();
    REQUIRE(h.in_flight.size() == 1);
    CHECK(h.in_flight[0].id == 1);
    h.ok();
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::up);
    REQUIRE(h.in_flight.size() == 3);  // the whole pool
    CHECK(h.in_flight[0].id == 2);
    CHECK(h.in_flight[1].id == 3);
    CHECK(h.in_flight[2].id == 4);
    while (!h.in_flight.empty())
        h.ok();
    CHECK(h.p.counters().delivered == 12);
    CHECK(h.p.counters().endpoints_down == 0);
    CHECK(h.p.counters().outage_ms > 0);
    // Reported attempts are the requests made, probes included.
    std::uint64_t max_attempts = 0;
    for (auto& r : h.reports)
        max_attempts = std::max<std::uint64_t>(max_attempts, r.attempts);
    CHECK(max_attempts == 22);
}

TEST_CASE("pipeline health: an answer sent before the outage settles its batch, not the outage",
          "[unit][pipeline][health]") {
    harness h(health_config_for_tests());
    h.events(12);
    REQUIRE(h.in_flight.size() == 4);
    for (int i = 0; i < 3; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    REQUIRE(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);
    // The fourth request was on its way before: its 2xx delivers it, the endpoint stays down.
    h.ok();
    CHECK(h.p.counters().delivered == 3);
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);
    CHECK(h.all_sends.size() == 4);  // nothing more sent before the probe
    h.until_next_send();
    REQUIRE(h.in_flight.size() == 1);
    h.ok();  // the probe
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::up);
    while (!h.in_flight.empty())
        h.ok();
    CHECK(h.p.counters().delivered == 12);
    CHECK(h.p.counters().outages == 1);
}

TEST_CASE("pipeline health: new batches for a down endpoint are held, not sent",
          "[unit][pipeline][health]") {
    harness h(health_config_for_tests());
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    const auto sends = h.all_sends.size();
    h.events(30);
    CHECK(h.all_sends.size() == sends);
    CHECK(h.p.counters().held_events == 42);
    CHECK(h.p.counters().queued_events == 0);
}

TEST_CASE("pipeline health: a 429 with Retry-After pauses the endpoint for that long",
          "[unit][pipeline][health]") {
    harness h(health_config_for_tests());
    h.events(6);  // two batches in flight
    h.answer(0, make_error_code(error::http_status), 429, 3000ms);
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);  // at once, not after 3
    REQUIRE(h.timer);
    CHECK(*h.timer == h.now + 3000ms);
    // The other batch was on its way before the 429: it is delivered, and the pause holds.
    h.ok();
    CHECK(h.p.counters().delivered == 3);
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);
    h.events(3);
    CHECK(h.in_flight.empty());
    CHECK(h.until_next_send() == 3000ms);  // the probe, when the pause is over
    h.ok();
    CHECK(h.p.state_of(h.ctx->endpoint) == endpoint_state::up);
    REQUIRE(h.in_flight.size() == 1);  // the batch held behind it goes at once
    h.ok();
    CHECK(h.p.counters().delivered == 9);
}

TEST_CASE("pipeline health: no request before Retry-After passes", "[unit][pipeline][health]") {
    auto cfg = health_config_for_tests();
    cfg.max_in_flight = 1;
    harness h(cfg);
    h.events(9);
    h.answer(0, make_error_code(error::http_status), 429, 2000ms);
    const auto sends = h.all_sends.size();
    h.events(3);
    h.advance(1999ms);
    CHECK(h.all_sends.size() == sends);
    h.advance(1ms);
    CHECK(h.all_sends.size() == sends + 1);
    CHECK(h.in_flight[0].id == 1);
}

TEST_CASE("pipeline health: one endpoint down does not hold another", "[unit][pipeline][health]") {
    harness h(health_config_for_tests());
    const auto a = test::make_context("http://a/v1/events");
    const auto b = test::make_context("http://b/v1/events");
    h.ctx = a;
    h.events(9);
    for (int i = 0; i < 3; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    REQUIRE(h.p.state_of(a->endpoint) == endpoint_state::down);
    h.ctx = b;
    h.events(6);
    CHECK(h.in_flight.size() == 2);
    h.ok();
    h.ok();
    CHECK(h.p.counters().delivered == 6);
    CHECK(h.p.state_of(b->endpoint) == endpoint_state::up);
    CHECK(h.p.counters().held_events == 9);
}

TEST_CASE("pipeline health: held batches count toward the memory room",
          "[unit][pipeline][health]") {
    auto cfg = health_config_for_tests();
    cfg.batch.max_batch_bytes = 2048;
    cfg.backlog_max_bytes = 7000;
    harness h(cfg);
    h.events(12, 400);
    for (int i = 0; i < 4; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    CHECK(h.p.counters().held_bytes > 5000);
    CHECK_FALSE(h.p.has_room());  // ~5.5 KB held + a full batch > 7000
    h.p.pause_drain();
    h.until_next_send();  // a probe succeeds: everything goes, room again
    h.ok();
    CHECK(h.p.has_room());
    CHECK(h.resumes == 1);
}

TEST_CASE("pipeline health: batches older than max_age are dropped as expired",
          "[unit][pipeline][health]") {
    auto cfg = health_config_for_tests();
    cfg.health.max_age = 10s;
    harness h(cfg);
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    h.advance(5s);
    if (!h.in_flight.empty())
        h.answer(0, make_error_code(error::connect_failed));
    h.events(3);  // closed 5 s later
    while (h.now < clock::time_point{} + 1000h + 10s) {
        h.advance(std::min<clock::duration>(*h.timer - h.now, 10s));
        if (!h.in_flight.empty())
            h.answer(0, make_error_code(error::connect_failed));
    }
    CHECK(h.dropped(drop_reason::expired) == 12);
    CHECK(h.p.counters().held_events + h.p.counters().in_flight_events == 3);
}

TEST_CASE("pipeline health: close during an outage ends at the deadline",
          "[unit][pipeline][health]") {
    harness h(health_config_for_tests());
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    h.close(1s);
    h.advance(250ms);  // a probe goes out
    CHECK_FALSE(h.closed_with_deadline);
    h.advance(750ms);
    REQUIRE(h.closed_with_deadline);
    CHECK(*h.closed_with_deadline);
    CHECK(h.dropped(drop_reason::close_deadline) == 12);
}

// ---- the disk spool --------------------------------------------------------------------------

namespace {

pipeline_config spool_config_for_tests(pipeline_spool mode = pipeline_spool::overflow) {
    auto c = health_config_for_tests();
    c.spool = mode;
    return c;
}

}  // namespace

TEST_CASE("pipeline spool: a down endpoint's batches go to disk but the next probe, and come back",
          "[unit][pipeline][spool]") {
    harness h(spool_config_for_tests());
    h.events(12);  // 4 batches in flight
    for (int i = 0; i < 4; ++i)
        h.fail_503();
    REQUIRE(h.p.state_of(h.ctx->endpoint) == endpoint_state::down);
    // One held batch stays in memory for the probe; the three others are written to disk.
    CHECK(h.p.counters().held_events == 3);
    REQUIRE(h.spool_writes.size() == 3);
    for (const auto& w : h.spool_writes)
        CHECK(w.read_back);
    CHECK(h.p.counters().spooling_events == 9);
    for (std::uint64_t ref = 1; ref <= 3; ++ref)
        h.written(ref);
    CHECK(h.p.counters().spooled_events == 9);
    CHECK(h.p.counters().spooled_bytes > 0);
    CHECK(h.p.counters().spool_writes == 3);
    CHECK(h.p.counters().waiting_bytes() == h.p.counters().held_bytes);  // the rest left memory
    // More events while down: their batches go to disk too.
    h.events(3);
    REQUIRE(h.spool_writes.size() == 1);
    h.written(4);
    CHECK(h.p.counters().spooled_events == 12);
    CHECK(h.spool_reads.empty());  // nothing is read back while the endpoint is down

    // The probe succeeds: the endpoint is up, and the spool is read back.
    h.until_next_send();
    h.ok();
    REQUIRE(h.p.state_of(h.ctx->endpoint) == endpoint_state::up);
    REQUIRE(h.spool_reads.size() == 1);
    std::vector<spool_replay> back;
    for (std::uint64_t ref = 1; ref <= 4; ++ref)
        back.push_back(h.replay(0, ref, 3));
    h.read_back(std::move(back));
    CHECK(h.p.counters().spooled_events == 0);
    CHECK(h.p.counters().spool_reads == 4);
    while (!h.in_flight.empty())
        h.ok();
    CHECK(h.p.counters().delivered == 15);
    CHECK(h.p.counters().pending() == 0);
    CHECK(h.p.counters().dropped_total() == 0);
    // Every record read back is acknowledged once delivered.
    std::vector<std::uint64_t> acked;
    for (const auto& a : h.acks)
        acked.push_back(a.id);
    std::sort(acked.begin(), acked.end());
    CHECK(acked == std::vector<std::uint64_t>{1, 2, 3, 4});
}

TEST_CASE("pipeline spool: past half the memory room, batches go to disk",
          "[unit][pipeline][spool]") {
    auto cfg = spool_config_for_tests();
    cfg.max_in_flight = 1;
    cfg.backlog_max_bytes = 8 * 1024;
    cfg.batch.max_batch_bytes = 2 * 1024;
    harness h(cfg);
    h.events(60, 200);  // 20 batches of ~700 bytes: 1 in flight, the rest wait
    const auto& c = h.p.counters();
    CHECK(c.queued_bytes <= cfg.backlog_max_bytes / 2);
    CHECK_FALSE(h.spool_writes.empty());
    CHECK(c.dropped_total() == 0);
    CHECK(c.queued_events + c.spooling_events + c.in_flight_events == 60);
}

TEST_CASE("pipeline spool: the close deadline leaves what is not delivered in the spool",
          "[unit][pipeline][spool]") {
    harness h(spool_config_for_tests());
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.answer(0, make_error_code(error::connect_failed));
    for (std::uint64_t ref = 1; ref <= 3; ++ref)
        h.written(ref);  // 3 batches on disk, 1 held in memory
    h.events(2);         // an open batch
    h.close(1s);
    // Closing closes the open batch; its endpoint is down, so it goes to disk too.
    REQUIRE(h.spool_writes.size() == 1);
    CHECK(h.spool_writes[0].read_back);
    h.advance(1s);
    // At the deadline the batch kept in memory (out as a probe by now) is written for a later
    // processor; the ones on disk stay there. Close waits for the writes.
    REQUIRE(h.spool_writes.size() == 2);
    CHECK_FALSE(h.spool_writes[1].read_back);
    CHECK_FALSE(h.closed_with_deadline);
    h.written(4);
    h.written(5);
    REQUIRE(h.closed_with_deadline);
    CHECK(h.p.counters().left_in_spool == 14);
    CHECK(h.p.counters().dropped_total() == 0);
    CHECK(h.p.counters().pending() == 0);
    CHECK(h.acks.empty());  // nothing settled: a later processor delivers them
}

TEST_CASE("pipeline spool: a refused write goes back to memory, or is dropped as spool_full",
          "[unit][pipeline][spool]") {
    SECTION("room in memory: held there; no write is tried for a while") {
        harness h(spool_config_for_tests());
        h.events(12);
        for (int i = 0; i < 4; ++i)
            h.fail_503();
        REQUIRE(h.spool_writes.size() == 3);
        h.written(0, make_error_code(error::spool_write_failed));
        CHECK(h.p.counters().spool_write_failures == 1);
        CHECK(h.p.counters().held_events == 6);  // back in memory
        h.written(0, make_error_code(error::spool_write_failed));
        h.written(0, make_error_code(error::spool_write_failed));
        CHECK(h.p.counters().held_events == 12);
        h.events(3);
        CHECK(h.spool_writes.empty());  // the spool rests after a refusal
        CHECK(h.p.counters().held_events == 15);
        CHECK(h.p.counters().dropped_total() == 0);
    }
    SECTION("no room in memory either: dropped with reason spool_full") {
        auto cfg = spool_config_for_tests();
        cfg.backlog_max_bytes = 4 * 1024;
        cfg.batch.max_batch_bytes = 2 * 1024;
        harness h(cfg);
        h.events(12);
        for (int i = 0; i < 4; ++i)
            h.fail_503();
        h.events(30, 300);  // fills memory while the writes are unanswered
        while (!h.spool_writes.empty())
            h.written(0, make_error_code(error::spool_full));
        CHECK(h.dropped(drop_reason::spool_full) > 0);
        CHECK(h.dropped(drop_reason::backlog_full) == 0);
        CHECK(h.p.counters().waiting_bytes() <= cfg.backlog_max_bytes);
    }
}

TEST_CASE("pipeline spool: recovered batches are their own inflow", "[unit][pipeline][spool]") {
    harness h(spool_config_for_tests());
    h.p.on_spool_open(3, 9, h.now);
    h.collect();
    CHECK(h.p.counters().recovered == 9);
    CHECK(h.p.counters().pending_recovered() == 9);
    REQUIRE(h.spool_reads.size() == 1);
    spool_read_status st;
    st.skipped_corrupt_events = 3;  // one of them failed its checksum
    h.read_back({h.replay(1, 7, 3), h.replay(1, 9, 3)}, st);
    REQUIRE(h.in_flight.size() == 2);
    h.ok();
    h.answer(0, make_error_code(error::http_status), 400);
    const auto& c = h.p.counters();
    CHECK(c.delivered_recovered == 3);
    CHECK(c.dropped_recovered[std::size_t(drop_reason::rejected_4xx)] == 3);
    CHECK(c.dropped_recovered[std::size_t(drop_reason::spool_corrupt)] == 3);
    CHECK(c.pending_recovered() == 0);
    // The per-process identity is untouched.
    CHECK(c.dequeued == 0);
    CHECK(c.delivered == 0);
    CHECK(c.dropped_total() == 0);
    REQUIRE(h.acks.size() == 2);
    CHECK(h.acks[0].origin == 1);
}

TEST_CASE("pipeline spool: mode always writes every batch before its first attempt",
          "[unit][pipeline][spool]") {
    harness h(spool_config_for_tests(pipeline_spool::always));
    h.events(6);
    CHECK(h.all_sends.empty());
    REQUIRE(h.spool_writes.size() == 2);
    CHECK_FALSE(h.spool_writes[0].read_back);
    h.written(1);
    CHECK(h.all_sends.size() == 1);
    h.written(2);
    CHECK(h.all_sends.size() == 2);
    h.ok();
    h.ok();
    CHECK(h.p.counters().delivered == 6);
    CHECK(h.acks.size() == 2);
    SECTION("a refused write does not hold the batch back") {
        h.events(3);
        h.written(0, make_error_code(error::spool_write_failed));
        CHECK(h.in_flight.size() == 1);
    }
}

TEST_CASE("pipeline spool: own records that do not come back are dropped by reason",
          "[unit][pipeline][spool]") {
    harness h(spool_config_for_tests());
    h.events(12);
    for (int i = 0; i < 4; ++i)
        h.fail_503();
    for (std::uint64_t ref = 1; ref <= 3; ++ref)
        h.written(ref);
    h.until_next_send();
    h.ok();  // up: read back
    spool_read_status st;
    st.skipped_corrupt_events = 3;  // record 2 failed its checksum
    h.read_back({h.replay(0, 1, 3), h.replay(0, 3, 3)}, st);
    while (!h.in_flight.empty())
        h.ok();
    CHECK(h.dropped(drop_reason::spool_corrupt) == 3);
    CHECK(h.p.counters().delivered == 9);
    CHECK(h.p.counters().pending() == 0);
    CHECK(h.p.counters().dropped_recovered_total() == 0);
}

TEST_CASE("pipeline spool: a batch written to the spool is durable before it is delivered",
          "[unit][pipeline][spool]") {
    harness h(spool_config_for_tests(pipeline_spool::always));
    h.events(3);  // one full batch, being written
    h.wait_durable(1);
    CHECK(h.flushes_done.empty());
    h.events(3);  // a second batch (3-5), being written
    h.wait_durable(2);
    h.written(1);  // the first is on disk, then sent
    REQUIRE(h.flushes_done.count(1) == 1);
    CHECK(h.flushes_done.count(2) == 0);
    CHECK(h.in_flight.size() == 1);  // not delivered yet
    CHECK(h.p.durable_watermark() == 3);
    // A refused write leaves the batch in memory only: not durable until it settles.
    h.written(0, make_error_code(error::spool_write_failed));
    CHECK(h.flushes_done.count(2) == 0);
    h.ok(1);
    CHECK(h.flushes_done.count(2) == 1);
    CHECK(h.p.durable_watermark() == 6);
}
