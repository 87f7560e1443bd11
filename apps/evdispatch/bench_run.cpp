// evdispatch bench: the producer driver, the evdispatch run and the baselines.

#include "bench_run.hpp"

#include "guarded_thread.hpp"
#include "histogram.hpp"

#include <evdispatch/endpoint_url.hpp>
#include <evdispatch/processor.hpp>
#include <evdispatch/retry_policy.hpp>

#include "support/sync_client.hpp"
#include "support/workload.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define EVDISPATCH_HAVE_TSC 1
#endif

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string_view>
#include <thread>
#include <vector>

namespace evdispatch::app {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

// CPU time of the calling thread, in ns.
std::uint64_t thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

// CPU time so far of this process's threads named `name` (the collector names its threads
// "ev-collector"), in ns, from /proc/self/task/*/schedstat (time on a CPU, in ns).
std::uint64_t named_threads_cpu_ns(std::string_view name) {
    std::uint64_t total = 0;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream comm(task.path() / "comm");
        std::string n;
        if (!std::getline(comm, n) || n != name)
            continue;
        std::ifstream stat(task.path() / "schedstat");
        std::uint64_t on_cpu = 0;
        if (stat >> on_cpu)
            total += on_cpu;
    }
    return total;
}

double per_event(std::uint64_t ns, std::uint64_t events) {
    return events ? static_cast<double>(ns) / static_cast<double>(events) : 0;
}

double peak_rss_mb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// Cheap timestamps for process() timing: the TSC where available, calibrated against the
// steady clock over the run.
inline std::uint64_t ticks() noexcept {
#ifdef EVDISPATCH_HAVE_TSC
    return __rdtsc();
#else
    return static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
#endif
}

// The start and end of a timed process() call. The TSC read is not ordered with the memory
// operations before it: without fences, the stores of building the event (still draining from
// the store buffer) would be timed as part of process(). The start waits for them (mfence) and
// for every earlier instruction (lfence); the end waits for process()'s own instructions.
inline std::uint64_t ticks_begin() noexcept {
#ifdef EVDISPATCH_HAVE_TSC
    _mm_mfence();
    _mm_lfence();
    const std::uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
#else
    return ticks();
#endif
}
inline std::uint64_t ticks_end() noexcept {
#ifdef EVDISPATCH_HAVE_TSC
    _mm_lfence();
    const std::uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
#else
    return ticks();
#endif
}

struct tick_calibration {
    clock::time_point t0 = clock::now();
    std::uint64_t k0 = ticks();
    double ns_per_tick() const {
        const auto dt = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
        const auto dk = static_cast<double>(ticks() - k0);
        return dk > 0 ? dt / dk : 1.0;
    }
};

// Sets the process() percentiles of `r` from the producers' histograms (in ticks).
void set_process_percentiles(run_result& r, const std::vector<histogram>& hist,
                             double ns_per_tick) {
    histogram all;
    for (const auto& h : hist)
        all.merge(h);
    const auto ns = [&](double q) {
        return static_cast<std::uint64_t>(static_cast<double>(all.quantile(q)) * ns_per_tick);
    };
    r.p50 = ns(0.50);
    r.p99 = ns(0.99);
    r.p999 = ns(0.999);
}

// The collector's counters when a run starts; count() puts what it saw since then into the
// result. Without a collector (a receiver at --url) it does nothing.
class collector_delta {
public:
    explicit collector_delta(collector* col)
        : col_(col)
        , before_(col ? col->stats() : collector_stats{})
        , cpu_before_(col ? named_threads_cpu_ns("ev-collector") : 0) {}

    // After r.delivered is set.
    void count(run_result& r) const {
        if (!col_)
            return;
        const auto now = col_->stats();
        r.duplicates = now.duplicates - before_.duplicates;
        r.collector_events = now.unique_events - before_.unique_events;
        r.collector_cpu_ns_per_event =
            per_event(named_threads_cpu_ns("ev-collector") - cpu_before_, r.delivered);
    }

private:
    collector* col_;
    collector_stats before_;
    std::uint64_t cpu_before_;
};

