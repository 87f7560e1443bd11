#include <evdispatch/http_event_dispatcher.hpp>
#include <evdispatch/processor.hpp>

#include "batcher.hpp"
#include "mpsc_ring.hpp"

#include <evdispatch/retry_policy.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <deque>
#include <exception>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef EVDISPATCH_VERSION
#define EVDISPATCH_VERSION "0.0.0"
#endif

namespace evdispatch {

std::string_view version() noexcept { return EVDISPATCH_VERSION; }

namespace asio = boost::asio;
using boost::system::error_code;

namespace detail {

namespace {

[[noreturn]] void throw_config(const std::string& what) {
    throw boost::system::system_error(make_error_code(error::invalid_config), what);
}

// Indices of the counters the strand publishes.
enum counter : std::size_t {
    c_dequeued,
    c_delivered,
    c_open_events,
    c_backlog_events,
    c_backlog_bytes,
    c_inflight_events,
    c_inflight,
    c_batches_sent,
    c_batches_delivered,
    c_batches_failed,
    c_requests,
    c_bytes_sent,
    c_connections_opened,
    c_retry_events,
    c_retry_bytes,
    c_retries,
    c_drop0,
    c_count = c_drop0 + drop_reason_count
};

}  // namespace

/// State shared by the processor object and every handler it starts. Everything below the
/// "strand only" line is touched only on the strand.
struct processor_state : std::enable_shared_from_this<processor_state> {
    using strand_type = asio::strand<asio::any_io_executor>;

    processor_state(asio::any_io_executor ex, const processor_config& c, processor_hooks h)
        : cfg(c)
        , executor(ex)
        , strand(asio::make_strand(ex))
        , ring(c.queue_capacity)
        , hooks(std::move(h))
        , batches(c.batch)
        , policy(c.retry)
        , jitter_state(static_cast<std::uint64_t>(clock::now().time_since_epoch().count()) | 1)
        , flush_timer(strand)
        , close_timer(strand) {}

    // ---- shared with producers and metrics readers ------------------------------------
    const processor_config cfg;
    const asio::any_io_executor executor;
    strand_type strand;
    mpsc_ring<event_ptr> ring;
    // True while a drain is scheduled or running. Producers post a drain only when they are
    // the one that flips it from false to true.
    alignas(cache_line) std::atomic<bool> drain_scheduled{false};
    alignas(cache_line) std::atomic<std::uint64_t> refused_full{0};
    // Dispatch completions still running on a dispatcher's thread (see start_attempt).
    std::shared_ptr<std::atomic<std::int64_t>> foreign_calls =
        std::make_shared<std::atomic<std::int64_t>>(0);
    std::atomic<std::uint64_t> refused_closed{0};
    // Seqlock-published copy of the strand counters.
    alignas(cache_line) std::atomic<std::uint64_t> pub_seq{0};
    std::array<std::atomic<std::uint64_t>, c_count> pub{};

    // ---- strand only ------------------------------------------------------------------
    processor_hooks hooks;
    std::shared_ptr<event_dispatcher> dispatcher;
    std::size_t max_in_flight = 1;
    batcher batches;
    std::array<std::uint64_t, c_count> ctr{};
    std::vector<closed_batch> closed_scratch;

    retry_policy policy;
    std::uint64_t jitter_state;

    // A batch after it was first sent: in flight, waiting for its retry, or ready to retry.
    struct in_flight_batch {
        std::uint64_t id;
        std::shared_ptr<log_event> request;
        std::vector<clock::time_point> created;
        unsigned attempts = 0;
        clock::time_point first_attempt{};
        std::unique_ptr<asio::steady_timer> retry_timer;
    };
    std::deque<closed_batch> backlog;
    std::vector<in_flight_batch> in_flight;
    std::vector<in_flight_batch> retrying;      // waiting for their backoff to pass
    std::deque<in_flight_batch> ready_retries;  // backoff passed, waiting for a slot

    asio::steady_timer flush_timer;
    bool flush_timer_armed = false;
    clock::time_point flush_timer_at{};

