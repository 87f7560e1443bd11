#pragma once

// The pipeline core: every decision about events and batches after the hand-off ring, with no
// I/O. No Asio, no clock of its own, no atomics, no threads. The processor's strand (the shell,
// processor.cpp) feeds it inputs with the current time and carries out the actions it queues:
// send a batch, arm the wake-up timer, complete a flush or close, report a batch result, shut
// the dispatcher down, resume draining, log. Unit tests drive it with a fake clock.
//
// Stages of an accepted event:
//   ring (shell) -> open batch (batcher) -> queued -> in flight -> delivered
//                                              ^          |
//                                              |          v
//                                          ready <- retry wait        (or dropped, by reason)
//                                              ^
//                                            held  (while its endpoint is down; one probe at a
//                                                   time goes back in flight)
//
// With the disk spool (spool_mode overflow), a batch that would wait in memory past half the
// memory room, or be held behind another held batch of a down endpoint, is written to disk
// instead (spooling -> spooled: its bytes leave memory) and read back (-> ready) when every
// endpoint is up and the room is mostly free. With spool_mode always, every batch is written
// (spooling) before its first attempt and stays in memory too. At the close deadline what is
// not delivered is written (or left, when already on disk) for a later processor to deliver
// (left_in_spool). Batches found in the spools of earlier processes (recovered) are their own
// inflow with their own counters.
// One batch_record type travels through every stage; the counters follow it, so
// `counters().balanced()` holds after every input.
//
// Endpoint health (per endpoint URL): `up`; after health.failure_threshold consecutive
// endpoint-level failures (or a 429 with Retry-After) `down`: its batches are held, attempts
// made during the outage do not count against the retry limits, and one probe (the oldest held
// batch) goes out on an exponential, jittered schedule (`probing`). An answer that is not an
// endpoint-level failure brings it back `up`, and its held batches go first, over the whole
// pool.

#include "core/batcher.hpp"

#include <evdispatch/config.hpp>
#include <evdispatch/error.hpp>
#include <evdispatch/event_dispatcher.hpp>
#include <evdispatch/log_event.hpp>
#include <evdispatch/processor.hpp>
#include <evdispatch/retry_policy.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace evdispatch::detail {

/// Counters of the pipeline. Plain words only: the shell publishes them with a seqlock as an
/// array of 64-bit words.
struct pipeline_counters {
    std::uint64_t dequeued = 0;  ///< Events taken from the ring (on_event calls).
    std::uint64_t delivered = 0;
    std::array<std::uint64_t, drop_reason_count> dropped{};  ///< After dequeue only.
    std::uint64_t open_events = 0;                           ///< In open batches.
    std::uint64_t queued_events = 0;  ///< In closed batches waiting for a slot (the backlog).
    std::uint64_t queued_bytes = 0;
    std::uint64_t in_flight_events = 0;
    std::uint64_t in_flight = 0;     ///< Requests outstanding.
    std::uint64_t retry_events = 0;  ///< Waiting for their backoff, or ready to retry.
    std::uint64_t retry_bytes = 0;
    std::uint64_t held_events = 0;  ///< Held while their endpoint is down.
    std::uint64_t held_bytes = 0;
    std::uint64_t worst_state = 0;     ///< endpoint_state of the worst endpoint.
    std::uint64_t endpoints_down = 0;  ///< Down or probing now.
    std::uint64_t outages = 0;
    std::uint64_t outage_ms = 0;  ///< Current outages included (as of the last input).
    std::uint64_t probes = 0;
    std::uint64_t batches_sent = 0;  ///< Batches closed and handed on.
    std::uint64_t batches_delivered = 0;
    std::uint64_t batches_failed = 0;
    std::uint64_t requests = 0;
    std::uint64_t retries = 0;
    std::uint64_t bytes_sent = 0;
    std::uint64_t connections_opened = 0;
    std::uint64_t compressed_batches = 0;    ///< Batches gzip-compressed when sealed.
    std::uint64_t compressed_in_bytes = 0;   ///< Their JSON bytes...
    std::uint64_t compressed_out_bytes = 0;  ///< ...and their gzip bytes.
    std::uint64_t compression_refused = 0;   ///< Gzipped requests refused (415/400), re-sent plain.

