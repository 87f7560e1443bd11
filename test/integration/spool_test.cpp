// The disk spool through the processor, against the real loopback collector: an outage longer
// than the memory room, a restart that hands spooled events to the next processor, a real
// kill -9 of a process that spools, and bad configuration.

#include "support/fixtures.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// A fresh directory under the system temporary directory, removed at the end.
struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "evdispatch-spool-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string str() const { return path.string(); }
};

processor_config spooling_config(const std::string& url, const std::string& dir) {
    processor_config cfg;
    cfg.endpoint = url;
    cfg.batch.batch_size = 20;
    cfg.batch.flush_interval = 50ms;
    cfg.batch.max_batch_bytes = 16 * 1024;
    cfg.health.probe_initial = 100ms;
    cfg.health.probe_max = 500ms;
    cfg.spool.dir = dir;
    cfg.spool.segment_bytes = 64 * 1024;
    return cfg;
}

}  // namespace

TEST_CASE("spool: an outage longer than the memory room loses nothing and refuses nothing",
          "[integration][spool]") {
    temp_dir dir;
    collector col;
    auto cfg = spooling_config(col.url(), dir.str());
    cfg.backlog_max_bytes = 64 * 1024;  // about 90 events of these: the outage needs the disk
    batch_event_processor p(cfg);
    event_builder b(test::make_context(cfg.endpoint));

    // 2 producers at 500 events/s each; the collector is down for 20 s in the middle.
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> refused{0}, sent{0};
    std::atomic<std::uint64_t> memory_peak{0}, spool_peak{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < 2; ++t) {
        producers.emplace_back([&, t] {
            auto next = std::chrono::steady_clock::now();
            for (std::uint64_t i = 0; !stop.load(); ++i) {
                next += 2ms;
                std::this_thread::sleep_until(next);
                ++sent;
                if (p.process(test::make_impression(b, std::uint64_t(t) * 1'000'000 + i)) !=
                    process_result::accepted)
                    ++refused;
            }
        });
    }
    std::thread sampler([&] {
        while (!stop.load()) {
            const auto m = p.metrics();
            memory_peak = std::max<std::uint64_t>(memory_peak, m.backlog_bytes + m.held_bytes);
            spool_peak = std::max<std::uint64_t>(spool_peak, m.spooled_events);
            std::this_thread::sleep_for(20ms);
        }
    });
    std::this_thread::sleep_for(1s);
    col.pause_listening();
    std::this_thread::sleep_for(20s);
    const auto during = p.metrics();
    col.resume_listening();
    std::this_thread::sleep_for(2s);
    stop = true;
    for (auto& t : producers)
        t.join();
    sampler.join();

    CHECK(during.state != endpoint_state::up);
    CHECK(during.spooled_events > 10'000);  // 20 s at 1,000 events/s went to disk
    CHECK(refused == 0);
    CHECK(memory_peak <= cfg.backlog_max_bytes);
    REQUIRE(test::wait_until([&] { return p.metrics().spooled_events == 0; }, 60s));
    auto [ec, r] = test::close_and_wait(p, 30s);
    CHECK_FALSE(ec);
    CHECK(r.metrics.accepted == sent);
    CHECK(r.metrics.dropped_total() == 0);
    CHECK(r.delivered == r.metrics.accepted);
    CHECK(r.spooled == 0);
    CHECK(r.metrics.balanced());
    CHECK(r.metrics.spool_writes > 0);
    CHECK(r.metrics.spool_reads == r.metrics.spool_writes);
    const auto s = col.stats();
    CHECK(s.unique_events == r.delivered);
    CHECK(s.events == s.unique_events + s.duplicates);
}

TEST_CASE("spool: events spooled at close are delivered by the next processor",
          "[integration][spool]") {
    temp_dir dir;
    collector col(collector_config{.keep_bodies = true});
    col.pause_listening();
    std::uint64_t left = 0;
    {
        batch_event_processor p(spooling_config(col.url(), dir.str()));
        event_builder b(test::make_context(col.url()));
        for (int i = 0; i < 500; ++i)
            REQUIRE(p.process(test::make_impression(b, std::uint64_t(i))) ==
                    process_result::accepted);
        REQUIRE(test::wait_until([&] { return p.metrics().state != endpoint_state::up; }));
        auto [ec, r] = test::close_and_wait(p, 500ms);
        CHECK(ec == error::close_deadline);
        CHECK(r.delivered == 0);
        CHECK(r.metrics.dropped_total() == 0);
        CHECK(r.spooled == 500);  // nothing lost: all of it waits on disk
        CHECK(r.metrics.balanced());
        left = r.spooled;
    }
    const auto on_disk = inspect_spool(dir.str());
    CHECK(on_disk.events() == left);
    CHECK(col.stats().batches == 0);

    col.resume_listening();
    batch_event_processor next(spooling_config(col.url(), dir.str()));
    REQUIRE(test::wait_until([&] { return next.metrics().pending_recovered == 0; }, 30s));
    auto [ec, r] = test::close_and_wait(next, 5s);
    CHECK_FALSE(ec);
    CHECK(r.metrics.recovered == 500);
    CHECK(r.metrics.delivered_recovered == 500);
    CHECK(r.metrics.accepted == 0);  // the per-process identity is its own
    CHECK(r.metrics.balanced());
    const auto s = col.stats();
    CHECK(s.unique_events == 500);
    CHECK(s.rejected == 0);
    // Everything delivered: nothing left on disk.
    CHECK(inspect_spool(dir.str()).events() == 0);
}

TEST_CASE("spool: a kill -9 loses no batch that was spooled (mode always, fsync every_batch)",
          "[integration][spool]") {
    // A child process spools every batch before sending it to a port where nothing listens
    // yet, and writes the body of each batch the moment it is handed to the dispatcher (so
    // after its spool write returned) to a pipe. The parent kills it at a random moment, then
    // starts the collector on that port and delivers the spool: every reported body must
    // arrive, byte for byte. (The child is forked before the parent starts any thread.)
    std::mt19937 rng(20261130);
    const int rounds = 12;
    std::size_t reported_total = 0, recovered_total = 0;
    for (int round = 0; round < rounds; ++round) {
        CAPTURE(round);
        temp_dir dir;
        const auto refused = test::refused_port();
        const std::string dead_url = "http://127.0.0.1:" + std::to_string(refused) + "/v1/events";
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            ::close(fds[0]);
            auto cfg = spooling_config(dead_url, dir.str());
            cfg.batch.batch_size = 5;
            cfg.spool.mode = spool_mode::always;
            cfg.spool.fsync = spool_fsync::every_batch;
            cfg.health.failure_threshold = 0;  // every batch retries on its own, and stays
            cfg.retry.max_attempts = 1'000;
            cfg.retry.max_retry_time = 0ms;
            processor_hooks hooks;
            const int out = fds[1];
            hooks.on_log_event = [out](const log_event& le) {
                const std::string line = le.body + "\n";
                (void)!::write(out, line.data(), line.size());
            };
            batch_event_processor p(cfg, hooks);
            event_builder b(test::make_context(dead_url));
            for (std::uint64_t i = 0;; ++i) {
                p.process(test::make_impression(b, i));
                std::this_thread::sleep_for(200us);
            }
        }
        ::close(fds[1]);
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::uniform_int_distribution<int>(100, 400)(rng)));
        ::kill(child, SIGKILL);
        int status = 0;
        ::waitpid(child, &status, 0);
        CHECK(WIFSIGNALED(status));
        std::set<std::string> reported;
        {
            std::string all;
            char buf[65536];
            for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
                all.append(buf, static_cast<std::size_t>(n));
            ::close(fds[0]);
            std::size_t pos = 0;
            for (std::size_t nl; (nl = all.find('\n', pos)) != std::string::npos; pos = nl + 1)
                reported.insert(all.substr(pos, nl - pos));  // a torn last line has no newline
        }

        collector col(collector_config{.port = refused, .keep_bodies = true});
        batch_event_processor drain(spooling_config(dead_url, dir.str()));
        REQUIRE(test::wait_until([&] { return drain.metrics().pending_recovered == 0; }, 30s));
        auto [ec, r] = test::close_and_wait(drain, 5s);
        CHECK_FALSE(ec);
        CHECK(r.metrics.balanced());
        CHECK(r.metrics.dropped_recovered[std::size_t(drop_reason::spool_corrupt)] == 0);
        CHECK(r.metrics.delivered_recovered == r.metrics.recovered);
        const auto bodies = col.bodies();
        const std::set<std::string> arrived(bodies.begin(), bodies.end());
        std::size_t missing = 0;
        for (const auto& body : reported)
            missing += arrived.count(body) == 0;
        CHECK(missing == 0);
        CHECK(col.stats().rejected == 0);  // never a partial frame sent
        CHECK(r.metrics.delivered_recovered >= reported.size() * 5);
        reported_total += reported.size();
        recovered_total += r.metrics.recovered;
    }
    // The rounds did spool and report batches (not a loop that killed every child at birth).
    CHECK(reported_total >= rounds);
    CHECK(recovered_total >= reported_total * 5);
    WARN("kill -9 rounds: " << reported_total << " batches reported spooled, " << recovered_total
                            << " events recovered and delivered");
}