    struct flush_waiter {
        std::uint64_t ring_target;   // every event pushed before the flush
        std::uint64_t batch_target;  // 0 until the ring part is done
        asio::any_completion_handler<void(error_code)> handler;
    };
    std::vector<flush_waiter> flush_waiters;

    bool drain_paused = false;  // drain stopped by backpressure (drain_scheduled stays set)
    bool closing = false;
    bool closed = false;
    bool deadline_passed = false;
    asio::steady_timer close_timer;
    std::vector<asio::any_completion_handler<void(error_code, close_report)>> close_waiters;
    close_report final_report;

    // ---- producer side ------------------------------------------------------------------

    void schedule_drain() noexcept {
        // seq_cst load: pairs with the consumer's seq_cst store(false) + tail load. Either
        // the consumer sees our claimed slot, or we see false here and post.
        if (drain_scheduled.load(std::memory_order_seq_cst)) return;
        if (drain_scheduled.exchange(true, std::memory_order_seq_cst)) return;
        try {
            asio::post(strand, [self = shared_from_this()] { self->drain(); });
        } catch (...) {
            // Out of memory while posting: leave the flag clear so the next producer retries.
            drain_scheduled.store(false, std::memory_order_seq_cst);
        }
    }

    // ---- strand ---------------------------------------------------------------------------

    void log(log_level lvl, std::string_view msg) noexcept {
        if (!hooks.logger) return;
        try {
            hooks.logger(lvl, msg);
        } catch (...) {
        }
    }