// Runs `o.producers` threads that build and hand over events until the count or the time is
// reached. Each thread first calls `make_producer(p)` and submits through what it returns (made
// and destroyed on that thread): an object with `bool submit(event_ptr)` (true: accepted; timed
// into hist[p]) and `void refused(clock::time_point end)` (called after a refusal, outside the
// timing; `end` is when the run ends). `check_time_each_event`: look at the clock before every
// event, not every 256 (for producers whose submit blocks). If a producer throws, the others
// stop and the first exception is rethrown here once every producer has ended. Returns the
// producer threads' CPU time, in ns.
template <class MakeProducer>
std::uint64_t drive_producers(const bench_options& o, const context_ptr& ctx,
                              MakeProducer&& make_producer, std::vector<histogram>& hist,
                              std::atomic<std::uint64_t>& submitted,
                              bool check_time_each_event = false) {
    test::workload wl(ctx);
    const auto start = clock::now();
    const auto end = o.events ? clock::time_point::max() : start + o.duration;
    const std::uint64_t check_mask = check_time_each_event ? 0 : 255;
    std::atomic<bool> stop{false};  // set by a producer that throws
    std::atomic<std::uint64_t> cpu_ns{0};
    hist.assign(o.producers, histogram{});
    std::vector<guarded_thread> ts;  // joined by their destructors if starting one throws
    ts.reserve(o.producers);
    for (unsigned p = 0; p < o.producers; ++p) {
        ts.emplace_back("ev-producer", [&, p](std::stop_token st) {
            try {
                auto producer = make_producer(p);
                auto imp = test::sample_impression();
                auto conv = test::sample_conversion();
                const std::uint64_t quota =
                    o.events ? o.events / o.producers + (p < o.events % o.producers ? 1 : 0)
                             : UINT64_MAX;
                const double per_thread_rate = o.rate > 0 ? o.rate / o.producers : 0;
                auto next = clock::now();
                const auto interval =
                    per_thread_rate > 0 ? std::chrono::duration_cast<clock::duration>(
                                              std::chrono::duration<double>(1.0 / per_thread_rate))
                                        : clock::duration::zero();
                histogram& h = hist[p];
                for (std::uint64_t i = 0; i < quota; ++i) {
                    if ((i & check_mask) == 0 && (stop.load(std::memory_order_relaxed) ||
                                                  st.stop_requested() || clock::now() >= end))
                        break;
                    if (per_thread_rate > 0) {
                        // Paced in bulk: a sleep only once the producer is 1 ms ahead, not a
                        // system call per event; the rate holds over any millisecond.
                        next += interval;
                        if (next > clock::now() + 1ms)
                            std::this_thread::sleep_until(next);
                    }
                    auto ev = wl.make(i * o.producers + p, imp, conv);
                    const auto k0 = ticks_begin();
                    const bool ok = producer.submit(std::move(ev));
                    const auto k1 = ticks_end();
                    h.record(k1 - k0);
                    submitted.fetch_add(1, std::memory_order_relaxed);
                    if (!ok)
                        producer.refused(end);
                }
                cpu_ns += thread_cpu_ns();
            } catch (...) {
                stop = true;
                throw;
            }
        });
    }
    std::exception_ptr first;
    for (auto& t : ts) {
        try {
            t.join();
        } catch (...) {
            if (!first)
                first = std::current_exception();
        }
    }
    if (first)
        std::rethrow_exception(first);
    return cpu_ns.load();
}

// Producer of the evdispatch and mutex runs: hands events over with `submit`. After a refusal
// (queue full) it backs off without a system call per event: it spins briefly (the drain is
// usually under way), then sleeps 100 µs at a time while refusals go on, so that a flat-out
// run measures the pipeline rather than the producers' yielding.
template <class Submit>
struct handoff_producer {
    Submit submit_fn;
    unsigned refusals = 0;  // in a row
    bool submit(event_ptr ev) {
        const bool ok = submit_fn(std::move(ev));
        if (ok)
            refusals = 0;
        return ok;
    }
    void refused(clock::time_point) {
        if (++refusals <= 16) {
            for (int i = 0; i < 64; ++i)
                _mm_pause();
            return;
        }
        std::this_thread::sleep_for(100us);
    }
};