TEST_CASE("spool: bad configuration is refused at construction, naming the field",
          "[integration][spool]") {
    temp_dir dir;
    struct bad_case {
        const char* name;
        std::function<void(processor_config&)> set;
        const char* field;
    };
    std::ofstream(dir.str() + "/a-file") << "x";
    // The cases change a configuration whose spool.dir is the temporary directory.
    auto c = GENERATE(values<bad_case>({
        {"missing dir", [](processor_config& x) { x.spool.dir += "/nope"; }, "spool.dir"},
        {"a file where the directory should be",
         [](processor_config& x) { x.spool.dir += "/a-file"; }, "spool.dir"},
        {"max_bytes below segment_bytes",
         [](processor_config& x) {
             x.spool.segment_bytes = 8 << 20;
             x.spool.max_bytes = 1 << 20;
         },
         "spool.max_bytes"},
        {"segment smaller than a batch", [](processor_config& x) { x.spool.segment_bytes = 1024; },
         "spool.segment_bytes"},
    }));
    CAPTURE(c.name);
    processor_config cfg;
    cfg.endpoint = "http://127.0.0.1:9/v1/events";
    cfg.spool.dir = dir.str();
    c.set(cfg);
    try {
        batch_event_processor p(cfg);
        FAIL("constructed");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == error::invalid_config);
        CHECK_THAT(e.what(), Catch::Contains(c.field));
    }
}
