// The processor shell: the ring and its wake-up flag, the strand, one wake-up timer, the
// dispatcher calls, hooks, the logger, stored completion handlers and seqlock-published
// counters. Every decision is the pipeline's (core/pipeline.hpp): each strand entry point
// feeds it one input and then carries out the actions it queued (run_actions).

#include <evdispatch/http_event_dispatcher.hpp>
#include <evdispatch/processor.hpp>

#include "core/config_check.hpp"
#include "core/event_memory.hpp"
#include "core/mpsc_ring.hpp"
#include "core/pipeline.hpp"
#include "spool/worker.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <bit>
#include <exception>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace evdispatch {

namespace asio = boost::asio;
using boost::system::error_code;

namespace detail {

namespace {

template <class... F>
struct overloaded : F... {
    using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

pipeline_config make_pipeline_config(const processor_config& c, std::size_t max_in_flight,
                                     const processor_hooks& h) {
    pipeline_config p;
    p.batch = c.batch;
    p.retry = c.retry;
    p.health = c.health;
    p.backlog_max_bytes = c.backlog_max_bytes;
    p.max_in_flight = std::max<std::size_t>(1, max_in_flight);
    if (!c.spool.dir.empty())
        p.spool =
            c.spool.mode == spool_mode::always ? pipeline_spool::always : pipeline_spool::overflow;
    if (c.http.compression == http_compression::gzip)
        p.gzip_level = c.http.compression_level;
    p.report_results = static_cast<bool>(h.on_batch_result);
    p.logging = static_cast<bool>(h.logger);
    return p;
}

}  // namespace

/// State shared by the processor object and every handler it starts. Members below the
/// "strand only" line are touched only on the strand.
struct processor_state : std::enable_shared_from_this<processor_state> {
    using strand_type = asio::strand<asio::any_io_executor>;
    using flush_handler = asio::any_completion_handler<void(error_code)>;
    using close_handler = asio::any_completion_handler<void(error_code, close_report)>;

    processor_state(asio::any_io_executor ex, strand_type s, const processor_config& c,
                    processor_hooks h, std::shared_ptr<event_dispatcher> d,
                    std::unique_ptr<spool::worker> sp, std::uint64_t recovered_records,
                    std::uint64_t recovered_events)
        : cfg(c)
        , executor(std::move(ex))
        , strand(std::move(s))
        , ring(c.queue_capacity)
        , hooks(std::move(h))
        , dispatcher(std::move(d))
        , core(make_pipeline_config(c, dispatcher->max_in_flight(), hooks))
        , timer(strand)
        , poll_timer(strand)
        , jitter_state(static_cast<std::uint64_t>(clock::now().time_since_epoch().count()) | 1)
        , spool(std::move(sp)) {
        // What earlier processes left is counted before the constructor returns (metrics()
        // shows it at once); reading it back starts with the first actions run on the strand.
        if (spool)
            core.on_spool_open(recovered_records, recovered_events, clock::now());
        publish();
    }

    // ---- shared with producers and metrics readers ------------------------------------
    const processor_config cfg;
    const asio::any_io_executor executor;
    strand_type strand;
    mpsc_ring<event_ptr> ring;
    // True while a drain is scheduled, running or paused by backpressure. Producers post a
    // drain only when they are the one that flips it from false to true.
    alignas(cache_line) std::atomic<bool> drain_scheduled{false};
    alignas(cache_line) std::atomic<std::uint64_t> refused_full{0};
    std::atomic<std::uint64_t> refused_closed{0};
    std::atomic<std::uint64_t> next_waiter{1};
    // Dispatch completions still running on a dispatcher's thread (see start_attempt).
    std::shared_ptr<std::atomic<std::int64_t>> foreign_calls =
        std::make_shared<std::atomic<std::int64_t>>(0);
    // Seqlock-published copy of the pipeline's counters.
    alignas(cache_line) std::atomic<std::uint64_t> pub_seq{0};
    std::array<std::atomic<std::uint64_t>, pipeline_counter_words> pub{};