// The null dispatcher (--dispatcher null): every batch acknowledged at once, nothing sent.
class null_dispatcher final : public event_dispatcher {
public:
    explicit null_dispatcher(std::size_t in_flight) : in_flight_(in_flight) {}
    void async_dispatch(std::shared_ptr<const log_event> ev,
                        asio::any_completion_handler<dispatch_signature> handler) override {
        dispatch_result r;
        r.status = 204;
        r.bytes_sent = ev->body.size();
        r.bytes_on_wire = true;
        std::move(handler)(boost::system::error_code{}, std::move(r));
    }
    std::size_t max_in_flight() const noexcept override { return in_flight_; }

private:
    std::size_t in_flight_;
};

template <class Submit>
auto handoff(Submit fn) {
    return [fn](unsigned) { return handoff_producer<Submit>{fn}; };
}

void progress_line(bool tty, double secs, std::uint64_t submitted, const metrics_snapshot& m) {
    const double rate = secs > 0 ? static_cast<double>(m.delivered) / secs : 0;
    const auto state = std::string(to_string(m.state));
    if (tty)
        std::fprintf(stderr,
                     "\r  %5.1fs  sent %10" PRIu64 "  delivered %10" PRIu64
                     "  %9.0f ev/s  queue %6" PRIu64 "  in-flight %2" PRIu64
                     "  endpoint %-7s held %8" PRIu64 "   ",
                     secs, submitted, m.delivered, rate, m.queue_depth, m.in_flight, state.c_str(),
                     m.held_events);
    else
        std::fprintf(stderr,
                     "  %5.1fs sent=%" PRIu64 " delivered=%" PRIu64 " rate=%.0f/s queue=%" PRIu64
                     " in_flight=%" PRIu64 " endpoint=%s held=%" PRIu64 "\n",
                     secs, submitted, m.delivered, rate, m.queue_depth, m.in_flight, state.c_str(),
                     m.held_events);
}

// A line per endpoint state change, but for probes (one line per probe would drown the rest).
void print_endpoint_change(bool tty, const endpoint_change& c) {
    if (c.to == endpoint_state::probing)
        return;
    std::fprintf(stderr, "%sendpoint %.*s %s -> %s", tty ? "\n" : "",
                 static_cast<int>(c.url.size()), c.url.data(),
                 std::string(to_string(c.from)).c_str(), std::string(to_string(c.to)).c_str());
    if (c.to == endpoint_state::up)
        std::fprintf(stderr, " after an outage of %lld ms\n",
                     static_cast<long long>(c.outage.count()));
    else
        std::fprintf(stderr, " (%u failures: %.*s), next probe in %lld ms\n", c.failures,
                     static_cast<int>(c.message.size()), c.message.data(),
                     static_cast<long long>(c.next_probe.count()));
}

// What the processor's hooks record, on the dispatcher thread.
struct delivery_record {
    histogram e2e;  // accept->ack, microseconds
    std::uint64_t batch_events = 0, batch_count = 0;
    std::array<std::string, drop_reason_count> first_failure;
};

processor_hooks make_hooks(delivery_record& rec, bool progress) {
    processor_hooks hooks;
    hooks.on_batch_result = [&rec](const batch_result& br) {
        if (!br.delivered) {
            auto& first = rec.first_failure[index_of(br.reason)];
            if (first.empty())
                first = br.message.empty() ? br.ec.message() : std::string(br.message);
            return;
        }
        for (auto t : br.created)
            rec.e2e.record(static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(br.finished - t).count()));
        rec.batch_events += br.events;
        ++rec.batch_count;
    };
    if (progress)
        hooks.on_endpoint_state = [tty = isatty(STDERR_FILENO) != 0](const endpoint_change& c) {
            print_endpoint_change(tty, c);
        };
    return hooks;
}

