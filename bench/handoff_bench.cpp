// Cost of handing one pre-built event from P producer threads (1, 2, 4, 8) to one consumer
// that drains concurrently, for:
//   ring_shared     evdispatch's detail::mpsc_ring<event_ptr>::try_push
//   mutex_deque     mutex + condition_variable + std::deque<event_ptr> (lock, push_back,
//                   unlock, notify_one): what typical batch processors do
//   ring_raw        detail::mpsc_ring<const user_event*>::try_push
//   lockfree_queue  boost::lockfree::queue<const user_event*> (fixed-size), bounded_push
//   process         batch_event_processor::process(): ring + "drain scheduled" flag + the
//                   strand's drain and batcher, with a dispatcher that completes at once
//
//   cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
//   cmake --build build/release --target handoff_bench
//   build/release/bench/handoff_bench --benchmark_min_time=0.2
//
// How it measures. One consumer cannot keep up with producers that do nothing but push (on
// 2 cores it is also starved of CPU), so a flat-out loop would mostly time "full" refusals.
// Instead each producer pushes bursts of 512 events and, between bursts and outside the
// timing, sleeps until the consumer has caught up (at most one burst left in the queue). So
// the queue never fills, the consumer pops concurrently with the pushes, right behind the
// producers (the case of a service whose event rate is below what the drain can take), and
// what is timed is the push itself. Waiting for room only (a deep queue) would let the
// consumer lag thousands of slots behind, or sit descheduled, and the pushes would run
// uncontended and look 2-3x cheaper; the regime would also change from run to run.
// (Sustained throughput is the consumer's business: see `evdispatch bench`.)
//
// Columns:
// - Time: a producer's wall time per push (manual timer around the bursts only: the waits
//   between bursts are excluded). With more threads than cores it includes the time a
//   producer sat preempted inside a burst.
// - cpu_ns: producer CPU time per push (thread CPU clock around each burst): the cost of one
//   hand-off, unaffected by preemption.
// - items_per_second: 1 / Time, one producer's rate while it pushes.
// - sustained_per_s: events handed over per second of the whole run, waits included, all
//   producers together. The consumer bounds it (and the pacing's sleeps lower it): for
//   process() it shows roughly what the strand drains with a free dispatcher.
// - full_frac: fraction of pushes refused because the queue was full (should be ~0).
// - fill: mean queue depth when a burst starts (<= 512 by construction: the consumer is
//   right behind, every push contends with it for cache lines).
// - CPU (the framework's column) also counts the waits between bursts: ignore it.
// Every queue has capacity 10,000 (processor_config::queue_capacity's default). The event_ptr
// variants copy a pre-built shared_ptr (an atomic increment on the producer, a decrement on
// the consumer); the raw-pointer ones hand over `const user_event*` (boost::lockfree::queue
// needs a trivial type): compare ring_shared with mutex_deque (and process), ring_raw with
// lockfree_queue. Each producer has its own pool of distinct events, built before timing.
// The ring and Boost.Lockfree consumers poll (spin briefly, then yield); the mutex consumer
// sleeps on the condition variable and takes the whole deque under one lock; process() is
// drained by its strand on the processor's own io_context thread.

#include "core/mpsc_ring.hpp"
#include "support/workload.hpp"

#include <evdispatch/event_dispatcher.hpp>
#include <evdispatch/processor.hpp>

#include <benchmark/benchmark.h>
#include <boost/lockfree/policies.hpp>
#include <boost/lockfree/queue.hpp>

#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace evdispatch;