    // ---- strand only ------------------------------------------------------------------
    processor_hooks hooks;
    std::shared_ptr<event_dispatcher> dispatcher;
    pipeline core;
    std::vector<pipeline_action> actions;
    asio::steady_timer timer;
    asio::steady_timer poll_timer;  // the next look at the ring while events keep coming
    std::uint64_t jitter_state;
    // Node-based: Boost 1.81's any_completion_handler move *assignment* re-wraps its source
    // (it passes it on as an lvalue to its own converting constructor) and recurses until the
    // stack is gone, so these handlers are moved only by construction, never assigned (a
    // vector's erase assigns the elements after the one erased).
    std::map<std::uint64_t, flush_handler> flush_handlers;
    std::vector<close_handler> close_handlers;
    std::optional<close_report> final_report;
    // The spool thread (null without a spool). Its callbacks hold the state weakly and hand
    // their strong reference over to the strand, so the state is never destroyed (and this
    // thread never joined) on the spool thread.
    std::unique_ptr<spool::worker> spool;

    // ---- producer side ------------------------------------------------------------------

    void schedule_drain() noexcept {
        // seq_cst load: pairs with the consumer's seq_cst store(false) + tail load. Either
        // the consumer sees our claimed slot, or we see false here and post.
        if (drain_scheduled.load(std::memory_order_seq_cst))
            return;
        if (drain_scheduled.exchange(true, std::memory_order_seq_cst))
            return;
        try {
            post_drain();
        } catch (...) {
            // Out of memory while posting: leave the flag clear so the next producer retries.
            drain_scheduled.store(false, std::memory_order_seq_cst);
        }
    }

    void post_drain() {
        asio::post(strand, [self = shared_from_this()] { self->drain(); });
    }

    // ---- strand: entry points ---------------------------------------------------------------

    // Moves published events into the pipeline, at most drain_chunk per turn so that network
    // completions interleave with a flood of events. While the pipeline has no room
    // (backpressure), events stay in the ring and producers get queue_full once it fills;
    // drain_scheduled stays set, so producers do not post, and resume_drain_action restarts us.
    void drain() {
        const auto now = clock::now();
        std::size_t n = 0;
        {
            // The events' memory goes back to the producers' caches in one push per producer
            // per drain, not one free() of another thread's memory per event.
            const event_memory::return_scope gathering;
            event_ptr ev;
            while (n < cfg.drain_chunk && core.has_room() && ring.try_pop(ev)) {
                ++n;
                core.on_event(*ev, now);
                ev.reset();
            }
        }
        core.after_events(now);
        if (!core.has_room()) {
            core.pause_drain();
            run_actions();
            return;
        }
        run_actions();
        if (n == cfg.drain_chunk) {
            post_drain();
            return;
        }
        if (n > 0 && cfg.drain_poll.count() > 0 && !final_report) {
            // Busy: keep the flag set (producers do not post) and look again shortly. One
            // timer: arming it again cancels an earlier wait, so there is one chain of looks.
            poll_timer.expires_after(cfg.drain_poll);
            poll_timer.async_wait([self = shared_from_this()](error_code ec) {
                if (ec != asio::error::operation_aborted)
                    self->drain();
            });
            return;
        }
        drain_scheduled.store(false, std::memory_order_seq_cst);
        if (ring.has_claimed() && !drain_scheduled.exchange(true, std::memory_order_seq_cst))
            post_drain();
    }

    void on_result(std::uint64_t id, error_code ec, const dispatch_result& r) {
        core.on_result(id, ec, r, clock::now(), jitter());
        run_actions();
    }

    void on_timer() {
        core.on_tick(clock::now());
        run_actions();
    }

    // A flush, or (durable) a wait for the durable watermark; both complete by
    // complete_flush_action.
    void begin_flush(std::uint64_t id, std::uint64_t ring_target, bool durable, flush_handler h) {
        if (final_report) {  // closed: everything is settled
            asio::post(executor, asio::append(std::move(h), make_error_code(error::closed)));
            return;
        }
        flush_handlers.emplace(id, std::move(h));
        if (durable)
            core.begin_durable(id, ring_target, clock::now());
        else
            core.begin_flush(id, ring_target, clock::now());
        run_actions();
    }

    void cancel_flush(std::uint64_t id) {
        if (!core.cancel_flush(id))
            return;  // completed already
        complete_flush(id, asio::error::operation_aborted);
    }