// Samples the processor's metrics every 50 ms on its own thread, for the outage figures (peak
// of held events, connection attempts while an endpoint was not up, time from its coming back
// to its held batches all gone; all to within a sample), and with `print` writes a progress
// line a second. stop() ends it before the processor goes.
class progress_sampler {
public:
    progress_sampler(const batch_event_processor& proc, const std::atomic<std::uint64_t>& submitted,
                     clock::time_point start, bool print)
        : tty_(print && isatty(STDERR_FILENO))
        , thread_("ev-progress", [this, &proc, &submitted, start, print](std::stop_token st) {
            auto next = start + 1s;
            metrics_snapshot prev = proc.metrics();
            std::optional<clock::time_point> back_up;  // the endpoint came back, held not drained
            while (!st.stop_requested()) {
                std::this_thread::sleep_for(50ms);
                const auto m = proc.metrics();
                if (m.held_events > held_peak_.load(std::memory_order_relaxed))
                    held_peak_.store(m.held_events, std::memory_order_relaxed);
                if (prev.state != endpoint_state::up || m.state != endpoint_state::up)
                    outage_attempts_ += m.connections_opened - prev.connections_opened;
                if (prev.state != endpoint_state::up && m.state == endpoint_state::up)
                    back_up = clock::now();
                if (back_up && m.held_events == 0 && m.retry_wait_events == 0 &&
                    m.spooled_events == 0 && m.spool_writing_events == 0) {
                    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        clock::now() - *back_up);
                    const auto v = static_cast<std::uint64_t>(ms.count());
                    if (v > drain_ms_.load())
                        drain_ms_.store(v);
                    back_up.reset();
                }
                prev = m;
                if (!print || clock::now() < next)
                    continue;
                next += 1s;
                progress_line(tty_, std::chrono::duration<double>(clock::now() - start).count(),
                              submitted.load(), m);
            }
        }) {}

    void stop() {
        thread_.request_stop();
        thread_.join();
        if (tty_)
            std::fprintf(stderr, "\n");
    }

    std::uint64_t held_peak() const { return held_peak_.load(); }
    /// Read after stop().
    std::uint64_t outage_attempts() const { return outage_attempts_; }
    std::uint64_t drain_after_outage_ms() const { return drain_ms_.load(); }

private:
    std::atomic<std::uint64_t> held_peak_{0};
    std::atomic<std::uint64_t> drain_ms_{0};
    std::uint64_t outage_attempts_ = 0;  // sampler thread, then read after stop()
    const bool tty_;
    guarded_thread thread_;  // last: starts once the members it reads exist
};

// The mutex baseline's hand-off: the producers push into a bounded deque under a mutex (a
// full deque refuses, like the ring); one consumer thread takes everything queued and hands it
// to the processor. Returns the CPU time of the producers and the consumer (the hand-off's
// side), in ns.
std::uint64_t drive_through_mutex_queue(const bench_options& o, const context_ptr& ctx,
                                        batch_event_processor& proc, std::vector<histogram>& hist,
                                        std::atomic<std::uint64_t>& submitted) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::deque<event_ptr> queue;
    bool producers_done = false;
    std::atomic<std::uint64_t> consumer_cpu{0};
    guarded_thread consumer("ev-consumer", [&](std::stop_token st) {
        std::deque<event_ptr> local;
        for (;;) {
            {
                std::unique_lock lk(mu);
                if (!cv.wait(lk, st, [&] { return !queue.empty() || producers_done; }))
                    return;  // stop requested: the run is being unwound
                if (queue.empty() && producers_done) {
                    consumer_cpu = thread_cpu_ns();
                    return;
                }
                local.swap(queue);
            }
            for (auto& ev : local)
                (void)proc.process(std::move(ev));  // refusals: counted by the processor
            local.clear();
        }
    });
    const std::size_t cap = o.proc.queue_capacity;
    const std::uint64_t producers_cpu = drive_producers(o, ctx, handoff([&](event_ptr ev) {
                                                            {
                                                                std::lock_guard lk(mu);
                                                                if (queue.size() >= cap)
                                                                    return false;
                                                                queue.push_back(std::move(ev));
                                                            }
                                                            cv.notify_one();
                                                            return true;
                                                        }),
                                                        hist, submitted);
    {
        std::lock_guard lk(mu);
        producers_done = true;
    }
    cv.notify_one();
    consumer.join();
    return producers_cpu + consumer_cpu.load();
}