    void publish() noexcept {
        ctr[c_open_events] = batches.open_events();
        const auto s = pub_seq.load(std::memory_order_relaxed);
        pub_seq.store(s + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
        for (std::size_t i = 0; i < c_count; ++i) pub[i].store(ctr[i], std::memory_order_relaxed);
        pub_seq.store(s + 2, std::memory_order_release);
    }

    void drop_events(drop_reason r, std::uint64_t n) noexcept { ctr[c_drop0 + std::size_t(r)] += n; }

    // Moves published events into the batcher; at most drain_chunk per turn so that network
    // completions interleave with a flood of events.
    // Backpressure: while the backlog has no room for one more full batch, events stay in the
    // ring (and producers get queue_full once it fills) instead of being accepted into a
    // backlog that would have to drop them.
    bool backlog_blocked() const noexcept {
        return ctr[c_backlog_bytes] + ctr[c_retry_bytes] + cfg.batch.max_batch_bytes >
               cfg.backlog_max_bytes;
    }

    // Uniform in [0, 1) for backoff jitter (xorshift64*, strand only).
    double jitter() noexcept {
        jitter_state ^= jitter_state >> 12;
        jitter_state ^= jitter_state << 25;
        jitter_state ^= jitter_state >> 27;
        const std::uint64_t v = jitter_state * 0x2545F4914F6CDD1Dull;
        return static_cast<double>(v >> 11) * (1.0 / 9007199254740992.0);
    }

    void drain() {
        const auto now = clock::now();
        std::size_t n = 0;
        event_ptr ev;
        if (backlog_blocked()) {
            // Keep drain_scheduled set: producers do not post; on_result resumes us.
            drain_paused = true;
            publish();
            return;
        }
        while (n < cfg.drain_chunk && !backlog_blocked() && ring.try_pop(ev)) {
            ++n;
            take_event(*ev, now);
            ev.reset();
        }
        after_work();
        if (backlog_blocked()) {
            drain_paused = true;
            return;
        }
        if (n == cfg.drain_chunk) {
            asio::post(strand, [self = shared_from_this()] { self->drain(); });
            return;
        }
        drain_scheduled.store(false, std::memory_order_seq_cst);
        if (ring.has_claimed() && !drain_scheduled.exchange(true, std::memory_order_seq_cst))
            asio::post(strand, [self = shared_from_this()] { self->drain(); });
    }

    void take_event(const user_event& ev, clock::time_point now) {
        ++ctr[c_dequeued];
        if (deadline_passed) {
            drop_events(drop_reason::close_deadline, 1);
            return;
        }
        if (batches.add(ev, now, closed_scratch) == add_result::too_large) {
            drop_events(drop_reason::too_large, 1);
            log(log_level::warning, "event dropped: larger than batch.max_batch_bytes");
        }
        // Hand closed batches on at once, so the backlog accounting that gates the drain loop
        // is always current.
        hand_on_closed();
    }

    // Moves every batch the batcher closed into the backlog / in-flight stage.
    void hand_on_closed() {
        for (auto& b : closed_scratch) enqueue_batch(std::move(b));
        closed_scratch.clear();
    }

    // Runs after every strand entry point: send what closed, keep timers right, wake waiters,
    // publish counters.
    void after_work() {
        hand_on_closed();
        pump();
        arm_flush_timer();
        progress_flushes();
        check_close_done();
        publish();
    }

    void enqueue_batch(closed_batch&& b) {
        ++ctr[c_batches_sent];
        if (deadline_passed) {
            fail_batch(b.id, b.events, b.body.size(), b.created, drop_reason::close_deadline,
                       make_error_code(error::close_deadline), 0, 0, "close deadline passed");
            return;
        }
        if (in_flight.size() < max_in_flight && backlog.empty()) {
            send(std::move(b));
            return;
        }
        if (ctr[c_backlog_bytes] + b.body.size() > cfg.backlog_max_bytes) {
            log(log_level::warning, "batch dropped: backlog of unsent batches is full");
            fail_batch(b.id, b.events, b.body.size(), b.created, drop_reason::backlog_full,
                       make_error_code(error::backlog_full), 0, 0, "backlog full");
            return;
        }
        ctr[c_backlog_events] += b.events;
        ctr[c_backlog_bytes] += b.body.size();
        backlog.push_back(std::move(b));
    }

    void pump() {
        // Retries first: they are older than anything in the backlog.
        while (!ready_retries.empty() && in_flight.size() < max_in_flight) {
            in_flight_batch f = std::move(ready_retries.front());
            ready_retries.pop_front();
            ctr[c_retry_events] -= f.request->event_count;
            ctr[c_retry_bytes] -= f.request->body.size();
            ctr[c_inflight_events] += f.request->event_count;
            in_flight.push_back(std::move(f));
            ctr[c_inflight] = in_flight.size();
            start_attempt(in_flight.back());
        }
        while (!backlog.empty() && in_flight.size() < max_in_flight) {
            closed_batch b = std::move(backlog.front());
            backlog.pop_front();
            ctr[c_backlog_events] -= b.events;
            ctr[c_backlog_bytes] -= b.body.size();
            send(std::move(b));
        }
    }

    void send(closed_batch&& b) {
        auto req = std::make_shared<log_event>();
        req->url = b.context->endpoint;
        req->body = std::move(b.body);
        req->event_count = b.events;
        req->context = std::move(b.context);
        if (hooks.on_log_event) {
            try {
                hooks.on_log_event(*req);
            } catch (const std::exception& e) {
                log(log_level::error, std::string("on_log_event threw: ") + e.what());
            } catch (...) {
                log(log_level::error, "on_log_event threw");
            }
        }
        in_flight.push_back({b.id, req, std::move(b.created), 0, clock::now(), nullptr});
        ctr[c_inflight_events] += b.events;
        ctr[c_inflight] = in_flight.size();
        start_attempt(in_flight.back());
    }

    void start_attempt(in_flight_batch& f) {
        ++f.attempts;
        ++ctr[c_requests];
        const std::uint64_t id = f.id;
        // The dispatcher may complete from any thread, or inline: always come back through a
        // post onto the strand. `foreign_calls` counts completions that may still be running
        // on a thread of the dispatcher's: an owning processor waits for it to reach zero
        // before its io_context (and so the strand) goes away.
        // The dispatcher's thread never holds the last reference to the state (the posted
        // handler takes it), and the counter has its own lifetime.
        auto self = shared_from_this();
        auto calls = foreign_calls;
        calls->fetch_add(1, std::memory_order_relaxed);
        dispatcher->async_dispatch(
            f.request, [self, id, calls](error_code ec, dispatch_result r) mutable {
                auto& strand = self->strand;
                asio::post(strand, [self = std::move(self), id, ec, r = std::move(r)]() mutable {
                    self->on_result(id, ec, std::move(r));
                });
                calls->fetch_sub(1, std::memory_order_release);
            });
    }

    void on_result(std::uint64_t id, error_code ec, dispatch_result r) {
        auto it = std::find_if(in_flight.begin(), in_flight.end(),
                               [id](const in_flight_batch& f) { return f.id == id; });
        if (r.connection_opened) ++ctr[c_connections_opened];
        if (it == in_flight.end()) {  // abandoned at the close deadline
            publish();
            return;
        }
        in_flight_batch f = std::move(*it);
        in_flight.erase(it);
        const std::size_t events = f.request->event_count;
        ctr[c_inflight_events] -= events;
        ctr[c_inflight] = in_flight.size();
        if (!ec && (r.status == 0 || (r.status >= 200 && r.status < 300))) {
            ctr[c_delivered] += events;
            ++ctr[c_batches_delivered];
            ctr[c_bytes_sent] += f.request->body.size();
            report(id, events, f.request->body.size(), f.created, true, drop_reason{}, ec,
                   r.status, f.attempts, r.message);
        } else {
            if (!ec) ec = make_error_code(error::http_status);
            const auto now = clock::now();
            const auto d = policy.decide(
                f.attempts, attempt_outcome{ec, r.status, r.retry_after},
                std::chrono::duration_cast<std::chrono::milliseconds>(now - f.first_attempt),
                jitter());
            if (d.what == retry_decision::action::retry && !deadline_passed) {
                schedule_retry(std::move(f), d.delay, ec, r);
                after_work();
                resume_draining();
                return;
            }
            const drop_reason reason = d.reason;
            drop_events(reason, events);
            ++ctr[c_batches_failed];
            report(id, events, f.request->body.size(), f.created, false, reason, ec, r.status,
                   f.attempts, r.message);
            log(log_level::warning, "batch of " + std::to_string(events) +
                                        " events not delivered (" +
                                        std::string(to_string(reason)) + "): " + ec.message() +
                                        (r.message.empty() ? "" : " - " + r.message));
        }
        after_work();
        resume_draining();
    }

    // The batch keeps its body (and so every event its uuid): a receiver can recognise a
    // re-sent event. It leaves its in-flight slot while it waits, so batches behind it go on.
    void schedule_retry(in_flight_batch&& f, std::chrono::milliseconds delay, error_code ec,
                        const dispatch_result& r) {
        ++ctr[c_retries];
        ctr[c_retry_events] += f.request->event_count;
        ctr[c_retry_bytes] += f.request->body.size();
        log(log_level::info, "batch " + std::to_string(f.id) + " attempt " +
                                 std::to_string(f.attempts) + " failed (" + ec.message() +
                                 (r.status ? ", status " + std::to_string(r.status) : "") +
                                 "); retry in " + std::to_string(delay.count()) + " ms");
        const std::uint64_t id = f.id;
        f.retry_timer = std::make_unique<asio::steady_timer>(strand, delay);
        f.retry_timer->async_wait([self = shared_from_this(), id](error_code tec) {
            if (tec == asio::error::operation_aborted) return;
            self->on_retry_due(id);
        });
        retrying.push_back(std::move(f));
    }

    void on_retry_due(std::uint64_t id) {
        auto it = std::find_if(retrying.begin(), retrying.end(),
                               [id](const in_flight_batch& f) { return f.id == id; });
        if (it == retrying.end()) return;  // dropped at the close deadline
        in_flight_batch f = std::move(*it);
        retrying.erase(it);
        f.retry_timer.reset();
        ready_retries.push_back(std::move(f));
        after_work();
    }

    // A batch finished: room may have opened in the backlog.
    void resume_draining() {
        if (backlog_blocked()) return;
        if (drain_paused) {
            drain_paused = false;
            asio::post(strand, [self = shared_from_this()] { self->drain(); });
        }
        bool ring_part_pending = closing && ring.popped() < ring.pushed();
        for (auto& w : flush_waiters) ring_part_pending |= w.batch_target == 0;
        if (ring_part_pending) drain_for_waiters();
    }

    void fail_batch(std::uint64_t id, std::size_t events, std::size_t bytes,
                    const std::vector<clock::time_point>& created, drop_reason reason,
                    error_code ec, unsigned status, unsigned attempts, std::string_view msg) {
        drop_events(reason, events);
        ++ctr[c_batches_failed];
        report(id, events, bytes, created, false, reason, ec, status, attempts, msg);
    }

    void report(std::uint64_t id, std::size_t events, std::size_t bytes,
                const std::vector<clock::time_point>& created, bool delivered, drop_reason reason,
                error_code ec, unsigned status, unsigned attempts, std::string_view msg) {
        if (!hooks.on_batch_result) return;
        batch_result br;
        br.batch_id = id;
        br.events = events;
        br.bytes = bytes;
        br.delivered = delivered;
        br.reason = reason;
        br.ec = ec;
        br.status = status;
        br.attempts = attempts;
        br.message = msg;
        br.created = created;
        br.finished = clock::now();
        try {
            hooks.on_batch_result(br);
        } catch (...) {
            log(log_level::error, "on_batch_result threw");
        }
    }

    void arm_flush_timer() {
        const auto due = batches.next_deadline();
        if (!due || closed) return;
        if (flush_timer_armed && flush_timer_at <= *due) return;
        flush_timer_armed = true;
        flush_timer_at = *due;
        flush_timer.expires_at(*due);
        flush_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec == asio::error::operation_aborted) return;
            self->on_flush_timer();
        });
    }

