// evdispatch sweep: the bench run over a grid of batch sizes, flush intervals, connections and
// collector delays, each point against a fresh embedded collector; a CSV and an SVG chart.

#include "bench_run.hpp"
#include "commands.hpp"
#include "options.hpp"
#include "svg_chart.hpp"

#include <evdispatch/collector/collector.hpp>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace evdispatch::app {

using namespace std::chrono_literals;

namespace {

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

// The items of the list option `name` (default `def`), empty items skipped, each read by
// `read(parser, name)` from a parser holding that item alone, so that a bad item names the
// option. An empty list is bad usage.
template <class Read>
auto read_list(const option_parser& p, const char* name, const char* def, Read read) {
    std::vector<decltype(read(p, name))> out;
    for (const auto& item : split_list(p.str(name, def))) {
        if (item.empty())
            continue;
        option_parser one({name}, {});
        one.parse({std::string("--") + name, item});
        out.push_back(read(one, name));
    }
    if (out.empty())
        throw usage_error(std::string("--") + name + " is empty");
    return out;
}

struct sweep_grid {
    std::vector<std::uint64_t> sizes, connections, delays;
    std::vector<std::chrono::milliseconds> flushes;
    std::size_t points() const {
        return sizes.size() * flushes.size() * connections.size() * delays.size();
    }
};

sweep_grid read_grid(const option_parser& p) {
    const auto u64 = [](const option_parser& one, const char* name) { return one.u64(name, 0); };
    sweep_grid g;
    g.sizes = read_list(p, "batch-sizes", "1,10,100,1000", u64);
    g.connections = read_list(p, "connections", "4", u64);
    g.delays = read_list(p, "collector-delays", "0", u64);
    g.flushes = read_list(p, "flush-intervals", "10ms,100ms,1s",
                          [](const option_parser& one, const char* name) {
                              const auto t = one.ms(name, 0ms);
                              if (t.count() <= 0)
                                  throw usage_error("--flush-intervals: must be >= 1ms");
                              return t;
                          });
    for (auto b : g.sizes)
        if (b == 0)
            throw usage_error("--batch-sizes: must be >= 1");
    for (auto c : g.connections)
        if (c == 0)
            throw usage_error("--connections: must be >= 1");
    return g;
}

struct sweep_point {
    std::size_t batch_size;
    std::chrono::milliseconds flush;
    std::size_t connections;
    std::chrono::milliseconds delay;
    run_result r;
};

void write_csv(const std::string& path, const std::vector<sweep_point>& pts) {
    std::ofstream csv(path);
    csv << "batch_size,flush_interval_ms,connections,collector_delay_ms,delivered_events_per_sec,"
           "e2e_latency_ms_p50,e2e_latency_ms_p99,process_ns_p99,dispatcher_cpu_ns_per_event,"
           "mean_batch_events,accepted,delivered,dropped_queue_full\n";
    for (auto& sp : pts)
        csv << sp.batch_size << ',' << sp.flush.count() << ',' << sp.connections << ','
            << sp.delay.count() << ',' << sp.r.delivered_per_sec << ',' << sp.r.e2e_p50_ms << ','
            << sp.r.e2e_p99_ms << ',' << sp.r.p99 << ',' << sp.r.dispatcher_cpu_ns_per_event << ','
            << sp.r.mean_batch_events << ',' << sp.r.accepted << ',' << sp.r.delivered << ','
            << sp.r.dropped[index_of(drop_reason::queue_full)] << '\n';
}

// A series per flush interval, and per connections and delay when several were swept.
chart_series series_of(const std::vector<sweep_point>& pts) {
    std::set<std::size_t> conns;
    std::set<long> delays;
    for (auto& p : pts) {
        conns.insert(p.connections);
        delays.insert(p.delay.count());
    }
    chart_series series;
    for (auto& p : pts) {
        std::string label = "flush " + std::to_string(p.flush.count()) + " ms";
        if (conns.size() > 1)
            label += ", " + std::to_string(p.connections) + " conn";
        if (delays.size() > 1)
            label += ", delay " + std::to_string(p.delay.count()) + " ms";
        series[label].push_back({p.batch_size, p.r.delivered_per_sec, p.r.e2e_p99_ms});
    }
    return series;
}

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
    const sweep_grid grid = read_grid(p);
    bench_options base;
    base.duration = p.ms("duration", 2'000ms, "s");
    base.producers = static_cast<unsigned>(p.u64("producers", 4, 1, 256));
    base.rate = p.num("rate", 0, 0, 1e9);
    base.progress = false;
    const std::string out_path = p.str("out", "sweep.csv");
    const std::string chart_path = p.str("chart", "sweep.svg");
    const bool quiet = p.flag("quiet");

    std::vector<sweep_point> pts;
    bool all_balanced = true;
    for (auto d : grid.delays)
        for (auto c : grid.connections)
            for (auto fl : grid.flushes)
                for (auto b : grid.sizes) {
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
                                     pts.size() + 1, grid.points(), sp.batch_size,
                                     static_cast<long long>(fl.count()), sp.connections,
                                     static_cast<unsigned long long>(d), sp.r.delivered_per_sec,
                                     sp.r.e2e_p99_ms);
                    pts.push_back(std::move(sp));
                }
    write_csv(out_path, pts);
    char title[160];
    std::snprintf(
        title, sizeof title, "evdispatch sweep: %u producers, %s, %.1f s per point", base.producers,
        base.rate > 0 ? (std::to_string(static_cast<long long>(base.rate)) + " events/s").c_str()
                      : "full speed",
        static_cast<double>(base.duration.count()) / 1000.0);
    write_sweep_chart(chart_path, title, series_of(pts));
    std::printf("wrote %s and %s (%zu points)\n", out_path.c_str(), chart_path.c_str(), pts.size());
    return all_balanced ? 0 : 1;
}

}  // namespace evdispatch::app