enum class handoff_kind { direct, mutex_queue };

// The evdispatch run and the mutex baseline: they differ only in how events reach process().
run_result run_processor(const bench_options& o, const std::string& url, collector* col,
                         handoff_kind how) {
    const bool mutex_queue = how == handoff_kind::mutex_queue;
    run_result r;
    r.name = mutex_queue ? "mutex" : "evdispatch";
    const collector_delta at_collector(col);

    // Written by the hooks on the dispatcher thread: declared before the io_context and the
    // threads, so they outlive both.
    delivery_record rec;
    std::promise<close_report> closed;
    processor_config pc = o.proc;
    pc.endpoint = url;
    asio::io_context io(1);
    auto work = asio::make_work_guard(io);
    // Made before any thread starts: a configuration it refuses throws with nothing running.
    processor_hooks hooks = make_hooks(rec, o.progress);
    if (o.null_dispatcher)
        hooks.dispatcher = std::make_shared<null_dispatcher>(pc.http.max_connections);
    else if (o.make_dispatcher)
        hooks.dispatcher = o.make_dispatcher();
    auto proc = std::make_unique<batch_event_processor>(io.get_executor(), pc, std::move(hooks));
    auto ctx = test::make_context(url);

    // If anything below throws, unwinding stops this thread (io.stop()) and joins it before
    // the processor and the io_context go; their pending handlers are then destroyed unrun.
    std::atomic<std::uint64_t> dispatcher_cpu_ns{0};
    guarded_thread dispatcher("ev-dispatcher", [&](std::stop_token st) {
        std::stop_callback on_stop(st, [&] { io.stop(); });
        io.run();
        dispatcher_cpu_ns = thread_cpu_ns();
    });

    std::atomic<std::uint64_t> submitted{0};
    const auto start = clock::now();
    progress_sampler progress(*proc, submitted, start, o.progress);
    tick_calibration cal;
    std::vector<histogram> hist;
    std::uint64_t producers_cpu = 0;
    if (mutex_queue)
        producers_cpu = drive_through_mutex_queue(o, ctx, *proc, hist, submitted);
    else
        producers_cpu =
            drive_producers(o, ctx, handoff([&](event_ptr ev) {
                                return proc->process(std::move(ev)) == process_result::accepted;
                            }),
                            hist, submitted);
    const double ns_per_tick = cal.ns_per_tick();

    proc->async_close(o.close_timeout,
                      [&](boost::system::error_code, close_report rep) { closed.set_value(rep); });
    auto closing = closed.get_future();
    // The close deadline bounds this; the margin only guards against a dispatcher thread that
    // died (its exception is rethrown by join()).
    if (closing.wait_for(o.close_timeout + 30s) != std::future_status::ready) {
        dispatcher.request_stop();
        dispatcher.join();
        throw std::runtime_error("the processor did not finish closing");
    }
    const close_report rep = closing.get();
    const auto finish = clock::now();
    progress.stop();
    proc.reset();
    work.reset();
    // Let the sockets close: run() returns once no work is left; after 2 s stop it anyway.
    for (const auto until = clock::now() + 2s; !io.stopped() && clock::now() < until;)
        std::this_thread::sleep_for(10ms);
    dispatcher.request_stop();
    dispatcher.join();
    const std::uint64_t cpu = dispatcher_cpu_ns.load();

    const auto& m = rep.metrics;
    r.submitted = mutex_queue ? submitted.load() : m.submitted();
    r.accepted = m.accepted;
    r.delivered = m.delivered;
    r.dropped = m.dropped;
    if (mutex_queue)  // refused at the mutex queue (full) never reached the processor
        r.dropped[index_of(drop_reason::queue_full)] += submitted.load() - m.submitted();
    r.first_failure = rec.first_failure;
    r.seconds = std::chrono::duration<double>(finish - start).count();
    r.delivered_per_sec = static_cast<double>(m.delivered) / r.seconds;
    set_process_percentiles(r, hist, ns_per_tick);
    r.e2e_p50_ms = static_cast<double>(rec.e2e.quantile(0.50)) / 1000.0;
    r.e2e_p99_ms = static_cast<double>(rec.e2e.quantile(0.99)) / 1000.0;
    r.batches = m.batches_delivered;
    r.mean_batch_events = rec.batch_count ? static_cast<double>(rec.batch_events) /
                                                static_cast<double>(rec.batch_count)
                                          : 0;
    r.connections_opened = m.connections_opened;
    if (m.compressed_in_bytes != 0)
        r.compression_ratio = static_cast<double>(m.compressed_out_bytes) /
                              static_cast<double>(m.compressed_in_bytes);
    r.compression_refused = m.compression_refused;
    r.outages = m.outages;
    r.probes = m.probes;
    r.outage_ms = m.outage_ms;
    r.held_peak_events = progress.held_peak();
    r.outage_connection_attempts = progress.outage_attempts();
    r.drain_after_outage_ms = progress.drain_after_outage_ms();
    r.spooled = m.spool_written_events;
    r.spool_bytes_peak = m.spool_bytes_peak;
    r.left_in_spool = m.left_in_spool;
    r.recovered = m.recovered;
    r.delivered_recovered = m.delivered_recovered;
    r.producers_cpu_ns_per_event = per_event(producers_cpu, m.delivered);
    r.dispatcher_cpu_ns_per_event = per_event(cpu, m.delivered);
    r.peak_rss_mb = peak_rss_mb();
    r.balanced = m.balanced() && m.pending == 0 &&
                 m.accepted == m.delivered + m.dropped_after_accept() + m.left_in_spool;
    at_collector.count(r);
    return r;
}