    // ---- the disk spool -----------------------------------------------------------------
    std::uint64_t spooling_events = 0;  ///< Being written to the spool (still in memory).
    std::uint64_t spooling_bytes = 0;
    std::uint64_t spooled_events = 0;  ///< On disk only, to be read back.
    std::uint64_t spooled_bytes = 0;
    std::uint64_t spool_writes = 0;          ///< Batches written to the spool.
    std::uint64_t spool_written_events = 0;  ///< Their events.
    std::uint64_t spool_write_failures = 0;  ///< Writes the spool refused (full, disk error).
    std::uint64_t spool_reads = 0;           ///< Own batches read back from the spool.
    /// Events left in the spool at close (settled: a later processor delivers them).
    std::uint64_t left_in_spool = 0;
    /// Events found in the spools of processes that are gone, delivered or dropped here.
    std::uint64_t recovered = 0;
    std::uint64_t delivered_recovered = 0;
    std::array<std::uint64_t, drop_reason_count> dropped_recovered{};
    std::uint64_t recovered_memory_bytes = 0;  ///< Read back, waiting in memory to be sent.

    /// Events accepted into the pipeline and not settled.
    std::uint64_t pending() const noexcept {
        return open_events + queued_events + in_flight_events + retry_events + held_events +
               spooling_events + spooled_events;
    }
    /// Bytes of closed batches waiting to be sent (the memory room backlog_max_bytes bounds).
    std::uint64_t waiting_bytes() const noexcept {
        return queued_bytes + retry_bytes + held_bytes + spooling_bytes + recovered_memory_bytes;
    }
    std::uint64_t dropped_recovered_total() const noexcept {
        std::uint64_t n = 0;
        for (auto v : dropped_recovered)
            n += v;
        return n;
    }
    /// Recovered events not delivered nor dropped yet (in memory or still on disk).
    std::uint64_t pending_recovered() const noexcept {
        return recovered - delivered_recovered - dropped_recovered_total();
    }
    std::uint64_t dropped_total() const noexcept {
        std::uint64_t n = 0;
        for (auto v : dropped)
            n += v;
        return n;
    }
    /// Every event taken from the ring is delivered, dropped for a reason, pending, or left in
    /// the spool at close.
    bool balanced() const noexcept {
        return dequeued == delivered + dropped_total() + pending() + left_in_spool &&
               recovered >= delivered_recovered + dropped_recovered_total();
    }
};

inline constexpr std::size_t pipeline_counter_words = sizeof(pipeline_counters) / 8;
static_assert(sizeof(pipeline_counters) % 8 == 0 && std::is_trivially_copyable_v<pipeline_counters>,
              "pipeline_counters is published word by word");

/// Where a batch is in the disk spool (spool::record_ref).
struct spool_ref {
    std::uint32_t origin = 0;  ///< 0: this processor's own spool; > 0: an adopted one.
    std::uint64_t id = 0;
};

/// What a spooled batch is written for (see spool_write_action).
enum class spool_purpose : std::uint8_t {
    overflow,  ///< To leave memory: read back later.
    always,    ///< spool_mode always: before its first attempt; it stays in memory too.
    close,     ///< At the close deadline: for a later processor.
};

/// A closed batch after the batcher: its request is sealed (the bytes never change again, so
/// retries re-send the same uuids). The same record is queued, in flight, waiting to retry,
/// ready to retry or held (and with the spool: spooling, or spooled without its request).
struct batch_record {
    std::uint64_t id = 0;  ///< Batch id (closing order; flushes wait by it).
    /// Unique key of the record (attempts and spool writes are answered by it): the batch id,
    /// except for batches read back from the spool, which get keys of their own.
    std::uint64_t key = 0;
    std::shared_ptr<const log_event> request;
    std::vector<clock::time_point> created;  ///< Each event's build time (for latency).
    std::uint32_t endpoint = 0;              ///< Index of its endpoint in the pipeline.
    unsigned attempts = 0;                   ///< Requests made (reported).
    unsigned counted = 0;                    ///< Attempts that count against retry.max_attempts.
    bool probe = false;                      ///< The request in flight is its endpoint's probe.
    clock::time_point sealed{};  ///< When it was closed (health.max_age runs from here).
    clock::time_point first_attempt{};
    clock::duration held_for{};  ///< Time held (not counted against retry.max_retry_time).
    clock::time_point held_since{};
    clock::time_point retry_at{};
    std::size_t event_count = 0;  ///< Of its request (kept while the request is on disk only).
    std::size_t byte_count = 0;
    std::optional<spool_ref> disk;  ///< Also in the spool: acknowledged there when settled.
    spool_purpose purpose = spool_purpose::overflow;  ///< While spooling.
    bool recovered = false;  ///< Read from the spool of a process that is gone.
    /// Ring position of its first event (closed_batch::first_seq), and whether it still counts
    /// against the durable watermark (neither settled nor written to the spool yet).
    std::uint64_t first_seq = 0;
    bool awaiting_durable = false;