namespace {

constexpr std::size_t queue_capacity = 10'000;
constexpr int max_producers = 8;
constexpr std::int64_t burst = 512;      // 8 producers x 512 <= capacity / 2
constexpr std::size_t pool_size = 1024;  // events per producer; a power of two
constexpr std::size_t pool_mask = pool_size - 1;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

std::int64_t wall_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t thread_cpu_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// What reading the clocks around a burst costs (median of many empty bursts), subtracted from
// every burst so that it does not count as hand-off time.
struct timer_cost {
    std::int64_t wall = 0;
    std::int64_t cpu = 0;
};
const timer_cost& clock_overhead() {
    static const timer_cost cost = [] {
        constexpr int n = 2001;
        std::vector<std::int64_t> w(n), c(n);
        for (int i = 0; i < n; ++i) {
            const auto w0 = wall_ns();
            const auto c0 = thread_cpu_ns();
            const auto c1 = thread_cpu_ns();
            const auto w1 = wall_ns();
            w[i] = w1 - w0;
            c[i] = c1 - c0;
        }
        std::nth_element(w.begin(), w.begin() + n / 2, w.end());
        std::nth_element(c.begin(), c.begin() + n / 2, c.end());
        return timer_cost{w[n / 2], c[n / 2]};
    }();
    return cost;
}

// One pool of distinct pre-built events per producer thread, built once for the process.
const std::vector<event_ptr>& pool(int thread_index) {
    static const auto pools = [] {
        std::vector<std::vector<event_ptr>> p;
        for (int t = 0; t < max_producers; ++t)
            p.push_back(test::make_visitors(pool_size, std::uint64_t(t) * pool_size));
        return p;
    }();
    return pools.at(static_cast<std::size_t>(thread_index));
}

// Per-producer count of successful pushes, published after each burst (not timed).
struct producer_tally {
    alignas(detail::cache_line) std::atomic<std::uint64_t> pushed{0};
};
struct tallies {
    std::array<producer_tally, max_producers> t;
    std::uint64_t total() const noexcept {
        std::uint64_t s = 0;
        for (const auto& x : t)
            s += x.pushed.load(std::memory_order_acquire);
        return s;
    }
    // Fill from the consumer's count. The consumer may already have taken events of bursts
    // not yet published: clamp at 0.
    std::size_t depth(std::uint64_t popped) const noexcept {
        const std::uint64_t pushed = total();
        return pushed > popped ? static_cast<std::size_t>(pushed - popped) : 0;
    }
};

// Shares one fixture between the threads of one benchmark run. Thread 0 creates it before the
// timing loop and destroys it after (the loop's end is a barrier: every producer has stopped
// pushing by then); the others wait for the pointer. The slot is cleared before the run ends,
// so a run never sees the previous run's fixture.
template <class F>
struct run_fixture {
    static inline std::atomic<F*> slot{nullptr};

