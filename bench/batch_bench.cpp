// Cost of assembling one event-batch body on the dispatcher strand: detail::batcher takes N
// pre-serialised visitors (~500 bytes each, one context), then a flush closes the batch
// (envelope prefix, comma-joined visitors, suffix). This is the strand's per-event work
// besides the hand-off and the network. Allocating and freeing the body is included, as in
// the processor (each closed batch owns its body).
//
//   cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
//   cmake --build build/release --target batch_bench
//   build/release/bench/batch_bench --benchmark_min_time=0.2
//
// Output: Time per batch; ns_per_event = Time / N; bytes_per_second = body bytes assembled
// per second; visitor_bytes = mean visitor size; body_bytes = size of one batch body.

#include "core/batcher.hpp"
#include "support/workload.hpp"

#include <evdispatch/config.hpp>

#include <benchmark/benchmark.h>

#include <boost/json/parse.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

using namespace evdispatch;

namespace {

void batch_assembly(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<event_ptr> events = test::make_visitors(n);
    std::size_t visitor_bytes = 0;
    for (const auto& e : events)
        visitor_bytes += e->visitor_json.size();

    batch_config cfg;
    cfg.batch_size = n + 1;  // closed by the flush, not by count
    cfg.max_batch_bytes = 4 * 1024 * 1024;
    detail::batcher batches(cfg);
    std::vector<detail::closed_batch> out;
    out.reserve(1);
    const auto now = detail::clock::now();  // the drain reads the clock once per turn

    // Check once, untimed, that the body is one valid batch of all N visitors.
    for (const auto& e : events)
        batches.add(*e, now, out);
    batches.flush(out);
    if (out.size() != 1 || out[0].events != n) {
        state.SkipWithError("batcher did not produce one batch of N events");
        return;
    }
    boost::system::error_code ec;
    const auto doc = boost::json::parse(out[0].body, ec);
    if (ec || !doc.is_object() || doc.as_object().at("visitors").as_array().size() != n) {
        state.SkipWithError("batch body is not the expected JSON");
        return;
    }
    const std::size_t body_bytes = out[0].body.size();
    out.clear();

    std::chrono::steady_clock::time_point started{};
    bool first = true;
    for (auto _ : state) {
        if (first) {  // after the framework's start, so setup is not counted
            started = std::chrono::steady_clock::now();
            first = false;
        }
        for (const auto& e : events)
            batches.add(*e, now, out);
        batches.flush(out);
        benchmark::DoNotOptimize(out.data());
        out.clear();  // frees the body, as sending a batch eventually does
    }

    const auto elapsed = std::chrono::steady_clock::now() - started;
    const auto iters = static_cast<std::int64_t>(state.iterations());
    state.SetItemsProcessed(iters * static_cast<std::int64_t>(n));
    state.SetBytesProcessed(iters * static_cast<std::int64_t>(body_bytes));
    // Wall time, like the Time column (the CPU column is the same without preemption).
    state.counters["ns_per_event"] =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
        (static_cast<double>(iters) * static_cast<double>(n));
    state.counters["visitor_bytes"] = static_cast<double>(visitor_bytes) / static_cast<double>(n);
    state.counters["body_bytes"] = static_cast<double>(body_bytes);
}
BENCHMARK(batch_assembly)->Arg(10)->Arg(100)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();