    std::size_t events() const noexcept { return event_count; }
    std::size_t bytes() const noexcept { return byte_count; }
};

// ---- actions: what the shell must do after an input ------------------------------------------

/// Hand `request` to the dispatcher; its result comes back as on_result(id, ...).
struct send_action {
    std::uint64_t id;  ///< The record's key.
    unsigned attempt;  ///< 1 for the first attempt.
    std::shared_ptr<const log_event> request;
};
/// Make sure on_tick runs at `at` (or soon after). Earlier requests may be superseded.
struct arm_timer_action {
    clock::time_point at;
};
/// Complete the flush waiter `waiter` with `ec`.
struct complete_flush_action {
    std::uint64_t waiter;
    boost::system::error_code ec;
};
/// Complete every close waiter; pending is 0 now.
struct complete_close_action {
    bool deadline_passed;
};
/// Call on_batch_result (only queued when reporting is on). `result.created` and
/// `result.message` are to be pointed at `created` and `message` by the shell.
struct report_action {
    batch_result result;
    std::vector<clock::time_point> created;
    std::string message;
};
/// An endpoint's health changed: call on_endpoint_state and log.
struct endpoint_change_action {
    std::string url;
    endpoint_state from;
    endpoint_state to;
    unsigned failures;
    std::string message;
    clock::duration outage{};      ///< to == up: how long it was down
    clock::duration next_probe{};  ///< to == down: wait until the next probe
};
/// Tell the dispatcher to abandon outstanding work.
struct shutdown_dispatcher_action {};
/// Draining was paused (pause_drain) and there is room again: schedule a drain.
struct resume_drain_action {};
/// Write `request` to the spool (the shell answers with on_spool_written(id, ...)).
/// `read_back`: the spool returns it from a later read (it leaves memory); otherwise it stays
/// on disk only for a later processor. `age`: time since the batch was sealed.
struct spool_write_action {
    std::uint64_t id;
    std::shared_ptr<const log_event> request;
    clock::duration age;
    bool read_back;
};
/// Read spooled batches back, about `max_bytes` of them (answered by on_spool_read).
struct spool_read_action {
    std::size_t max_bytes;
};
/// A spooled batch is settled: acknowledge it in the spool (release: it is not settled but
/// leaves memory; the spool returns it from a later read).
struct spool_settle_action {
    spool_ref ref;
    bool release;
};
/// A diagnostic line (only queued when logging is on).
struct log_action {
    log_level level;
    std::string text;
};

using pipeline_action =
    std::variant<send_action, arm_timer_action, complete_flush_action, complete_close_action,
                 report_action, endpoint_change_action, shutdown_dispatcher_action,
                 resume_drain_action, spool_write_action, spool_read_action, spool_settle_action,
                 log_action>;

/// A batch read back from the spool (see on_spool_read).
struct spool_replay {
    spool_ref ref;
    std::shared_ptr<const log_event> request;
    clock::duration age;  ///< Time since it was sealed (in whichever process).
};

/// What the spool reported along with a read (see on_spool_read).
struct spool_read_status {
    std::uint64_t own_unread_records = 0;  ///< Own read-back records still on disk, unread.
    std::uint64_t recovered_unread_records = 0;
    std::uint64_t skipped_corrupt_events = 0;  ///< Skipped by this read: bad checksum...
    std::uint64_t skipped_expired_events = 0;  ///< ...or older than spool.max_age.
};

/// Whether and how the pipeline uses a spool (spool_config::mode, off when no spool).
enum class pipeline_spool : std::uint8_t { off, overflow, always };

/// What the pipeline needs from the processor's configuration.
struct pipeline_config {
    batch_config batch;
    retry_config retry;
    health_config health;
    std::size_t backlog_max_bytes = 16 * 1024 * 1024;
    std::size_t max_in_flight = 1;  ///< The dispatcher's max_in_flight().
    bool report_results = false;    ///< Queue report_action for every settled batch.
    int gzip_level = 0;             ///< Compress each sealed batch at this level (0: none).
    pipeline_spool spool = pipeline_spool::off;
    /// After a refused spool write, no write is tried for this long (memory only meanwhile).
    clock::duration spool_retry = std::chrono::seconds(1);
    bool logging = false;  ///< Queue log_action.
};

class pipeline {
public:
    explicit pipeline(const pipeline_config& cfg);

    // ---- inputs (each may queue actions; the shell runs take_actions() after each) ----------

    /// One event taken from the ring at `now`. Call after_events() once a run of these is done.
    void on_event(const user_event& ev, clock::time_point now);
    /// Ends a run of on_event calls: sends what closed, completes what settled.
    void after_events(clock::time_point now) { after_work(now); }