    void on_flush_timer() {
        flush_timer_armed = false;
        batches.tick(clock::now(), closed_scratch);
        after_work();
    }

    // ---- flush -----------------------------------------------------------------------------

    void begin_flush(std::uint64_t ring_target, asio::any_completion_handler<void(error_code)> h) {
        flush_waiters.push_back({ring_target, 0, std::move(h)});
        drain_for_waiters();
    }

    // Pops until every flush waiter's ring target is reached (events from the ring are
    // published in order; a producer mid-publish is waited for by re-posting).
    void drain_for_waiters() {
        std::uint64_t want = 0;
        for (auto& w : flush_waiters)
            if (w.batch_target == 0) want = std::max(want, w.ring_target);
        if (closing) want = std::max(want, ring.pushed());
        const auto now = clock::now();
        event_ptr ev;
        while (ring.popped() < want && (deadline_passed || !backlog_blocked()) &&
               ring.try_pop(ev)) {
            take_event(*ev, now);
            ev.reset();
        }
        const std::uint64_t popped = ring.popped();
        bool need_flush = false;
        for (auto& w : flush_waiters)
            if (w.batch_target == 0 && popped >= w.ring_target) need_flush = true;
        if (closing && popped >= ring.pushed()) need_flush = true;
        if (need_flush) {
            batches.flush(closed_scratch);
            hand_on_closed();
            const std::uint64_t last = batches.last_closed_id();
            for (auto& w : flush_waiters)
                if (w.batch_target == 0 && popped >= w.ring_target) w.batch_target = last + 1;
        }
        // Not everything published yet: come back. When blocked by backpressure, on_result
        // comes back instead.
        if (popped < want && (deadline_passed || !backlog_blocked()))
            asio::post(strand, [self = shared_from_this()] { self->drain_for_waiters(); });
        after_work();
    }