    static F* get(const benchmark::State& state, std::unique_ptr<F>& owner) {
        if (state.thread_index() == 0) {
            owner = std::make_unique<F>();
            slot.store(owner.get(), std::memory_order_release);
            return owner.get();
        }
        F* f = nullptr;
        while ((f = slot.load(std::memory_order_acquire)) == nullptr)
            std::this_thread::yield();
        return f;
    }
    static void clear() noexcept { slot.store(nullptr, std::memory_order_release); }
};

// The producer side, common to all variants: paced bursts of `burst` pushes, timed.
// `push(event)` returns whether the queue took it; `f.depth()` is the queue's current fill
// (may lag, never by more than the bursts in progress).
template <class F, class Push>
void produce(benchmark::State& state, F& f, tallies& tl, Push&& push) {
    const auto& events = pool(state.thread_index());
    // A burst starts when at most one burst is queued; with every other producer mid-burst
    // the queue then holds at most (threads + 1) x burst < capacity: never full.
    static_assert((max_producers + 1) * burst < queue_capacity);
    const std::size_t low_water = burst;
    const timer_cost& overhead = clock_overhead();
    auto& mine = tl.t[static_cast<std::size_t>(state.thread_index())].pushed;
    std::size_t i = 0;
    std::uint64_t ok = 0, full = 0;
    std::int64_t cpu_total = 0;
    std::int64_t started = 0;
    double fill_sum = 0;
    std::uint64_t bursts = 0;
    while (state.KeepRunningBatch(burst)) {
        if (started == 0)
            started = wall_ns();  // after the start barrier
        // Sleep, not spin: on 2 cores a spinning producer would starve the consumer.
        std::size_t depth = 0;
        while ((depth = f.depth()) > low_water)
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        fill_sum += static_cast<double>(depth);
        ++bursts;
        const auto w0 = wall_ns();
        const auto c0 = thread_cpu_ns();
        for (std::int64_t k = 0; k < burst; ++k) {
            if (push(events[i++ & pool_mask]))
                ++ok;
            else
                ++full;
        }
        const auto c1 = thread_cpu_ns();
        const auto w1 = wall_ns();
        cpu_total += std::max<std::int64_t>(c1 - c0 - overhead.cpu, 0);
        // x threads: the framework averages manual time over the threads and divides by the
        // iterations of all threads; this makes Time a producer's own wall time per push.
        const auto wall = std::max<std::int64_t>(w1 - w0 - overhead.wall, 0);
        state.SetIterationTime(static_cast<double>(wall) * 1e-9 * state.threads());
        mine.store(ok, std::memory_order_release);
    }
    // The run's wall time for this thread, waits included (from the start barrier to the end
    // barrier, which the last KeepRunningBatch call holds: about the same for every thread).
    const auto elapsed = static_cast<double>(std::max<std::int64_t>(wall_ns() - started, 1));
    const auto n = static_cast<double>(state.iterations());
    state.counters["cpu_ns"] =
        benchmark::Counter(static_cast<double>(cpu_total) / n, benchmark::Counter::kAvgThreads);
    // items_per_second: with the manual time above, 1 / Time (one producer while pushing).
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    // Summed over the threads: events handed over per second of the run, waits included.
    state.counters["sustained_per_s"] = static_cast<double>(ok) * 1e9 / elapsed;
    state.counters["full_frac"] =
        benchmark::Counter(static_cast<double>(full), benchmark::Counter::kAvgIterations);
    // Mean queue fill when a burst starts, in events: ~0 means the consumer keeps up and pops
    // right behind the producers (the contended case); thousands mean it lags behind.
    state.counters["fill"] = benchmark::Counter(
        bursts ? fill_sum / static_cast<double>(bursts) : 0.0, benchmark::Counter::kAvgThreads);
}

// ---- (a) evdispatch's ring ------------------------------------------------------------------

// A polling consumer thread: pops until told to stop, then takes what is left.
template <class T>
struct ring_fixture {
    detail::mpsc_ring<T> ring{queue_capacity};
    tallies tl;
    std::atomic<bool> stop{false};
    std::thread consumer{[this] { run(); }};

    std::size_t depth() const noexcept { return ring.pushed() - ring.popped(); }

    void run() {
        T v{};
        unsigned idle = 0;
        for (;;) {
            if (ring.try_pop(v)) {
                v = T{};  // drop the reference, as the drain does
                idle = 0;
                continue;
            }
            if (stop.load(std::memory_order_acquire)) {
                // Producers have returned from every push: all claimed slots are published.
                while (ring.try_pop(v))
                    v = T{};
                return;
            }
            if (++idle < 64)
                cpu_relax();
            else
                std::this_thread::yield();
        }
    }
    void finish() {
        stop.store(true, std::memory_order_release);
        if (consumer.joinable())
            consumer.join();
    }
    ~ring_fixture() { finish(); }
};

template <class T>
void ring_handoff(benchmark::State& state) {
    using F = ring_fixture<T>;
    std::unique_ptr<F> owner;
    F* f = run_fixture<F>::get(state, owner);
    produce(state, *f, f->tl, [f](const event_ptr& e) {
        T item;
        if constexpr (std::is_pointer_v<T>)
            item = e.get();
        else
            item = e;  // a shared_ptr copy: one atomic increment
        return f->ring.try_push(item) == detail::push_result::ok;
    });
    if (owner) {
        owner->finish();
        if (owner->ring.popped() != owner->ring.pushed() ||
            owner->ring.pushed() != owner->tl.total())
            state.SkipWithError("ring lost events");
        run_fixture<F>::clear();
        owner.reset();
    }
}

// ---- (b) mutex + condition variable + deque -------------------------------------------------

// What typical batch processors do: lock, push_back, unlock, notify_one; the consumer sleeps
// on the condition variable and swaps the whole deque out under one lock. Bounded like the
// ring (a full queue refuses, it does not block).
struct mutex_fixture {
    std::mutex m;
    std::condition_variable cv;
    std::deque<event_ptr> q;
    bool stop = false;  // guarded by m
    tallies tl;
    std::atomic<std::uint64_t> popped{0};
    std::thread consumer{[this] { run(); }};