    void begin_close(clock::duration deadline, close_handler h) {
        if (final_report) {
            const error_code ec = final_report->deadline_passed
                                      ? make_error_code(error::close_deadline)
                                      : error_code{};
            asio::post(executor, asio::append(std::move(h), ec, *final_report));
            return;
        }
        close_handlers.push_back(std::move(h));
        const auto now = clock::now();
        // The ring was closed before this was posted: its push count is final.
        core.begin_close(ring.pushed(), now + deadline, now);
        run_actions();
    }

    // ---- strand: carrying out the pipeline's actions -----------------------------------------

    void run_actions() {
        core.take_actions(actions);
        for (auto& a : actions) {
            std::visit(overloaded{
                           [&](send_action& s) { send(s); },
                           [&](arm_timer_action& t) { arm_timer(t.at); },
                           [&](complete_flush_action& f) { complete_flush(f.waiter, f.ec); },
                           [&](complete_close_action& c) { complete_close(c.deadline_passed); },
                           [&](report_action& r) { report(r); },
                           [&](endpoint_change_action& e) { endpoint_changed(e); },
                           [&](shutdown_dispatcher_action&) { dispatcher->shutdown(); },
                           [&](resume_drain_action&) { post_drain(); },
                           [&](spool_write_action& w) { spool_write(w); },
                           [&](spool_read_action& r) { spool_read(r.max_bytes); },
                           [&](spool_settle_action& st) {
                               spool->settle({st.ref.origin, st.ref.id}, st.release);
                           },
                           [&](log_action& l) { log(l.level, l.text); },
                       },
                       a);
        }
        actions.clear();
        publish();
    }

    void send(const send_action& s) {
        if (s.attempt == 1 && hooks.on_log_event) {
            try {
                hooks.on_log_event(*s.request);
            } catch (const std::exception& e) {
                log(log_level::error, std::string("on_log_event threw: ") + e.what());
            } catch (...) {
                log(log_level::error, "on_log_event threw");
            }
        }
        start_attempt(s.id, s.request);
    }

    void start_attempt(std::uint64_t id, std::shared_ptr<const log_event> request) {
        // The dispatcher may complete from any thread, or inline: always come back through a
        // post onto the strand. `foreign_calls` counts completions that may still be running
        // on a thread of the dispatcher's: an owning processor waits for it to reach zero
        // before its io_context (and so the strand) goes away.
        // The dispatcher's thread never holds the last reference to the state (the posted
        // handler takes it), and the counter has its own lifetime.
        auto self = shared_from_this();
        auto calls = foreign_calls;
        calls->fetch_add(1, std::memory_order_relaxed);
        try {
            dispatcher->async_dispatch(
                std::move(request), [self, id, calls](error_code ec, dispatch_result r) mutable {
                    auto& target = self->strand;
                    asio::post(target,
                               [self = std::move(self), id, ec, r = std::move(r)]() mutable {
                                   self->on_result(id, ec, r);
                               });
                    calls->fetch_sub(1, std::memory_order_release);
                });
        } catch (const std::exception& e) {
            // A custom dispatcher that throws instead of completing: the attempt failed.
            calls->fetch_sub(1, std::memory_order_release);
            dispatch_result r;
            r.message = std::string("dispatcher threw: ") + e.what();
            asio::post(strand, [self, id, r = std::move(r)] {
                self->on_result(id, make_error_code(error::dispatcher_failed), r);
            });
        }
    }

    // ---- strand: the spool ------------------------------------------------------------------

    // Runs `f(state)` on the strand, from the spool thread, if the state still exists.
    template <class F>
    static void back_to_strand(const std::weak_ptr<processor_state>& w, F&& f) {
        auto s = w.lock();
        if (!s)
            return;
        auto& target = s->strand;
        asio::post(target, [s = std::move(s), f = std::forward<F>(f)]() mutable { f(*s); });
    }

    void spool_write(const spool_write_action& w) {
        spool->write(w.request, std::chrono::duration_cast<std::chrono::milliseconds>(w.age),
                     w.read_back,
                     [wp = weak_from_this(), id = w.id](error_code ec, spool::record_ref ref) {
                         back_to_strand(wp, [id, ec, ref](processor_state& s) {
                             s.core.on_spool_written(id, ec, {ref.origin, ref.id}, clock::now());
                             s.run_actions();
                         });
                     });
    }