// Counters the producers of a sync baseline share.
struct sync_totals {
    std::atomic<std::uint64_t> delivered{0}, connections{0};
    std::array<std::atomic<std::uint64_t>, drop_reason_count> failed{};
    std::mutex first_failure_mutex;
    std::array<std::string, drop_reason_count> first_failure;  // guarded by first_failure_mutex

    void count_failure(drop_reason reason, const std::string& what) {
        if (failed[index_of(reason)].fetch_add(1, std::memory_order_relaxed) != 0)
            return;
        std::lock_guard lock(first_failure_mutex);
        first_failure[index_of(reason)] = what;
    }
};

// A producer of a sync baseline: one blocking POST per event through its own sync_client (its
// own io_context, connection and TLS context), made and destroyed on the producer thread.
// Nothing is shared between producers: OpenSSL may share an SSL_CTX across threads, but its
// lazily filled certificate caches then race as far as ThreadSanitizer can see (libcrypto is
// not instrumented), and a synchronous SDK per thread would have its own anyway. Failures are
// counted by reason, as the processor counts drops. After a failed connect the producer waits
// before its next event: 10 ms, doubling up to 250 ms, reset by a connection that works; a
// receiver that is down then costs a few attempts per second per producer, not a busy loop.
class sync_producer {
public:
    sync_producer(const test::sync_client_config& cfg, std::unique_ptr<asio::ssl::context> tls,
                  sync_totals& totals)
        : tls_(std::move(tls)), client_(cfg, tls_.get()), totals_(totals) {}