    std::size_t depth() const noexcept { return tl.depth(popped.load(std::memory_order_acquire)); }

    bool push(event_ptr&& e) {
        {
            std::lock_guard lk(m);
            if (q.size() >= queue_capacity)
                return false;
            q.push_back(std::move(e));
        }
        cv.notify_one();
        return true;
    }
    void run() {
        std::deque<event_ptr> batch;
        std::unique_lock lk(m);
        for (;;) {
            cv.wait(lk, [this] { return stop || !q.empty(); });
            if (q.empty())
                return;  // stopped and drained
            batch.swap(q);
            lk.unlock();
            const auto n = batch.size();
            batch.clear();
            popped.fetch_add(n, std::memory_order_release);
            lk.lock();
        }
    }
    void finish() {
        {
            std::lock_guard lk(m);
            stop = true;
        }
        cv.notify_one();
        if (consumer.joinable())
            consumer.join();
    }
    ~mutex_fixture() { finish(); }
};

void mutex_deque(benchmark::State& state) {
    std::unique_ptr<mutex_fixture> owner;
    mutex_fixture* f = run_fixture<mutex_fixture>::get(state, owner);
    produce(state, *f, f->tl, [f](const event_ptr& e) { return f->push(event_ptr(e)); });
    if (owner) {
        owner->finish();
        if (owner->popped.load() != owner->tl.total())
            state.SkipWithError("mutex queue lost events");
        run_fixture<mutex_fixture>::clear();
        owner.reset();
    }
}

// ---- (c) boost::lockfree::queue -------------------------------------------------------------

struct lockfree_fixture {
    // fixed_sized: preallocated nodes only, bounded_push fails when they are used up. One node
    // is the queue's dummy, hence + 1.
    boost::lockfree::queue<const user_event*, boost::lockfree::fixed_sized<true>> q{queue_capacity +
                                                                                    1};
    tallies tl;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> popped{0};
    std::thread consumer{[this] { run(); }};

    std::size_t depth() const noexcept { return tl.depth(popped.load(std::memory_order_acquire)); }

    void run() {
        unsigned idle = 0;
        std::uint64_t n = 0;
        const auto take = [&n](const user_event*) { ++n; };
        for (;;) {
            if (q.consume_one(take)) {
                popped.store(n, std::memory_order_release);
                idle = 0;
                continue;
            }
            if (stop.load(std::memory_order_acquire)) {
                while (q.consume_one(take)) {
                }
                popped.store(n, std::memory_order_release);
                return;
            }
            if (++idle < 64)
                cpu_relax();
            else
                std::this_thread::yield();
        }
    }
    void finish() {
        stop.store(true, std::memory_order_release);
        if (consumer.joinable())
            consumer.join();
    }
    ~lockfree_fixture() { finish(); }
};

void lockfree_queue(benchmark::State& state) {
    std::unique_ptr<lockfree_fixture> owner;
    lockfree_fixture* f = run_fixture<lockfree_fixture>::get(state, owner);
    produce(state, *f, f->tl, [f](const event_ptr& e) { return f->q.bounded_push(e.get()); });
    if (owner) {
        owner->finish();
        if (owner->popped.load() != owner->tl.total())
            state.SkipWithError("lockfree queue lost events");
        run_fixture<lockfree_fixture>::clear();
        owner.reset();
    }
}

// ---- (d) batch_event_processor::process() ---------------------------------------------------

// Completes every batch at once, inline: the processor's strand still batches, accounts and
// "sends", but no bytes move.
class instant_dispatcher final : public event_dispatcher {
public:
    void async_dispatch(std::shared_ptr<const log_event> ev,
                        boost::asio::any_completion_handler<dispatch_signature> handler) override {
        ++batches;  // strand only
        events += ev->event_count;
        dispatch_result r;
        r.status = 200;
        r.bytes_sent = ev->body.size();
        r.bytes_on_wire = true;
        std::move(handler)(boost::system::error_code{}, std::move(r));
    }
    std::size_t max_in_flight() const noexcept override { return 4; }