    // Lowest id of a batch not yet settled (or "infinity").
    std::uint64_t lowest_unsettled() const noexcept {
        std::uint64_t low = UINT64_MAX;
        if (!backlog.empty()) low = std::min(low, backlog.front().id);
        for (auto& f : in_flight) low = std::min(low, f.id);
        for (auto& f : retrying) low = std::min(low, f.id);
        for (auto& f : ready_retries) low = std::min(low, f.id);
        return low;
    }

    void progress_flushes() {
        if (flush_waiters.empty()) return;
        const auto low = lowest_unsettled();
        for (std::size_t i = 0; i < flush_waiters.size();) {
            auto& w = flush_waiters[i];
            // batch_target is one past the last batch closed for this flush.
            if (w.batch_target != 0 && low >= w.batch_target) {
                auto h = std::move(w.handler);
                flush_waiters.erase(flush_waiters.begin() + static_cast<std::ptrdiff_t>(i));
                const error_code ec = closing ? make_error_code(error::closed) : error_code{};
                asio::post(executor, asio::append(std::move(h), ec));
                continue;
            }
            ++i;
        }
    }

    // ---- close -----------------------------------------------------------------------------

    void begin_close(clock::duration deadline,
                     asio::any_completion_handler<void(error_code, close_report)> h) {
        if (closed) {
            const error_code ec =
                deadline_passed ? make_error_code(error::close_deadline) : error_code{};
            asio::post(executor, asio::append(std::move(h), ec, final_report));
            return;
        }
        close_waiters.push_back(std::move(h));
        if (closing) return;
        closing = true;
        close_timer.expires_after(deadline);
        close_timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec == asio::error::operation_aborted) return;
            self->on_close_deadline();
        });
        drain_for_waiters();
    }

    void on_close_deadline() {
        if (closed) return;
        deadline_passed = true;
        log(log_level::warning, "close deadline passed: dropping what is not delivered");
        // Open batches, the backlog and in-flight batches are given up now.
        batches.flush(closed_scratch);
        hand_on_closed();  // dropped: deadline
        while (!backlog.empty()) {
            closed_batch b = std::move(backlog.front());
            backlog.pop_front();
            ctr[c_backlog_events] -= b.events;
            ctr[c_backlog_bytes] -= b.body.size();
            fail_batch(b.id, b.events, b.body.size(), b.created, drop_reason::close_deadline,
                       make_error_code(error::close_deadline), 0, 0, "close deadline passed");
        }
        for (auto& f : in_flight) {
            ctr[c_inflight_events] -= f.request->event_count;
            fail_batch(f.id, f.request->event_count, f.request->body.size(), f.created,
                       drop_reason::close_deadline, make_error_code(error::close_deadline), 0,
                       f.attempts, "close deadline passed while in flight");
        }
        in_flight.clear();
        ctr[c_inflight] = 0;
        for (auto* list : {&retrying}) {
            for (auto& f : *list) {
                if (f.retry_timer) f.retry_timer->cancel();
                fail_batch(f.id, f.request->event_count, f.request->body.size(), f.created,
                           drop_reason::close_deadline, make_error_code(error::close_deadline),
                           0, f.attempts, "close deadline passed while waiting to retry");
            }
            list->clear();
        }
        for (auto& f : ready_retries)
            fail_batch(f.id, f.request->event_count, f.request->body.size(), f.created,
                       drop_reason::close_deadline, make_error_code(error::close_deadline), 0,
                       f.attempts, "close deadline passed while waiting to retry");
        ready_retries.clear();
        ctr[c_retry_events] = 0;
        ctr[c_retry_bytes] = 0;
        if (dispatcher) dispatcher->shutdown();
        drain_for_waiters();  // remaining ring events are dropped with close_deadline
    }

    void check_close_done() {
        if (!closing || closed) return;
        if (ring.popped() < ring.pushed() || batches.open_events() != 0 || !backlog.empty() ||
            !in_flight.empty() || !retrying.empty() || !ready_retries.empty())
            return;
        closed = true;
        close_timer.cancel();
        flush_timer.cancel();
        publish();
        final_report.metrics = snapshot();
        final_report.delivered = final_report.metrics.delivered;
        final_report.not_delivered = final_report.metrics.dropped_after_accept();
        final_report.dropped = final_report.metrics.dropped;
        final_report.deadline_passed = deadline_passed;
        const error_code ec =
            deadline_passed ? make_error_code(error::close_deadline) : error_code{};
        for (auto& h : close_waiters)
            asio::post(executor, asio::append(std::move(h), ec, final_report));
        close_waiters.clear();
        if (!deadline_passed && dispatcher) dispatcher->shutdown();
        // Flush waiters are settled too: everything is.
        for (auto& w : flush_waiters)
            asio::post(executor, asio::append(std::move(w.handler), make_error_code(error::closed)));
        flush_waiters.clear();
    }

    // ---- metrics (any thread) ------------------------------------------------------------------

    metrics_snapshot snapshot() const noexcept {
        std::array<std::uint64_t, c_count> v{};
        for (;;) {
            const auto s1 = pub_seq.load(std::memory_order_acquire);
            if (s1 & 1) {
                std::this_thread::yield();
                continue;
            }
            for (std::size_t i = 0; i < c_count; ++i) v[i] = pub[i].load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            if (pub_seq.load(std::memory_order_relaxed) == s1) break;
        }
        // Read after the strand counters: every event they count as dequeued was pushed.
        const std::uint64_t pushed = ring.pushed();
        metrics_snapshot m;
        m.accepted = pushed;
        m.delivered = v[c_delivered];
        for (std::size_t r = 0; r < drop_reason_count; ++r) m.dropped[r] = v[c_drop0 + r];
        m.dropped[std::size_t(drop_reason::queue_full)] += refused_full.load(std::memory_order_relaxed);
        m.dropped[std::size_t(drop_reason::closed)] += refused_closed.load(std::memory_order_relaxed);
        m.queue_depth = pushed - v[c_dequeued];
        m.open_batch_events = v[c_open_events];
        m.backlog_events = v[c_backlog_events];
        m.backlog_bytes = v[c_backlog_bytes];
        m.in_flight_events = v[c_inflight_events];
        m.in_flight = v[c_inflight];
        m.retry_wait_events = v[c_retry_events];
        m.retries = v[c_retries];
        m.pending = m.queue_depth + m.open_batch_events + m.backlog_events + m.in_flight_events +
                    m.retry_wait_events;
        m.batches_sent = v[c_batches_sent];
        m.batches_delivered = v[c_batches_delivered];
        m.batches_failed = v[c_batches_failed];
        m.requests = v[c_requests];
        m.bytes_sent = v[c_bytes_sent];
        m.connections_opened = v[c_connections_opened];
        return m;
    }
};

}  // namespace detail

