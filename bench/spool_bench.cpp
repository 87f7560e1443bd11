// Throughput of the disk spool's store, on the machine's own disk (a directory under the
// system temporary directory): appending sealed batches under each fsync policy, and replaying
// them (read back, checked, acknowledged) after a restart. The spool thread does this work,
// off the producers' and the strand's path; these numbers say how fast an outage can be
// written down and drained again.
//
//   cmake --build build/release --target spool_bench
//   build/release/bench/spool_bench --benchmark_min_time=1
//
// Output per run: bytes_per_second (request body bytes) and items_per_second (events); a
// batch is 100 events of ~700 bytes, as evdispatch bench builds them.

#include "spool/file_system.hpp"
#include "spool/store.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

using namespace evdispatch::detail::spool;
namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t events_per_batch = 100;
constexpr std::size_t event_bytes = 700;

struct temp_dir {
    std::string path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "evdispatch-spool-bench-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr)
            std::abort();
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

store_options options(const std::string& dir, fsync_policy p) {
    store_options o;
    o.dir = dir;
    o.fsync = p;
    o.max_bytes = 1ull << 40;
    return o;
}

record_meta meta() {
    record_meta m;
    m.url = "http://127.0.0.1:8080/v1/events";
    m.headers = {{"Content-Type", "application/json"}};
    m.event_count = events_per_batch;
    m.created_ms = 1'800'000'000'000;
    return m;
}

// Appends batches; every 64 MiB (untimed) acknowledges them so that files are removed and the
// disk does not fill. With fsync interval, sync_due() runs after each append as the spool
// thread's timer would (it syncs once a second).
void append(benchmark::State& state) {
    const auto policy = static_cast<fsync_policy>(state.range(0));
    temp_dir dir;
    store s(options(dir.path, policy), make_posix_file_system());
    const std::string body(events_per_batch * event_bytes, 'x');
    const auto m = meta();
    std::vector<record_ref> written;
    std::uint64_t bytes = 0;
    for (auto _ : state) {
        auto [ec, ref] = s.append(m, body, false);
        if (ec) {
            state.SkipWithError(ec.message().c_str());
            break;
        }
        if (policy == fsync_policy::interval)
            s.sync_due(std::chrono::steady_clock::now());
        written.push_back(ref);
        bytes += body.size();
        if (written.size() * body.size() >= (64u << 20)) {
            state.PauseTiming();
            for (auto r : written)
                s.ack(r);
            written.clear();
            state.ResumeTiming();
        }
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * events_per_batch);
}
BENCHMARK(append)
    ->Arg(static_cast<int>(fsync_policy::none))
    ->Arg(static_cast<int>(fsync_policy::interval))
    ->Arg(static_cast<int>(fsync_policy::every_batch))
    ->ArgName("fsync(0=none,1=interval,2=every_batch)")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();  // disk time is wall time

// A restart: 64 MiB of batches written by one store (untimed), then a second store adopts the
// directory and reads every batch back (checksums checked) and acknowledges it.
void replay(benchmark::State& state) {
    const std::string body(events_per_batch * event_bytes, 'x');
    const auto m = meta();
    const std::size_t batches = (64u << 20) / body.size();
    std::uint64_t bytes = 0, events = 0;
    for (auto _ : state) {
        state.PauseTiming();
        temp_dir dir;
        {
            store writer(options(dir.path, fsync_policy::none), make_posix_file_system());
            for (std::size_t i = 0; i < batches; ++i)
                (void)writer.append(m, body, false);
        }
        state.ResumeTiming();
        store reader(options(dir.path, fsync_policy::interval), make_posix_file_system());
        while (auto r = reader.next(m.created_ms, std::chrono::milliseconds(0))) {
            bytes += r->body.size();
            events += r->meta.event_count;
            reader.ack({r->origin, r->id});
        }
        reader.sync();
        state.PauseTiming();
        if (events == 0)
            state.SkipWithError("nothing was recovered");
        state.ResumeTiming();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
    state.SetItemsProcessed(static_cast<std::int64_t>(events));
}
BENCHMARK(replay)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