    bool submit(event_ptr ev) {
        std::string body = test::single_event_body(*ev);
        const auto opened = client_.connections_opened();
        const attempt_outcome out = client_.post(std::move(body));
        totals_.connections.fetch_add(client_.connections_opened() - opened,
                                      std::memory_order_relaxed);
        if (!out.ec && out.status >= 200 && out.status < 300) {
            totals_.delivered.fetch_add(1, std::memory_order_relaxed);
            backoff_ = 0ms;
            return true;
        }
        totals_.count_failure(retry_policy::classify(out).first, client_.last_error());
        if (!client_.last_failure_was_connect())
            backoff_ = 0ms;
        else
            backoff_ = backoff_.count() == 0
                           ? 10ms
                           : std::min<std::chrono::milliseconds>(backoff_ * 2, 250ms);
        return false;
    }

    void refused(clock::time_point end) {
        if (backoff_.count() > 0)
            std::this_thread::sleep_until(std::min(clock::now() + backoff_, end));
    }

private:
    std::unique_ptr<asio::ssl::context> tls_;  // before client_, which uses it
    test::sync_client client_;
    sync_totals& totals_;
    std::chrono::milliseconds backoff_{0};
};

}  // namespace

run_result run_ours(const bench_options& o, const std::string& url, collector* col) {
    return run_processor(o, url, col, handoff_kind::direct);
}

run_result run_mutex_baseline(const bench_options& o, const std::string& url, collector* col) {
    bench_options mo = o;
    if (!o.events)
        mo.duration = o.baseline_duration;
    return run_processor(mo, url, col, handoff_kind::mutex_queue);
}

run_result run_sync_baseline(const bench_options& o, const std::string& url, collector* col,
                             bool keep_alive) {
    run_result r;
    r.name = keep_alive ? "sync-keepalive" : "sync";
    test::sync_client_config cc;
    cc.url = parse_endpoint_url(url);
    cc.keep_alive = keep_alive;
    cc.connect_timeout = o.proc.http.connect_timeout;
    cc.request_timeout = o.proc.http.request_timeout;
    cc.max_response_bytes = o.proc.http.max_response_bytes;

    const collector_delta at_collector(col);
    bench_options bo = o;
    bo.duration = o.baseline_duration;
    bo.events = 0;
    auto ctx = test::make_context(url);

    sync_totals totals;
    std::atomic<std::uint64_t> submitted{0};
    std::vector<histogram> hist;
    const auto start = clock::now();
    tick_calibration cal;
    const std::uint64_t producers_cpu = drive_producers(
        bo, ctx,
        [&](unsigned) {
            return sync_producer(
                cc, cc.url.tls ? test::make_sync_tls_context(o.proc.tls.ca_file) : nullptr, totals);
        },
        hist, submitted, true);
    const double ns_per_tick = cal.ns_per_tick();
    const auto finish = clock::now();
    r.submitted = submitted;
    r.accepted = submitted;
    r.delivered = totals.delivered;
    std::uint64_t failed = 0;
    for (auto reason : all_drop_reasons) {
        const auto i = index_of(reason);
        r.dropped[i] = totals.failed[i];
        failed += r.dropped[i];
    }
    r.first_failure = totals.first_failure;
    r.seconds = std::chrono::duration<double>(finish - start).count();
    r.delivered_per_sec = static_cast<double>(r.delivered) / r.seconds;
    set_process_percentiles(r, hist, ns_per_tick);
    // process() here is the whole POST: it is also the accept-to-ack time.
    r.e2e_p50_ms = r.p50 / 1e6;
    r.e2e_p99_ms = r.p99 / 1e6;
    r.batches = r.delivered;
    r.mean_batch_events = 1;
    r.connections_opened = totals.connections;
    r.producers_cpu_ns_per_event = per_event(producers_cpu, r.delivered);  // they send, too
    r.peak_rss_mb = peak_rss_mb();
    r.balanced = r.submitted == r.delivered + failed;
    at_collector.count(r);
    return r;
}

}  // namespace evdispatch::app