    void spool_read(std::size_t max_bytes) {
        spool->read(max_bytes, [wp = weak_from_this()](spool::read_result r) {
            back_to_strand(wp, [r = std::move(r)](processor_state& s) mutable {
                std::vector<spool_replay> batches;
                batches.reserve(r.batches.size());
                for (auto& b : r.batches)
                    batches.push_back({{b.ref.origin, b.ref.id}, std::move(b.request), b.age});
                spool_read_status st;
                st.own_unread_records = r.own_unread;
                st.recovered_unread_records = r.recovered_unread;
                st.skipped_corrupt_events = r.skipped_corrupt_events;
                st.skipped_expired_events = r.skipped_expired_events;
                s.core.on_spool_read(std::move(batches), st, clock::now());
                s.run_actions();
            });
        });
    }

    void arm_timer(clock::time_point at) {
        timer.expires_at(at);  // cancels an earlier wait (operation_aborted below)
        timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec == asio::error::operation_aborted)
                return;
            self->on_timer();
        });
    }

    void complete_flush(std::uint64_t id, error_code ec) {
        auto it = flush_handlers.find(id);
        if (it == flush_handlers.end())
            return;
        auto h = std::move(it->second);
        flush_handlers.erase(it);
        asio::post(executor, asio::append(std::move(h), ec));
    }

    // With a spool, close completes once the spool thread has done (and synced) every write
    // and acknowledgement asked for before: what the report says is on disk, is.
    void complete_close(bool deadline_passed) {
        if (!spool) {
            finish_close(deadline_passed);
            return;
        }
        spool->barrier([wp = weak_from_this(), deadline_passed] {
            back_to_strand(
                wp, [deadline_passed](processor_state& s) { s.finish_close(deadline_passed); });
        });
    }

    void finish_close(bool deadline_passed) {
        timer.cancel();
        poll_timer.cancel();
        publish();
        close_report rep;
        rep.metrics = snapshot();
        rep.delivered = rep.metrics.delivered;
        rep.not_delivered = rep.metrics.dropped_after_accept();
        rep.dropped = rep.metrics.dropped;
        rep.deadline_passed = deadline_passed;
        rep.spooled = rep.metrics.left_in_spool;
        final_report = rep;
        const error_code ec =
            deadline_passed ? make_error_code(error::close_deadline) : error_code{};
        for (auto& h : close_handlers)
            asio::post(executor, asio::append(std::move(h), ec, rep));
        close_handlers.clear();
    }

    void report(report_action& r) {
        if (!hooks.on_batch_result)
            return;
        r.result.created = r.created;
        r.result.message = r.message;
        try {
            hooks.on_batch_result(r.result);
        } catch (...) {
            log(log_level::error, "on_batch_result threw");
        }
    }

    void endpoint_changed(const endpoint_change_action& e) {
        if (!hooks.on_endpoint_state)
            return;
        endpoint_change c;
        c.url = e.url;
        c.from = e.from;
        c.to = e.to;
        c.failures = e.failures;
        c.message = e.message;
        c.outage = std::chrono::duration_cast<std::chrono::milliseconds>(e.outage);
        c.next_probe = std::chrono::duration_cast<std::chrono::milliseconds>(e.next_probe);
        try {
            hooks.on_endpoint_state(c);
        } catch (...) {
            log(log_level::error, "on_endpoint_state threw");
        }
    }

    void log(log_level lvl, std::string_view msg) noexcept {
        if (!hooks.logger)
            return;
        try {
            hooks.logger(lvl, msg);
        } catch (...) {
        }
    }

    // Uniform in [0, 1) for backoff jitter (xorshift64*, strand only).
    double jitter() noexcept {
        jitter_state ^= jitter_state >> 12;
        jitter_state ^= jitter_state << 25;
        jitter_state ^= jitter_state >> 27;
        const std::uint64_t v = jitter_state * 0x2545F4914F6CDD1Dull;
        return static_cast<double>(v >> 11) * (1.0 / 9007199254740992.0);
    }

    // ---- metrics ------------------------------------------------------------------------------

    // Strand only: the counters, copied word by word under the seqlock.
    void publish() noexcept {
        const auto w =
            std::bit_cast<std::array<std::uint64_t, pipeline_counter_words>>(core.counters());
        const auto s = pub_seq.load(std::memory_order_relaxed);
        pub_seq.store(s + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
        for (std::size_t i = 0; i < w.size(); ++i)
            pub[i].store(w[i], std::memory_order_relaxed);
        pub_seq.store(s + 2, std::memory_order_release);
    }

    // Any thread.
    metrics_snapshot snapshot() const noexcept {
        std::array<std::uint64_t, pipeline_counter_words> w{};
        for (;;) {
            const auto s1 = pub_seq.load(std::memory_order_acquire);
            if (s1 & 1) {
                std::this_thread::yield();
                continue;
            }
            for (std::size_t i = 0; i < w.size(); ++i)
                w[i] = pub[i].load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            if (pub_seq.load(std::memory_order_relaxed) == s1)
                break;
        }
        const auto c = std::bit_cast<pipeline_counters>(w);
        // Read after the pipeline's counters: every event they count as dequeued was pushed.
        const std::uint64_t pushed = ring.pushed();
        metrics_snapshot m;
        m.accepted = pushed;
        m.delivered = c.delivered;
        m.dropped = c.dropped;
        m.dropped[std::size_t(drop_reason::queue_full)] +=
            refused_full.load(std::memory_order_relaxed);
        m.dropped[std::size_t(drop_reason::closed)] +=
            refused_closed.load(std::memory_order_relaxed);
        m.queue_depth = pushed - c.dequeued;
        m.open_batch_events = c.open_events;
        m.backlog_events = c.queued_events;
        m.backlog_bytes = c.queued_bytes;
        m.in_flight_events = c.in_flight_events;
        m.in_flight = c.in_flight;
        m.retry_wait_events = c.retry_events;
        m.held_events = c.held_events;
        m.held_bytes = c.held_bytes;
        m.state = static_cast<endpoint_state>(c.worst_state);
        m.endpoints_down = c.endpoints_down;
        m.outages = c.outages;
        m.outage_ms = c.outage_ms;
        m.probes = c.probes;
        m.retries = c.retries;
        m.compressed_batches = c.compressed_batches;
        m.compressed_in_bytes = c.compressed_in_bytes;
        m.compressed_out_bytes = c.compressed_out_bytes;
        m.compression_refused = c.compression_refused;
        m.pending = m.queue_depth + c.pending();
        m.batches_sent = c.batches_sent;
        m.batches_delivered = c.batches_delivered;
        m.batches_failed = c.batches_failed;
        m.requests = c.requests;
        m.bytes_sent = c.bytes_sent;
        m.connections_opened = c.connections_opened;
        m.spooled_events = c.spooled_events;
        m.spool_writing_events = c.spooling_events;
        m.spool_writes = c.spool_writes;
        m.spool_written_events = c.spool_written_events;
        m.spool_write_failures = c.spool_write_failures;
        m.spool_reads = c.spool_reads;
        m.left_in_spool = c.left_in_spool;
        m.recovered = c.recovered;
        m.delivered_recovered = c.delivered_recovered;
        m.dropped_recovered = c.dropped_recovered;
        m.pending_recovered = c.pending_recovered();
        if (spool) {
            const auto& sc = spool->counters();
            m.spool_bytes = sc.live_bytes.load(std::memory_order_relaxed);
            m.spool_bytes_peak = sc.live_bytes_peak.load(std::memory_order_relaxed);
            m.spool_corrupt_bytes = sc.corrupt_bytes.load(std::memory_order_relaxed);
            m.spool_segments_quarantined = sc.segments_quarantined.load(std::memory_order_relaxed);
        }
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

std::shared_ptr<detail::processor_state> make_state(asio::any_io_executor ex,
                                                    const processor_config& cfg,
                                                    processor_hooks hooks) {
    detail::check_config(cfg, hooks.dispatcher != nullptr);
    auto strand = asio::make_strand(ex);
    auto dispatcher = hooks.dispatcher;
    if (!dispatcher)
        dispatcher = std::make_shared<http_event_dispatcher>(strand, cfg.endpoint, cfg.http,
                                                             cfg.tls, hooks.resolver);
    // The spool opens here, in the caller's thread: a bad spool.dir throws from the constructor.
    std::unique_ptr<detail::spool::worker> spool;
    std::uint64_t recovered_records = 0, recovered_events = 0;
    if (!cfg.spool.dir.empty()) {
        detail::spool::store_options o;
        o.dir = cfg.spool.dir;
        o.max_bytes = cfg.spool.max_bytes;
        o.segment_bytes = cfg.spool.segment_bytes;
        o.fsync = cfg.spool.fsync == spool_fsync::none ? detail::spool::fsync_policy::none
                  : cfg.spool.fsync == spool_fsync::every_batch
                      ? detail::spool::fsync_policy::every_batch
                      : detail::spool::fsync_policy::interval;
        o.fsync_interval = cfg.spool.fsync_interval;
        auto st = std::make_unique<detail::spool::store>(
            o, hooks.spool_fs ? hooks.spool_fs : detail::spool::make_posix_file_system());
        recovered_records = st->counters().recovered_records;
        recovered_events = st->counters().recovered_events;
        const auto sync_every =
            cfg.spool.fsync == spool_fsync::interval
                ? std::max(std::chrono::milliseconds(1), cfg.spool.fsync_interval / 2)
                : std::chrono::milliseconds(0);
        spool =
            std::make_unique<detail::spool::worker>(std::move(st), cfg.spool.max_age, sync_every);
    }
    auto state = std::make_shared<detail::processor_state>(
        std::move(ex), std::move(strand), cfg, std::move(hooks), std::move(dispatcher),
        std::move(spool), recovered_records, recovered_events);
    if (state->spool)
        asio::post(state->strand, [state] { state->run_actions(); });
    return state;
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
        start_close(state_, timeout, [](error_code, close_report) {});
        return;
    }
    if (std::this_thread::get_id() == thread_->thread.get_id()) {
        // Destroyed from one of its own callbacks: cannot wait for ourselves. Close in the
        // background and let the thread end when the work is done.
        start_close(state_, timeout, [](error_code, close_report) {});
        thread_->guard.reset();
        thread_->thread.detach();
        (void)thread_.release();  // the io_context must outlive the detached thread
        return;
    }
    std::promise<void> done;
    auto fut = done.get_future();
    start_close(state_, timeout, [&done](error_code, close_report) { done.set_value(); });
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
    if (thread_->exited.get_future().wait_for(std::chrono::seconds(2)) != std::future_status::ready)
        thread_->io.stop();
    thread_->thread.join();
    state_.reset();
}

batch_event_processor::executor_type batch_event_processor::get_executor() const noexcept {
    return state_->executor;
}

process_result batch_event_processor::process(event_ptr ev) noexcept {
    if (!ev || !ev->context)
        return process_result::invalid_event;
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

metrics_snapshot batch_event_processor::metrics() const noexcept {
    return state_->snapshot();
}

void batch_event_processor::start_wait(std::shared_ptr<detail::processor_state> st, bool durable,
                                       asio::any_completion_handler<void(error_code)> h) {
    const std::uint64_t target = st->ring.pushed();
    const std::uint64_t id = st->next_waiter.fetch_add(1, std::memory_order_relaxed);
    // Terminal cancellation: the waiter is forgotten on the strand and the handler completes
    // with operation_aborted (the events themselves go on being delivered). The slot handler
    // holds the state weakly and only posts, so it may fire from any thread, at any time.
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) {
        slot.assign(
            [w = std::weak_ptr<detail::processor_state>(st), id](asio::cancellation_type type) {
                if ((type & asio::cancellation_type::terminal) == asio::cancellation_type::none)
                    return;
                if (auto s = w.lock())
                    asio::post(s->strand, [s, id] { s->cancel_flush(id); });
            });
    }
    auto& strand = st->strand;
    asio::post(strand, [st = std::move(st), id, target, durable, h = std::move(h)]() mutable {
        st->begin_flush(id, target, durable, std::move(h));
    });
}

void batch_event_processor::start_close(
    std::shared_ptr<detail::processor_state> st, std::chrono::steady_clock::duration deadline,
    asio::any_completion_handler<void(error_code, close_report)> h) {
    st->ring.close();  // from now on process() refuses, before the strand even runs
    auto& strand = st->strand;
    asio::post(strand, [st = std::move(st), deadline, h = std::move(h)]() mutable {
        st->begin_close(deadline, std::move(h));
    });
}

}  // namespace evdispatch