    std::uint64_t batches = 0;
    std::uint64_t events = 0;
};

processor_config bench_processor_config() {
    processor_config c;  // defaults otherwise: batch size 10, flush interval 30 s
    c.endpoint = test::visitors_context()->endpoint;
    c.queue_capacity = queue_capacity;
    c.destructor_close_timeout = std::chrono::seconds(5);
    return c;
}

processor_hooks bench_hooks(std::shared_ptr<instant_dispatcher> d) {
    processor_hooks h;
    h.dispatcher = std::move(d);
    return h;
}

struct processor_fixture {
    std::shared_ptr<instant_dispatcher> dispatcher = std::make_shared<instant_dispatcher>();
    batch_event_processor processor{bench_processor_config(), bench_hooks(dispatcher)};
    tallies tl;

    // From the counters the strand publishes after each drain turn (lags: conservative).
    std::size_t depth() const noexcept { return processor.metrics().queue_depth; }

    // Closes (drains everything accepted) and checks the accounting. Returns an error text.
    const char* finish() {
        using result = std::pair<boost::system::error_code, close_report>;
        auto pr = std::make_shared<std::promise<result>>();
        auto fut = pr->get_future();
        processor.async_close(std::chrono::seconds(5),
                              [pr](boost::system::error_code ec, close_report r) {
                                  pr->set_value({ec, std::move(r)});
                              });
        if (fut.wait_for(std::chrono::seconds(15)) != std::future_status::ready)
            return "processor close did not complete";
        const auto [ec, rep] = fut.get();
        if (ec)
            return "processor close failed";
        const auto& m = rep.metrics;
        if (m.pending != 0 || m.accepted != rep.delivered + rep.not_delivered)
            return "accounting broken: accepted != delivered + dropped";
        if (m.accepted != tl.total())
            return "accepted differs from the producers' count";
        if (rep.not_delivered != 0)
            return "events dropped after acceptance";
        if (dispatcher->events != rep.delivered)
            return "dispatcher saw a different count";
        return nullptr;
    }
};

void process_path(benchmark::State& state) {
    std::unique_ptr<processor_fixture> owner;
    processor_fixture* f = run_fixture<processor_fixture>::get(state, owner);
    produce(state, *f, f->tl, [f](const event_ptr& e) {
        return f->processor.process(e) == process_result::accepted;  // copies the event_ptr
    });
    if (owner) {
        if (const char* err = owner->finish())
            state.SkipWithError(err);
        run_fixture<processor_fixture>::clear();
        owner.reset();  // joins the processor's thread
    }
}

void thread_counts(benchmark::internal::Benchmark* b) {
    b->Threads(1)->Threads(2)->Threads(4)->Threads(8)->UseManualTime();
}

BENCHMARK_TEMPLATE(ring_handoff, event_ptr)->Name("ring_shared")->Apply(thread_counts);
BENCHMARK(mutex_deque)->Apply(thread_counts);
BENCHMARK_TEMPLATE(ring_handoff, const user_event*)->Name("ring_raw")->Apply(thread_counts);
BENCHMARK(lockfree_queue)->Apply(thread_counts);
BENCHMARK(process_path)->Name("process")->Apply(thread_counts);

}  // namespace

BENCHMARK_MAIN();