// ---- owning thread ---------------------------------------------------------------------------

struct batch_event_processor::owned_thread {
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::promise<void> exited;
    std::thread thread;
};

namespace {

void validate(const processor_config& c, bool custom_dispatcher) {
    using detail::throw_config;
    if (c.queue_capacity < 2) throw_config("queue_capacity must be at least 2");
    if (c.batch.batch_size == 0) throw_config("batch.batch_size must be at least 1");
    if (c.batch.flush_interval.count() <= 0)
        throw_config("batch.flush_interval must be at least 1 ms");
    if (c.batch.max_batch_bytes < 1024) throw_config("batch.max_batch_bytes must be at least 1024");
    if (c.backlog_max_bytes < c.batch.max_batch_bytes)
        throw_config("backlog_max_bytes must be at least batch.max_batch_bytes");
    if (c.drain_chunk == 0) throw_config("drain_chunk must be at least 1");
    if (c.retry.max_attempts == 0) throw_config("retry.max_attempts must be at least 1");
    if (c.retry.base_backoff.count() < 0 || c.retry.max_backoff < c.retry.base_backoff)
        throw_config("retry.max_backoff must be at least retry.base_backoff (both >= 0)");
    if (c.retry.max_retry_time.count() < 0 || c.retry.max_retry_after.count() < 0)
        throw_config("retry.max_retry_time and retry.max_retry_after must be >= 0");
    if (!custom_dispatcher && c.http.max_connections == 0)
        throw_config("http.max_connections must be at least 1");
}

std::shared_ptr<detail::processor_state> make_state(asio::any_io_executor ex,
                                                    const processor_config& cfg,
                                                    processor_hooks hooks) {
    validate(cfg, hooks.dispatcher != nullptr);
    auto dispatcher = hooks.dispatcher;
    auto st = std::make_shared<detail::processor_state>(ex, cfg, std::move(hooks));
    if (!dispatcher)
        dispatcher = std::make_shared<http_event_dispatcher>(st->strand, cfg.endpoint, cfg.http,
                                                             cfg.tls, st->hooks.resolver);
    st->dispatcher = std::move(dispatcher);
    st->max_in_flight = std::max<std::size_t>(1, st->dispatcher->max_in_flight());
    st->publish();
    return st;
}

}  // namespace

