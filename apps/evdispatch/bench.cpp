// evdispatch bench: drives the processor with producer threads against the embedded loopback
// collector (or a receiver at --url), and compares with baselines run in the same process.

#include "commands.hpp"
#include "histogram.hpp"
#include "options.hpp"

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/evdispatch.hpp>
#include <evdispatch/optimizely.hpp>

#include "guarded_thread.hpp"
#include "support/tls_certs.hpp"
#include "support/sync_client.hpp"
#include "support/workload.hpp"
#include <evdispatch/endpoint_url.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define EVDISPATCH_HAVE_TSC 1
#endif

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

namespace evdispatch::app {

namespace asio = boost::asio;
namespace json = boost::json;
using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct bench_options {
    std::uint64_t events = 0;  // 0: run for duration
    std::chrono::milliseconds duration{10'000};
    unsigned producers = 4;
    double rate = 0;  // events/s over all producers; 0 = as fast as possible
    processor_config proc;
    std::chrono::milliseconds collector_delay{0};
    std::string baseline = "sync";
    std::chrono::milliseconds baseline_duration{2'000};
    bool json_out = false;
    std::string url;              // empty: embedded collector
    bool tls = false;             // embedded collector over HTTPS (certificates made for the run)
    std::string collector_fault;  // see bench_help
    std::chrono::milliseconds close_timeout{30'000};
    bool progress = true;
};

struct run_result {
    std::string name;
    std::uint64_t submitted = 0, accepted = 0, delivered = 0, duplicates = 0;
    std::array<std::uint64_t, drop_reason_count> dropped{};
    double seconds = 0;
    double delivered_per_sec = 0;
    std::uint64_t p50 = 0, p99 = 0, p999 = 0;  // process() ns
    double e2e_p50_ms = 0, e2e_p99_ms = 0;
    std::uint64_t batches = 0;
    double mean_batch_events = 0;
    std::uint64_t connections_opened = 0;
    std::uint64_t outages = 0, probes = 0, outage_ms = 0, held_peak_events = 0;
    double dispatcher_cpu_ns_per_event = 0;
    double peak_rss_mb = 0;
    std::uint64_t collector_events = 0;
    bool balanced = true;
    /// What the first failure of each reason said (for a diagnostic line; empty: none or no
    /// text).
    std::array<std::string, drop_reason_count> first_failure;
};

constexpr std::size_t index_of(drop_reason r) noexcept {
    return static_cast<std::size_t>(r);
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

struct tick_calibration {
    clock::time_point t0 = clock::now();
    std::uint64_t k0 = ticks();
    double ns_per_tick() const {
        const auto dt = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
        const auto dk = static_cast<double>(ticks() - k0);
        return dk > 0 ? dt / dk : 1.0;
    }
};


// Runs `o.producers` threads that build and hand over events until the count or the time is
// reached. Each thread first calls `make_producer(p)` and submits through what it returns (made
// and destroyed on that thread): an object with `bool submit(event_ptr)` (true: accepted; timed
// into hist[p]) and `void refused(clock::time_point end)` (called after a refusal, outside the
// timing; `end` is when the run ends). `check_time_each_event`: look at the clock before every
// event, not every 256 (for producers whose submit blocks). If a producer throws, the others
// stop and the first exception is rethrown here once every producer has ended.
template <class MakeProducer>
void drive_producers(const bench_options& o, const context_ptr& ctx, MakeProducer&& make_producer,
                     std::vector<histogram>& hist, std::atomic<std::uint64_t>& submitted,
                     std::atomic<bool>& stop, bool check_time_each_event = false) {
    test::workload wl(ctx);
    const auto start = clock::now();
    const auto end = o.events ? clock::time_point::max() : start + o.duration;
    const std::uint64_t check_mask = check_time_each_event ? 0 : 255;
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
                        next += interval;
                        const auto now = clock::now();
                        if (next > now)
                            std::this_thread::sleep_until(next);
                    }
                    auto ev = wl.make(i * o.producers + p, imp, conv);
                    const auto k0 = ticks();
                    const bool ok = producer.submit(std::move(ev));
                    const auto k1 = ticks();
                    h.record(k1 - k0);
                    submitted.fetch_add(1, std::memory_order_relaxed);
                    if (!ok)
                        producer.refused(end);
                }
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
}

// Producer of the evdispatch and mutex runs: hands events over with `submit`; after a refusal
// (queue full) it lets the dispatcher run.
template <class Submit>
struct handoff_producer {
    Submit submit_fn;
    bool submit(event_ptr ev) { return submit_fn(std::move(ev)); }
    void refused(clock::time_point) { std::this_thread::yield(); }
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
                     secs, submitted, m.delivered, rate, m.queue_depth, m.in_flight,
                     state.c_str(), m.held_events);
    else
        std::fprintf(stderr,
                     "  %5.1fs sent=%" PRIu64 " delivered=%" PRIu64 " rate=%.0f/s queue=%" PRIu64
                     " in_flight=%" PRIu64 " endpoint=%s held=%" PRIu64 "\n",
                     secs, submitted, m.delivered, rate, m.queue_depth, m.in_flight,
                     state.c_str(), m.held_events);
}

// `mutex_handoff`: the "mutex" baseline. Producers push into a mutex + condition variable +
// deque; one consumer thread takes everything queued and hands it to the processor (what batch
// processors built on a blocking queue do). Everything after the hand-off is the same.
run_result run_ours(const bench_options& o, const std::string& url, collector* col,
                    bool mutex_handoff = false) {
    run_result r;
    r.name = mutex_handoff ? "mutex" : "evdispatch";
    const auto col_before = col ? col->stats() : collector_stats{};

    // Written by the hooks on the dispatcher thread: declared before the io_context and the
    // threads, so they outlive both.
    histogram e2e;  // microseconds
    std::uint64_t batch_events = 0, batch_count = 0;
    std::promise<close_report> closed;
    processor_hooks hooks;
    hooks.on_batch_result = [&](const batch_result& br) {
        if (!br.delivered) {
            auto& first = r.first_failure[index_of(br.reason)];
            if (first.empty())
                first = br.message.empty() ? br.ec.message() : std::string(br.message);
            return;
        }
        for (auto t : br.created)
            e2e.record(static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(br.finished - t).count()));
        batch_events += br.events;
        ++batch_count;
    };
    if (o.progress)
        hooks.on_endpoint_state = [tty = isatty(STDERR_FILENO) != 0](const endpoint_change& c) {
            if (c.to == endpoint_state::probing)
                return;  // one line per probe would drown the rest
            std::fprintf(stderr, "%sendpoint %.*s %s -> %s", tty ? "\n" : "",
                         static_cast<int>(c.url.size()), c.url.data(),
                         std::string(to_string(c.from)).c_str(),
                         std::string(to_string(c.to)).c_str());
            if (c.to == endpoint_state::up)
                std::fprintf(stderr, " after an outage of %lld ms\n",
                             static_cast<long long>(c.outage.count()));
            else
                std::fprintf(stderr, " (%u failures: %.*s), next probe in %lld ms\n", c.failures,
                             static_cast<int>(c.message.size()), c.message.data(),
                             static_cast<long long>(c.next_probe.count()));
        };
    processor_config pc = o.proc;
    pc.endpoint = url;
    asio::io_context io(1);
    auto work = asio::make_work_guard(io);
    // Made before any thread starts: a configuration it refuses throws with nothing running.
    auto proc = std::make_unique<batch_event_processor>(io.get_executor(), pc, hooks);
    auto ctx = test::make_context(url);

    // If anything below throws, unwinding stops this thread (io.stop()) and joins it before
    // the processor and the io_context go; their pending handlers are then destroyed unrun.
    std::atomic<std::uint64_t> dispatcher_cpu_ns{0};
    guarded_thread dispatcher("ev-dispatcher", [&](std::stop_token st) {
        std::stop_callback on_stop(st, [&] { io.stop(); });
        io.run();
        timespec ts{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        dispatcher_cpu_ns = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
                            static_cast<std::uint64_t>(ts.tv_nsec);
    });

    std::atomic<std::uint64_t> submitted{0};
    std::atomic<bool> stop{false};
    const auto start = clock::now();
    const bool tty = o.progress && isatty(STDERR_FILENO);
    // Samples the metrics every 50 ms (the peak of held events) and prints a line a second.
    std::atomic<std::uint64_t> held_peak{0};
    guarded_thread progress("ev-progress", [&](std::stop_token st) {
        auto next = start + 1s;
        while (!st.stop_requested()) {
            std::this_thread::sleep_for(50ms);
            const auto m = proc->metrics();
            if (m.held_events > held_peak.load(std::memory_order_relaxed))
                held_peak.store(m.held_events, std::memory_order_relaxed);
            if (!o.progress || clock::now() < next)
                continue;
            next += 1s;
            progress_line(tty, std::chrono::duration<double>(clock::now() - start).count(),
                          submitted.load(), m);
        }
    });
    tick_calibration cal;
    std::vector<histogram> hist;
    if (!mutex_handoff) {
        drive_producers(o, ctx, handoff([&](event_ptr ev) {
                            return proc->process(std::move(ev)) == process_result::accepted;
                        }),
                        hist, submitted, stop);
    } else {
        std::mutex mu;
        std::condition_variable_any cv;
        std::deque<event_ptr> queue;
        bool producers_done = false;
        guarded_thread consumer("ev-consumer", [&](std::stop_token st) {
            std::deque<event_ptr> local;
            for (;;) {
                {
                    std::unique_lock lk(mu);
                    if (!cv.wait(lk, st, [&] { return !queue.empty() || producers_done; }))
                        return;  // stop requested: the run is being unwound
                    if (queue.empty() && producers_done)
                        return;
                    local.swap(queue);
                }
                for (auto& ev : local)
                    (void)proc->process(std::move(ev));  // refusals: counted by the processor
                local.clear();
            }
        });
        const std::size_t cap = o.proc.queue_capacity;
        drive_producers(o, ctx, handoff([&](event_ptr ev) {
                            {
                                std::lock_guard lk(mu);
                                if (queue.size() >= cap)
                                    return false;  // bounded, like the ring
                                queue.push_back(std::move(ev));
                            }
                            cv.notify_one();
                            return true;
                        }),
                        hist, submitted, stop);
        {
            std::lock_guard lk(mu);
            producers_done = true;
        }
        cv.notify_one();
        consumer.join();
    }
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
    progress.request_stop();
    progress.join();
    if (tty)
        std::fprintf(stderr, "\n");
    proc.reset();
    work.reset();
    // Let the sockets close: run() returns once no work is left; after 2 s stop it anyway.
    for (const auto until = clock::now() + 2s; !io.stopped() && clock::now() < until;)
        std::this_thread::sleep_for(10ms);
    dispatcher.request_stop();
    dispatcher.join();
    const std::uint64_t cpu = dispatcher_cpu_ns.load();

    histogram all;
    for (auto& h : hist)
        all.merge(h);
    const auto& m = rep.metrics;
    r.submitted = mutex_handoff ? submitted.load() : m.submitted();
    r.accepted = m.accepted;
    r.delivered = m.delivered;
    r.dropped = m.dropped;
    if (mutex_handoff)  // refused at the mutex queue (full) never reached the processor
        r.dropped[index_of(drop_reason::queue_full)] += submitted.load() - m.submitted();
    r.seconds = std::chrono::duration<double>(finish - start).count();
    r.delivered_per_sec = static_cast<double>(m.delivered) / r.seconds;
    r.p50 = static_cast<std::uint64_t>(static_cast<double>(all.quantile(0.50)) * ns_per_tick);
    r.p99 = static_cast<std::uint64_t>(static_cast<double>(all.quantile(0.99)) * ns_per_tick);
    r.p999 = static_cast<std::uint64_t>(static_cast<double>(all.quantile(0.999)) * ns_per_tick);
    r.e2e_p50_ms = static_cast<double>(e2e.quantile(0.50)) / 1000.0;
    r.e2e_p99_ms = static_cast<double>(e2e.quantile(0.99)) / 1000.0;
    r.batches = m.batches_delivered;
    r.mean_batch_events =
        batch_count ? static_cast<double>(batch_events) / static_cast<double>(batch_count) : 0;
    r.connections_opened = m.connections_opened;
    r.outages = m.outages;
    r.probes = m.probes;
    r.outage_ms = m.outage_ms;
    r.held_peak_events = held_peak.load();
    r.dispatcher_cpu_ns_per_event =
        m.delivered ? static_cast<double>(cpu) / static_cast<double>(m.delivered) : 0;
    r.peak_rss_mb = peak_rss_mb();
    r.balanced =
        m.balanced() && m.pending == 0 && m.accepted == m.delivered + m.dropped_after_accept();
    if (col) {
        const auto s = col->stats();
        r.duplicates = s.duplicates - col_before.duplicates;
        r.collector_events = s.unique_events - col_before.unique_events;
    }
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
// own io_context and connection), made and destroyed on the producer thread. Failures are
// counted by reason, as the processor counts drops. After a failed connect the producer waits
// before its next event: 10 ms, doubling up to 250 ms, reset by a connection that works; a
// receiver that is down then costs a few attempts per second per producer, not a busy loop.
class sync_producer {
public:
    sync_producer(const test::sync_client_config& cfg, asio::ssl::context* tls,
                  sync_totals& totals)
        : client_(cfg, tls), totals_(totals) {}

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
    test::sync_client client_;
    sync_totals& totals_;
    std::chrono::milliseconds backoff_{0};
};

// Baseline "sync": one blocking POST per event on the producer thread over a new connection
// each time (what a synchronous SDK dispatcher without a session does). "sync-keepalive": the
// same, but each producer keeps its connection open (a synchronous dispatcher at its best).
// Same transport rules as the processor: TLS verified with --ca-file, the processor's connect
// and request timeouts. No retries: a failed POST drops its event, counted by reason.
run_result run_sync_baseline(const bench_options& o, const std::string& url, collector* col,
                             bool keep_alive) {
    run_result r;
    r.name = keep_alive ? "sync-keepalive" : "sync";
    test::sync_client_config cc;
    cc.url = parse_endpoint_url(url);  // run_bench checked it
    cc.keep_alive = keep_alive;
    cc.connect_timeout = o.proc.http.connect_timeout;
    cc.request_timeout = o.proc.http.request_timeout;
    cc.max_response_bytes = o.proc.http.max_response_bytes;
    std::unique_ptr<asio::ssl::context> tls;
    if (cc.url.tls)
        tls = test::make_sync_tls_context(o.proc.tls.ca_file);

    const auto before = col ? col->stats() : collector_stats{};
    bench_options bo = o;
    bo.duration = o.baseline_duration;
    bo.events = 0;
    auto ctx = test::make_context(url);

    sync_totals totals;
    std::atomic<std::uint64_t> submitted{0};
    std::atomic<bool> stop{false};
    std::vector<histogram> hist;
    const auto start = clock::now();
    tick_calibration cal;
    drive_producers(
        bo, ctx, [&](unsigned) { return sync_producer(cc, tls.get(), totals); }, hist,
        submitted, stop, true);
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
    histogram all;
    for (auto& h : hist)
        all.merge(h);
    r.p50 = static_cast<std::uint64_t>(static_cast<double>(all.quantile(0.50)) * ns_per_tick);
    r.p99 = static_cast<std::uint64_t>(static_cast<double>(all.quantile(0.99)) * ns_per_tick);
    r.p999 = static_cast<std::uint64_t>(static_cast<double>(all.quantile(0.999)) * ns_per_tick);
    r.e2e_p50_ms = r.p50 / 1e6;
    r.e2e_p99_ms = r.p99 / 1e6;
    r.batches = r.delivered;
    r.mean_batch_events = 1;
    r.connections_opened = totals.connections;
    r.peak_rss_mb = peak_rss_mb();
    r.balanced = r.submitted == r.delivered + failed;
    if (col) {
        const auto s = col->stats();
        r.duplicates = s.duplicates - before.duplicates;
        r.collector_events = s.unique_events - before.unique_events;
    }
    return r;
}

json::object to_json(const run_result& r) {
    json::object o;
    o["accepted"] = r.accepted;
    o["submitted"] = r.submitted;
    o["delivered"] = r.delivered;
    json::object d;
    for (auto reason : all_drop_reasons)
        if (r.dropped[static_cast<std::size_t>(reason)])
            d[to_string(reason)] = r.dropped[static_cast<std::size_t>(reason)];
    o["dropped"] = std::move(d);
    o["duplicates"] = r.duplicates;
    o["seconds"] = r.seconds;
    o["delivered_events_per_sec"] = r.delivered_per_sec;
    o["process_ns_p50"] = r.p50;
    o["process_ns_p99"] = r.p99;
    o["process_ns_p999"] = r.p999;
    o["e2e_latency_ms_p50"] = r.e2e_p50_ms;
    o["e2e_latency_ms_p99"] = r.e2e_p99_ms;
    o["batches"] = r.batches;
    o["mean_batch_events"] = r.mean_batch_events;
    o["connections_opened"] = r.connections_opened;
    o["outages"] = r.outages;
    o["probes"] = r.probes;
    o["outage_ms"] = r.outage_ms;
    o["held_peak_events"] = r.held_peak_events;
    o["dispatcher_cpu_ns_per_event"] = r.dispatcher_cpu_ns_per_event;
    o["peak_rss_mb"] = r.peak_rss_mb;
    o["accounting_balanced"] = r.balanced;
    return o;
}

void print_table(const run_result& r, const run_result* base) {
    auto row = [&](const char* name, auto fn) {
        std::printf("  %-30s %16s", name, fn(r).c_str());
        if (base)
            std::printf(" %16s", fn(*base).c_str());
        std::printf("\n");
    };
    auto u = [](std::uint64_t v) { return std::to_string(v); };
    auto f = [](double v, int prec) {
        char b[64];
        std::snprintf(b, sizeof b, "%.*f", prec, v);
        return std::string(b);
    };
    std::printf("\n  %-30s %16s", "", r.name.c_str());
    if (base)
        std::printf(" %16s", base->name.c_str());
    std::printf("\n");
    row("events accepted", [&](const run_result& x) { return u(x.accepted); });
    row("events delivered", [&](const run_result& x) { return u(x.delivered); });
    for (auto reason : all_drop_reasons) {
        const auto i = static_cast<std::size_t>(reason);
        if (r.dropped[i] || (base && base->dropped[i])) {
            const std::string label = "dropped: " + std::string(to_string(reason));
            row(label.c_str(), [&](const run_result& x) { return u(x.dropped[i]); });
        }
    }
    row("duplicates at collector", [&](const run_result& x) { return u(x.duplicates); });
    row("delivered events/s", [&](const run_result& x) { return f(x.delivered_per_sec, 0); });
    row("process() p50 / p99 / p999 ns",
        [&](const run_result& x) { return u(x.p50) + "/" + u(x.p99) + "/" + u(x.p999); });
    row("accept->ack p50 / p99 ms",
        [&](const run_result& x) { return f(x.e2e_p50_ms, 2) + "/" + f(x.e2e_p99_ms, 2); });
    row("batches (mean events)",
        [&](const run_result& x) { return u(x.batches) + " (" + f(x.mean_batch_events, 1) + ")"; });
    row("connections opened", [&](const run_result& x) { return u(x.connections_opened); });
    if (r.outages || (base && base->outages)) {
        row("endpoint outages (ms down)",
            [&](const run_result& x) { return u(x.outages) + " (" + u(x.outage_ms) + ")"; });
        row("probes / held peak events",
            [&](const run_result& x) { return u(x.probes) + " / " + u(x.held_peak_events); });
    }
    row("dispatcher CPU ns/event",
        [&](const run_result& x) { return f(x.dispatcher_cpu_ns_per_event, 0); });
    row("peak RSS MB", [&](const run_result& x) { return f(x.peak_rss_mb, 1); });
    row("accepted == delivered+dropped",
        [&](const run_result& x) { return std::string(x.balanced ? "yes" : "NO"); });
    if (base && base->delivered_per_sec > 0)
        std::printf("\n  speedup (delivered events/s, %s over %s): %.1fx\n", r.name.c_str(),
                    base->name.c_str(), r.delivered_per_sec / base->delivered_per_sec);
}

// Sets the named fault on the collector; returns true for a burst (to be cleared after 1 s).
bool apply_fault(collector& col, const std::string& name) {
    collector_faults f;
    bool burst = name.size() > 6 && name.compare(name.size() - 6, 6, "-burst") == 0;
    if (name == "close-after-response") {
        f.close_after_response = true;
    } else if (name.rfind("max-requests=", 0) == 0) {
        option_parser n({"collector-fault"}, {});  // so that a bad N names the option
        n.parse({"--collector-fault", name.substr(13)});
        f.max_requests_per_connection =
            static_cast<unsigned>(n.u64("collector-fault", 1, 1, 1'000'000));
    } else if (name == "5xx-burst") {
        f.retry_after_status = 503;
    } else if (name == "429-burst") {
        f.retry_after_status = 429;
        f.retry_after = "1";
    } else if (name == "reset-burst") {
        f.reset_mid_request = true;
    } else if (name == "stall-burst") {
        f.stall = true;
    } else if (name == "drop-responses-burst") {
        f.accept_then_drop_response = true;
    } else {
        throw usage_error("unknown --collector-fault '" + name + "'");
    }
    col.set_faults(f);
    return burst;
}

const char* bench_help =
    "usage: evdispatch bench [options]\n"
    "  --events N              events to send (default: run for --duration)\n"
    "  --duration T            run time when --events is not given (default 10s)\n"
    "  --producers P           producer threads (default 4)\n"
    "  --rate R                events/s over all producers (default: as fast as possible)\n"
    "  --batch-size N          events per batch (default 10)\n"
    "  --flush-interval T      batch age limit (default 30s)\n"
    "  --max-batch-bytes N     bytes per batch body (default 1048576)\n"
    "  --connections N         keep-alive connections (default 4)\n"
    "  --queue-capacity N      hand-off ring capacity (default 10000)\n"
    "  --collector-delay-ms N  delay each collector response (default 0)\n"
    "  --baseline B            baseline run in the same process: sync (one blocking POST per\n"
    "                          event, new connection each), sync-keepalive, mutex (mutex +\n"
    "                          condition variable + deque hand-off), none (default sync)\n"
    "  --baseline-duration T   baseline run time (default 2s)\n"
    "  --tls                   the embedded collector serves HTTPS (a CA and a certificate for\n"
    "                          localhost are made for the run; verification stays on)\n"
    "  --collector-fault F     fault of the embedded collector: close-after-response,\n"
    "                          max-requests=N, 5xx-burst, 429-burst, reset-burst,\n"
    "                          stall-burst, drop-responses-burst (bursts last the first second)\n"
    "  --url URL               send to a receiver you run instead of the embedded collector\n"
    "                          (http:// or https://; checked before anything starts)\n"
    "  --ca-file FILE          extra CA bundle for an https --url (the system store is trusted\n"
    "                          too; the certificate must name the URL's host)\n"
    "  --close-timeout T       deadline for delivering what is left at the end (default 30s)\n"
    "  --json                  print one JSON object on stdout instead of the table\n"
    "  --quiet                 no progress lines\n"
    "Events not delivered are counted by reason (connect_failed, timeout, tls_verify_failed,\n"
    "server_error, rejected_4xx, network_error, ...), in the table and under \"dropped\" in the\n"
    "JSON; stderr gets the first error of each reason. The sync baselines do not retry: a\n"
    "failed POST drops its event. They use the processor's timeouts (connect 5 s, request\n"
    "10 s) and, after a failed connect, a producer waits 10 ms (doubling up to 250 ms) before\n"
    "its next event.\n"
    "Exit status: 0 the run finished and its accounting balances; 3 the same, but the\n"
    "evdispatch run delivered no event at all (receiver down, refusing or unverifiable); the\n"
    "table or JSON is printed all the same; 1 accounting does not balance, the collector\n"
    "counted fewer events than reported delivered, or another failure; 2 bad usage (options,\n"
    "--url, --ca-file).\n";

// One stderr line per reason a run dropped events for, with what its first failure said.
void report_failures(const run_result& r) {
    for (auto reason : all_drop_reasons) {
        const auto i = index_of(reason);
        std::string first = r.first_failure[i];
        while (!first.empty() && std::isspace(static_cast<unsigned char>(first.back())))
            first.pop_back();
        if (r.dropped[i] == 0 || first.empty())
            continue;
        std::fprintf(
            stderr, "evdispatch bench: %s: %" PRIu64 " events not delivered (%s), first: %s\n",
            r.name.c_str(), r.dropped[i], std::string(to_string(reason)).c_str(), first.c_str());
    }
}

}  // namespace

int run_bench(const args& a) {
    option_parser p(
        {"events", "duration", "producers", "rate", "batch-size", "flush-interval",
         "max-batch-bytes", "connections", "queue-capacity", "collector-delay-ms", "baseline",
         "baseline-duration", "url", "ca-file", "close-timeout", "collector-fault"},
        {"json", "quiet", "help", "tls"});
    p.parse(a);
    if (p.flag("help")) {
        std::fputs(bench_help, stdout);
        return 0;
    }
    bench_options o;
    o.events = p.u64("events", 0);
    o.duration = p.ms("duration", o.duration, "s");
    o.producers = static_cast<unsigned>(p.u64("producers", 4, 1, 256));
    o.rate = p.num("rate", 0, 0, 1e9);
    o.proc.batch.batch_size = p.u64("batch-size", 10, 1);
    o.proc.batch.flush_interval = p.ms("flush-interval", 30'000ms);
    o.proc.batch.max_batch_bytes = p.u64("max-batch-bytes", 1 << 20, 1024);
    o.proc.http.max_connections = p.u64("connections", 4, 1, 1024);
    o.proc.queue_capacity = p.u64("queue-capacity", 10'000, 2);
    o.collector_delay = std::chrono::milliseconds(p.u64("collector-delay-ms", 0, 0, 600'000));
    o.baseline = p.str("baseline", "sync");
    if (o.baseline != "sync" && o.baseline != "sync-keepalive" && o.baseline != "mutex" &&
        o.baseline != "none")
        throw usage_error("--baseline must be sync, sync-keepalive, mutex or none");
    o.baseline_duration = p.ms("baseline-duration", o.baseline_duration, "s");
    o.url = p.str("url", "");
    o.proc.tls.ca_file = p.str("ca-file", "");
    o.tls = p.flag("tls");
    o.collector_fault = p.str("collector-fault", "");
    if (!o.url.empty() && (o.tls || !o.collector_fault.empty() || o.collector_delay.count()))
        throw usage_error(
            "--tls, --collector-fault and --collector-delay-ms apply to the "
            "embedded collector, not to --url");
    o.close_timeout = p.ms("close-timeout", o.close_timeout, "s");
    o.json_out = p.flag("json");
    o.progress = !p.flag("quiet");
    if (o.proc.batch.flush_interval.count() == 0)
        throw usage_error("--flush-interval must be at least 1ms");
    if (o.duration.count() == 0 && o.events == 0)
        throw usage_error("--duration must be positive when --events is not given");
    if (p.has("url")) {
        // The library's own parser, before any thread starts: what it refuses is bad usage.
        endpoint_url parsed;
        try {
            parsed = parse_endpoint_url(o.url);
        } catch (const boost::system::system_error& e) {
            // what() is "<what the parser said>: <the code's text>": keep the first part.
            std::string why = e.what();
            const std::string code_text = ": " + std::string(e.code().what());
            if (why.size() > code_text.size() && why.ends_with(code_text))
                why.resize(why.size() - code_text.size());
            throw usage_error("--url: " + why +
                              " (expected http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH)");
        }
        if (parsed.tls && !o.proc.tls.ca_file.empty()) {
            try {
                (void)test::make_sync_tls_context(o.proc.tls.ca_file);
            } catch (const boost::system::system_error& e) {
                throw usage_error("--ca-file: cannot load \"" + o.proc.tls.ca_file +
                                  "\" as a PEM CA bundle (" + e.code().message() + ")");
            }
        }
    }
    std::unique_ptr<test::tls_certs> certs;
    std::unique_ptr<collector> col;
    std::string url = o.url;
    guarded_thread fault_clearer;  // declared after col: stopped and joined before it goes
    if (url.empty()) {
        collector_config cc;
        cc.delay = o.collector_delay;
        if (o.tls) {
            certs = std::make_unique<test::tls_certs>();
            cc.tls_cert_file = certs->server.cert;
            cc.tls_key_file = certs->server.key;
            cc.url_host = "localhost";
            o.proc.tls.ca_file = certs->ca.cert;
        }
        col = std::make_unique<collector>(cc);
        url = col->url();
        if (!o.collector_fault.empty()) {
            const bool burst = apply_fault(*col, o.collector_fault);
            if (burst)
                fault_clearer = guarded_thread("ev-faults", [c = col.get()](std::stop_token st) {
                    std::mutex m;
                    std::condition_variable_any cv;
                    std::unique_lock lk(m);
                    cv.wait_for(lk, st, 1s, [] { return false; });
                    c->set_faults({});
                });
        }
    }
    if (o.progress)
        std::fprintf(stderr, "evdispatch bench: %u producers -> %s (batch %zu, %zu connections)\n",
                     o.producers, url.c_str(), o.proc.batch.batch_size,
                     o.proc.http.max_connections);
    const run_result ours = run_ours(o, url, col.get());
    fault_clearer.join();
    std::optional<run_result> base;
    if (o.baseline != "none") {
        if (o.progress)
            std::fprintf(stderr, "baseline %s: %s...\n", o.baseline.c_str(),
                         o.baseline == "mutex" ? "mutex + condition variable hand-off"
                                               : "one blocking POST per event");
        if (o.baseline == "mutex") {
            bench_options mo = o;
            if (!o.events)
                mo.duration = o.baseline_duration;
            base = run_ours(mo, url, col.get(), true);
        } else {
            base = run_sync_baseline(o, url, col.get(), o.baseline == "sync-keepalive");
        }
    }

    if (o.json_out) {
        json::object out = to_json(ours);
        json::object cfg;
        cfg["url"] = url;
        cfg["embedded_collector"] = o.url.empty();
        cfg["events"] = o.events;
        cfg["duration_s"] = static_cast<double>(o.duration.count()) / 1000.0;
        cfg["producers"] = o.producers;
        cfg["rate"] = o.rate;
        cfg["batch_size"] = o.proc.batch.batch_size;
        cfg["flush_interval_ms"] = o.proc.batch.flush_interval.count();
        cfg["max_batch_bytes"] = o.proc.batch.max_batch_bytes;
        cfg["connections"] = o.proc.http.max_connections;
        cfg["queue_capacity"] = o.proc.queue_capacity;
        cfg["collector_delay_ms"] = o.collector_delay.count();
        cfg["baseline"] = o.baseline;
        cfg["tls"] = o.tls;
        cfg["collector_fault"] = o.collector_fault;
        cfg["close_timeout_ms"] = o.close_timeout.count();
        out["config"] = std::move(cfg);
        if (base) {
            out["baseline"] = to_json(*base);
            out["speedup"] = base->delivered_per_sec > 0
                                 ? ours.delivered_per_sec / base->delivered_per_sec
                                 : 0.0;
        }
        std::printf("%s\n", json::serialize(out).c_str());
    } else {
        print_table(ours, base ? &*base : nullptr);
    }
    std::fflush(stdout);
    report_failures(ours);
    if (base)
        report_failures(*base);
    if (!ours.balanced || (base && !base->balanced)) {
        std::fprintf(stderr, "evdispatch bench: accounting does not balance\n");
        return 1;
    }
    if (col && ours.collector_events + (base ? base->collector_events : 0) <
                   ours.delivered + (base ? base->delivered : 0)) {
        std::fprintf(stderr,
                     "evdispatch bench: the collector counted fewer events than "
                     "were reported delivered\n");
        return 1;
    }
    if (ours.accepted > 0 && ours.delivered == 0) {
        std::fprintf(stderr, "evdispatch bench: no event was delivered to %s\n", url.c_str());
        return 3;
    }
    return 0;
}

}  // namespace evdispatch::app

namespace evdispatch::app {

namespace {

struct sweep_point {
    std::size_t batch_size;
    std::chrono::milliseconds flush;
    std::size_t connections;
    std::chrono::milliseconds delay;
    run_result r;
};

std::string series_label(const sweep_point& p, bool many_conn, bool many_delay) {
    std::string l = "flush " + std::to_string(p.flush.count()) + " ms";
    if (many_conn)
        l += ", " + std::to_string(p.connections) + " conn";
    if (many_delay)
        l += ", delay " + std::to_string(p.delay.count()) + " ms";
    return l;
}

// Two panels: delivered events/s and accept->ack p99 latency against batch size (log x),
// one line per flush interval (and connections / delay when several were swept).
void write_svg(const std::string& path, const std::vector<sweep_point>& pts,
               const std::string& title) {
    std::ofstream f(path);
    const int W = 1040, H = 460, pw = 420, ph = 320, top = 70, left1 = 80, left2 = 570;
    std::set<std::size_t> conns;
    std::set<long> delays;
    std::vector<std::size_t> sizes;
    for (auto& p : pts) {
        conns.insert(p.connections);
        delays.insert(p.delay.count());
        if (std::find(sizes.begin(), sizes.end(), p.batch_size) == sizes.end())
            sizes.push_back(p.batch_size);
    }
    std::sort(sizes.begin(), sizes.end());
    const bool many_conn = conns.size() > 1, many_delay = delays.size() > 1;
    std::map<std::string, std::vector<const sweep_point*>> series;
    for (auto& p : pts)
        series[series_label(p, many_conn, many_delay)].push_back(&p);
    double max_rate = 1, max_lat = 1, min_lat = 1e18;
    for (auto& p : pts) {
        max_rate = std::max(max_rate, p.r.delivered_per_sec);
        max_lat = std::max(max_lat, p.r.e2e_p99_ms);
        if (p.r.e2e_p99_ms > 0)
            min_lat = std::min(min_lat, p.r.e2e_p99_ms);
    }
    min_lat = std::max(0.1, std::min(min_lat, max_lat) / 2);
    const double lx0 = std::log10(static_cast<double>(sizes.front()));
    const double lx1 = std::max(lx0 + 1, std::log10(static_cast<double>(sizes.back())));
    auto xpos = [&](int left, std::size_t b) {
        return left + (std::log10(static_cast<double>(b)) - lx0) / (lx1 - lx0) * pw;
    };
    auto yrate = [&](double v) { return top + ph - v / (max_rate * 1.1) * ph; };
    const double ll0 = std::log10(min_lat), ll1 = std::log10(max_lat * 1.5);
    auto ylat = [&](double v) {
        v = std::max(v, min_lat);
        return top + ph - (std::log10(v) - ll0) / (ll1 - ll0) * ph;
    };
    static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
         "fill='white'/>\n";
    f << "<text x='" << W / 2 << "' y='24' text-anchor='middle' font-size='15'>" << title
      << "</text>\n";
    for (int panel = 0; panel < 2; ++panel) {
        const int left = panel == 0 ? left1 : left2;
        f << "<rect x='" << left << "' y='" << top << "' width='" << pw << "' height='" << ph
          << "' fill='none' stroke='#444'/>\n";
        f << "<text x='" << left + pw / 2 << "' y='" << top - 10 << "' text-anchor='middle'>"
          << (panel == 0 ? "delivered events/s" : "accept-to-ack p99 latency (ms, log)")
          << "</text>\n";
        f << "<text x='" << left + pw / 2 << "' y='" << top + ph + 36
          << "' text-anchor='middle'>batch size (log)</text>\n";
        for (auto b : sizes) {
            const double x = xpos(left, b);
            f << "<line x1='" << x << "' y1='" << top + ph << "' x2='" << x << "' y2='"
              << top + ph + 5 << "' stroke='#444'/><text x='" << x << "' y='" << top + ph + 18
              << "' text-anchor='middle'>" << b << "</text>\n";
        }
        for (int t = 0; t <= 4; ++t) {
            double v, y;
            if (panel == 0) {
                v = max_rate * 1.1 * t / 4;
                y = yrate(v);
            } else {
                v = std::pow(10.0, ll0 + (ll1 - ll0) * t / 4);
                y = ylat(v);
            }
            char buf[32];
            std::snprintf(buf, sizeof buf, panel == 0 ? "%.0fk" : "%.3g",
                          panel == 0 ? v / 1000 : v);
            f << "<line x1='" << left << "' y1='" << y << "' x2='" << left + pw << "' y2='" << y
              << "' stroke='#ddd'/><text x='" << left - 6 << "' y='" << y + 4
              << "' text-anchor='end'>" << buf << "</text>\n";
        }
        int ci = 0;
        for (auto& [label, ps] : series) {
            auto sorted = ps;
            std::sort(sorted.begin(), sorted.end(),
                      [](auto* a, auto* b) { return a->batch_size < b->batch_size; });
            f << "<polyline fill='none' stroke-width='2' stroke='" << colors[ci % 8]
              << "' points='";
            for (auto* p : sorted)
                f << xpos(left, p->batch_size) << ","
                  << (panel == 0 ? yrate(p->r.delivered_per_sec) : ylat(p->r.e2e_p99_ms)) << " ";
            f << "'/>\n";
            for (auto* p : sorted)
                f << "<circle r='3' fill='" << colors[ci % 8] << "' cx='"
                  << xpos(left, p->batch_size) << "' cy='"
                  << (panel == 0 ? yrate(p->r.delivered_per_sec) : ylat(p->r.e2e_p99_ms))
                  << "'/>\n";
            if (panel == 1)
                f << "<rect x='" << left1 + 10 + 170 * (ci % 5) << "' y='" << H - 28 - 16 * (ci / 5)
                  << "' width='12' height='12' fill='" << colors[ci % 8] << "'/><text x='"
                  << left1 + 26 + 170 * (ci % 5) << "' y='" << H - 18 - 16 * (ci / 5) << "'>"
                  << label << "</text>\n";
            ++ci;
        }
    }
    f << "</svg>\n";
}

const char* sweep_help =
    "usage: evdispatch sweep [options]\n"
    "Runs `bench` (embedded collector, no baseline) over a grid and writes a CSV and an SVG chart\n"
    "of delivered events/s and p99 accept-to-ack latency against batch size.\n"
    "  --batch-sizes L         comma list (default 1,10,100,1000)\n"
    "  --flush-intervals L     comma list of durations (default 10ms,100ms,1s)\n"
    "  --connections L         comma list (default 4)\n"
    "  --collector-delays L    comma list of ms (default 0)\n"
    "  --duration T            per point (default 2s)\n"
    "  --producers P           (default 4)\n"
    "  --rate R                events/s per point (default: as fast as possible)\n"
    "  --out FILE              CSV (default sweep.csv)\n"
    "  --chart FILE            SVG (default sweep.svg)\n"
    "  --quiet                 no progress lines\n";

}  // namespace

int run_sweep(const args& a) {
    option_parser p({"batch-sizes", "flush-intervals", "connections", "collector-delays",
                     "duration", "producers", "rate", "out", "chart"},
                    {"quiet", "help"});
    p.parse(a);
    if (p.flag("help")) {
        std::fputs(sweep_help, stdout);
        return 0;
    }
    auto parse_u64s = [&](const char* name, const char* def) {
        std::vector<std::uint64_t> out;
        for (auto& item : split_list(p.str(name, def))) {
            if (item.empty())
                continue;
            option_parser one({name}, {});  // so that a bad item names the option
            one.parse({std::string("--") + name, item});
            out.push_back(one.u64(name, 0));
        }
        if (out.empty())
            throw usage_error(std::string("--") + name + " is empty");
        return out;
    };
    const auto sizes = parse_u64s("batch-sizes", "1,10,100,1000");
    const auto conns = parse_u64s("connections", "4");
    const auto delays = parse_u64s("collector-delays", "0");
    std::vector<std::chrono::milliseconds> flushes;
    for (auto& item : split_list(p.str("flush-intervals", "10ms,100ms,1s"))) {
        if (item.empty())
            continue;
        option_parser one({"flush-intervals"}, {});
        one.parse({"--flush-intervals", item});
        flushes.push_back(one.ms("flush-intervals", 0ms));
        if (flushes.back().count() <= 0)
            throw usage_error("--flush-intervals: must be >= 1ms");
    }
    for (auto b : sizes)
        if (b == 0)
            throw usage_error("--batch-sizes: must be >= 1");
    for (auto c : conns)
        if (c == 0)
            throw usage_error("--connections: must be >= 1");
    bench_options base;
    base.duration = p.ms("duration", 2'000ms, "s");
    base.producers = static_cast<unsigned>(p.u64("producers", 4, 1, 256));
    base.rate = p.num("rate", 0, 0, 1e9);
    base.progress = false;
    base.close_timeout = 30s;
    const std::string out_path = p.str("out", "sweep.csv");
    const std::string chart_path = p.str("chart", "sweep.svg");
    const bool quiet = p.flag("quiet");

    std::vector<sweep_point> pts;
    const std::size_t total = sizes.size() * flushes.size() * conns.size() * delays.size();
    bool all_balanced = true;
    for (auto d : delays)
        for (auto c : conns)
            for (auto fl : flushes)
                for (auto b : sizes) {
                    bench_options o = base;
                    o.proc.batch.batch_size = b;
                    o.proc.batch.flush_interval = fl;
                    o.proc.http.max_connections = c;
                    o.collector_delay = std::chrono::milliseconds(d);
                    collector_config cc;
                    cc.delay = o.collector_delay;
                    collector col(cc);
                    sweep_point sp{b, fl, c, o.collector_delay, run_ours(o, col.url(), &col)};
                    all_balanced = all_balanced && sp.r.balanced;
                    if (!quiet)
                        std::fprintf(stderr,
                                     "[%zu/%zu] batch %zu flush %lldms conn %zu delay %llums: "
                                     "%.0f ev/s, p99 %.2f ms\n",
                                     pts.size() + 1, total, b, (long long)fl.count(), c,
                                     (unsigned long long)d, sp.r.delivered_per_sec,
                                     sp.r.e2e_p99_ms);
                    pts.push_back(std::move(sp));
                }
    std::ofstream csv(out_path);
    csv << "batch_size,flush_interval_ms,connections,collector_delay_ms,delivered_events_per_sec,"
           "e2e_latency_ms_p50,e2e_latency_ms_p99,process_ns_p99,dispatcher_cpu_ns_per_event,"
           "mean_batch_events,accepted,delivered,dropped_queue_full\n";
    for (auto& sp : pts)
        csv << sp.batch_size << ',' << sp.flush.count() << ',' << sp.connections << ','
            << sp.delay.count() << ',' << sp.r.delivered_per_sec << ',' << sp.r.e2e_p50_ms << ','
            << sp.r.e2e_p99_ms << ',' << sp.r.p99 << ',' << sp.r.dispatcher_cpu_ns_per_event << ','
            << sp.r.mean_batch_events << ',' << sp.r.accepted << ',' << sp.r.delivered << ','
            << sp.r.dropped[static_cast<std::size_t>(drop_reason::queue_full)] << '\n';
    char title[160];
    std::snprintf(
        title, sizeof title, "evdispatch sweep: %u producers, %s, %.1f s per point", base.producers,
        base.rate > 0 ? (std::to_string(static_cast<long long>(base.rate)) + " events/s").c_str()
                      : "full speed",
        static_cast<double>(base.duration.count()) / 1000.0);
    write_svg(chart_path, pts, title);
    std::printf("wrote %s and %s (%zu points)\n", out_path.c_str(), chart_path.c_str(), pts.size());
    return all_balanced ? 0 : 1;
}

}  // namespace evdispatch::app