    /// The result of attempt `id` (see send_action). `jitter`: uniform in [0, 1), for backoff.
    void on_result(std::uint64_t id, boost::system::error_code ec, const dispatch_result& r,
                   clock::time_point now, double jitter);

    /// The wake-up timer fired (or any time): closes batches by age, moves due retries to
    /// ready, drops expired batches, sends due probes, and applies the close deadline when it
    /// has passed.
    void on_tick(clock::time_point now);

    /// Starts a flush covering every event up to ring position `ring_target` (the ring's push
    /// count when flush was called). `waiter` is the shell's id for it (completed by
    /// complete_flush_action).
    void begin_flush(std::uint64_t waiter, std::uint64_t ring_target, clock::time_point now);
    /// Forgets a flush waiter or a durable waiter (cancellation). Returns false if it is not
    /// waiting (anymore).
    bool cancel_flush(std::uint64_t waiter);

    /// Waits, without closing any batch early, until every event up to ring position
    /// `ring_target` is durable (see durable_watermark()); completed by complete_flush_action
    /// with `waiter`.
    void begin_durable(std::uint64_t waiter, std::uint64_t ring_target, clock::time_point now);

    /// Starts the close: `ring_final` is the ring's final push count (the ring is closed),
    /// `deadline` when to give up what is not delivered. A second call changes nothing.
    void begin_close(std::uint64_t ring_final, clock::time_point deadline, clock::time_point now);

    // ---- the disk spool (pipeline_config::spool not off) -------------------------------

    /// The spool opened with `records` batches holding `events` events of earlier processes.
    void on_spool_open(std::uint64_t records, std::uint64_t events, clock::time_point now);
    /// The result of spool_write_action `id`: `ec` empty and `ref` its place, or the error
    /// (error::spool_full, error::spool_write_failed).
    void on_spool_written(std::uint64_t id, boost::system::error_code ec, spool_ref ref,
                          clock::time_point now);
    /// The answer to spool_read_action: the batches read, own ones in the order they were
    /// written, then recovered ones.
    void on_spool_read(std::vector<spool_replay>&& batches, const spool_read_status& status,
                       clock::time_point now);

    /// The shell stopped draining because has_room() was false; a resume_drain_action follows
    /// once there is room.
    void pause_drain() noexcept { drain_paused_ = true; }

    // ---- queries ----------------------------------------------------------------------------

    /// Whether the shell may take more events from the ring (backpressure): false while the
    /// batches waiting to be sent (queued, retrying, held) leave no room for one more full one.
    bool has_room() const noexcept {
        return deadline_passed_ ||
               ctr_.waiting_bytes() + cfg_.batch.max_batch_bytes <= cfg_.backlog_max_bytes;
    }
    /// State of the endpoint `url` (up when it was never used).
    endpoint_state state_of(std::string_view url) const noexcept;
    const pipeline_counters& counters() const noexcept { return ctr_; }
    bool closing() const noexcept { return closing_; }
    bool closed() const noexcept { return closed_; }
    bool deadline_passed() const noexcept { return deadline_passed_; }
    /// Lowest id of a closed batch not yet settled (UINT64_MAX when none).
    std::uint64_t lowest_unsettled() const noexcept;
    /// Every event at a ring position below this is durable: delivered, dropped with a reason,
    /// or written to the disk spool (and synced there when spool.fsync is every_batch); or
    /// left in the spool at close.
    std::uint64_t durable_watermark() const noexcept;

    /// The queued actions, in order; the pipeline's queue is empty afterwards.
    std::vector<pipeline_action>& take_actions(std::vector<pipeline_action>& out) {
        out.swap(actions_);
        actions_.clear();
        return out;
    }

private:
    enum class stage { queued, in_flight, retry_wait, ready, held, spooling, spooled };

    struct endpoint {
        std::string url;
        endpoint_state state = endpoint_state::up;
        unsigned failures = 0;    // consecutive endpoint-level failures
        unsigned probe_step = 0;  // failed probes in this outage
        clock::time_point down_since{};
        clock::time_point next_probe{};
        std::deque<batch_record> held;  // by id
    };