batch_event_processor::batch_event_processor(processor_config cfg, processor_hooks hooks)
    : thread_(std::make_unique<owned_thread>()) {
    state_ = make_state(thread_->io.get_executor(), cfg, std::move(hooks));
    thread_->thread = std::thread([t = thread_.get()] {
        t->io.run();
        t->exited.set_value();
    });
}

batch_event_processor::batch_event_processor(executor_type ex, processor_config cfg,
                                             processor_hooks hooks)
    : state_(make_state(std::move(ex), cfg, std::move(hooks))) {}

batch_event_processor::~batch_event_processor() {
    const auto timeout = state_->cfg.destructor_close_timeout;
    if (!thread_) {
        // On a user executor: start the close and return; handlers own the state.
        start_close(timeout, [](error_code, close_report) {});
        return;
    }
    if (std::this_thread::get_id() == thread_->thread.get_id()) {
        // Destroyed from one of its own callbacks: cannot wait for ourselves. Close in the
        // background and let the thread end when the work is done.
        start_close(timeout, [](error_code, close_report) {});
        thread_->guard.reset();
        thread_->thread.detach();
        (void)thread_.release();  // the io_context must outlive the detached thread
        return;
    }
    std::promise<void> done;
    auto fut = done.get_future();
    start_close(timeout, [&done](error_code, close_report) { done.set_value(); });
    // The close deadline bounds this wait; the extra margin only guards against a stuck
    // custom dispatcher holding the strand.
    fut.wait_for(timeout + std::chrono::seconds(5));
    // A dispatcher's thread may still be inside a completion (posting to our strand): the
    // io_context must outlive that. Bounded wait: a dispatcher that never completes after
    // shutdown() breaks its contract.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (state_->foreign_calls->load(std::memory_order_acquire) > 0 &&
           std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // Let the remaining handlers (cancelled timers, closing sockets) run out, briefly.
    thread_->guard.reset();
    if (thread_->exited.get_future().wait_for(std::chrono::seconds(2)) !=
        std::future_status::ready)
        thread_->io.stop();
    thread_->thread.join();
    state_.reset();
}