    void after_work(clock::time_point now);
    void hand_on_closed(clock::time_point now);
    void enqueue(closed_batch&& b, clock::time_point now);
    void pump(clock::time_point now);
    void send(batch_record&& rec, clock::time_point now);
    void leave(stage s, const batch_record& rec) noexcept;
    void enter(stage s, const batch_record& rec) noexcept;
    std::uint32_t endpoint_index(const std::string& url);
    bool health_on() const noexcept { return cfg_.health.failure_threshold != 0; }
    void hold(batch_record&& rec, clock::time_point now);
    void route(batch_record&& rec, clock::time_point now);
    bool spill(batch_record& rec, clock::time_point now);
    void spool_write(batch_record&& rec, spool_purpose purpose, clock::time_point now);
    void leave_behind(batch_record&& rec, clock::time_point now);
    void settled_on_disk(const batch_record& rec);
    void maybe_read(clock::time_point now);
    bool spool_usable(clock::time_point now) const noexcept {
        return cfg_.spool != pipeline_spool::off && now >= spool_retry_at_;
    }
    void go_down(endpoint& ep, clock::time_point now, clock::duration wait, std::string_view why);
    void endpoint_ok(endpoint& ep, clock::time_point now);
    void change(endpoint& ep, endpoint_state to, std::string_view why, clock::duration outage,
                clock::duration next_probe);
    clock::duration probe_wait(unsigned step, double jitter) const noexcept;
    void expire(clock::time_point now);
    void update_health_counters(clock::time_point now);
    void give_up(batch_record&& rec, drop_reason reason, boost::system::error_code ec,
                 unsigned status, std::string_view message);
    void report(batch_record&& rec, bool delivered, drop_reason reason,
                boost::system::error_code ec, unsigned status, std::string_view message,
                clock::time_point now);
    void on_deadline(clock::time_point now);
    void progress_flushes(clock::time_point now);
    void progress_durable();
    void made_durable(batch_record& rec) noexcept;
    void compress(log_event& request);
    void check_close_done();
    void arm_timer();
    template <class... Parts>
    void log(log_level level, const Parts&... parts);

    pipeline_config cfg_;
    batcher batcher_;
    retry_policy policy_;
    pipeline_counters ctr_;
    std::vector<closed_batch> closed_scratch_;

    std::deque<batch_record> queued_;      // FIFO by id
    std::deque<batch_record> in_flight_;   // at most max_in_flight
    std::deque<batch_record> retry_wait_;  // until retry_at
    std::deque<batch_record> ready_;       // retry due (or back from held), by id; sent first
    std::vector<endpoint> endpoints_;      // few; indices are stable
    std::deque<batch_record> spooling_;    // being written, in write order
    // Own batches on disk only, as runs of consecutive spool ids (a 10-minute outage is one
    // run): memory does not grow with what is spooled. Sorted by first (the read-back order).
    struct spooled_run {
        std::uint64_t first = 0;  // spool ids first..last (some may be settled by the spool)
        std::uint64_t last = 0;
        std::uint64_t lowest_batch = 0;  // lowest batch id (flush ordering)
        std::uint64_t events = 0;
        std::uint64_t bytes = 0;
    };
    std::deque<spooled_run> spooled_;
    void add_spooled(const batch_record& rec);
    void lose_spooled(std::uint64_t events, std::uint64_t bytes, std::uint64_t& expired_budget);
    std::uint64_t outage_ms_closed_ = 0;  // outages that ended

    struct flush_waiter {
        std::uint64_t id;
        std::uint64_t ring_target;   // every event taken from the ring up to here...
        std::uint64_t batch_target;  // ...then every batch below this id settled (0: not yet)
    };
    std::vector<flush_waiter> flush_waiters_;

    struct durable_waiter {
        std::uint64_t id;
        std::uint64_t ring_target;
    };
    std::vector<durable_waiter> durable_waiters_;
    // first_seq of every closed batch that is neither settled nor on disk (few: batches, not
    // events), for durable_watermark().
    std::set<std::uint64_t> nondurable_;

    bool drain_paused_ = false;
    bool read_pending_ = false;                     // a spool_read_action is unanswered
    std::uint64_t recovered_unread_ = 0;            // recovered batches on disk, not read yet
    std::uint64_t next_recovered_id_ = 1ull << 61;  // ids of recovered batches (after own ones)
    clock::time_point spool_retry_at_{};            // no spool write before this
    clock::time_point read_retry_at_{};             // no spool read before this
    boost::system::error_code last_spool_error_;
    std::uint64_t next_key_ = 1ull << 62;  // keys of batches read back from the spool
    bool closing_ = false;
    bool closed_ = false;
    bool deadline_passed_ = false;
    std::uint64_t ring_final_ = 0;
    clock::time_point close_deadline_{};
    std::optional<clock::time_point> timer_at_;  // what the shell's timer is armed for
    clock::time_point last_now_{};

    std::vector<pipeline_action> actions_;
};

}  // namespace evdispatch::detail