batch_event_processor::executor_type batch_event_processor::get_executor() const noexcept {
    return state_->executor;
}

process_result batch_event_processor::process(event_ptr ev) noexcept {
    if (!ev || !ev->context) return process_result::invalid_event;
    auto& st = *state_;
    switch (st.ring.try_push(ev)) {
        case detail::push_result::ok:
            st.schedule_drain();
            return process_result::accepted;
        case detail::push_result::full:
            st.refused_full.fetch_add(1, std::memory_order_relaxed);
            return process_result::dropped_queue_full;
        case detail::push_result::closed:
            break;
    }
    st.refused_closed.fetch_add(1, std::memory_order_relaxed);
    return process_result::dropped_closed;
}

metrics_snapshot batch_event_processor::metrics() const noexcept { return state_->snapshot(); }

void batch_event_processor::start_flush(asio::any_completion_handler<void(error_code)> h) {
    const std::uint64_t target = state_->ring.pushed();
    asio::post(state_->strand, [st = state_, target, h = std::move(h)]() mutable {
        st->begin_flush(target, std::move(h));
    });
}

void batch_event_processor::start_close(
    std::chrono::steady_clock::duration deadline,
    asio::any_completion_handler<void(error_code, close_report)> h) {
    state_->ring.close();  // from now on process() refuses, before the strand even runs
    asio::post(state_->strand, [st = state_, deadline, h = std::move(h)]() mutable {
        st->begin_close(deadline, std::move(h));
    });
}

}  // namespace evdispatch
