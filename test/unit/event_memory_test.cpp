// make_event and the event memory behind it: one block per event, given back to the cache of
// the thread that made it, wherever it is released; threads that exit leave their cache to the
// next thread. Counts only (no timing); under AddressSanitizer a cached block is poisoned, so a
// use after release is caught as with the system allocator.

#include "core/event_memory.hpp"
#include "support/workload.hpp"

#include <catch2/catch.hpp>

#include <evdispatch/event.hpp>

#include <condition_variable>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace evdispatch;
namespace em = evdispatch::detail::event_memory;

namespace {

std::string visitor(std::size_t n, std::size_t pad = 0) {
    return "{\"visitor_id\":\"u" + std::to_string(n) + "\",\"pad\":\"" + std::string(pad, 'x') +
           "\",\"snapshots\":[]}";
}

// Events made by `threads` threads alive at the same time (so each has a cache of its own),
// `count` each, which then exit. Events of thread p are visitors p*1000 + i.
std::vector<std::vector<event_ptr>> make_on_threads(std::size_t threads, std::size_t count,
                                                    std::size_t pad) {
    std::vector<std::vector<event_ptr>> out(threads);
    std::latch all_made(static_cast<std::ptrdiff_t>(threads));
    std::vector<std::thread> ts;
    for (std::size_t p = 0; p < threads; ++p)
        ts.emplace_back([&, p] {
            const auto ctx = test::make_context("http://127.0.0.1:9/v1/events");
            for (std::size_t i = 0; i < count; ++i)
                out[p].push_back(make_event(ctx, visitor(p * 1000 + i, pad)));
            all_made.arrive_and_wait();
        });
    for (auto& t : ts)
        t.join();
    return out;
}

}  // namespace

TEST_CASE("make_event keeps the context, the bytes and the time in one event") {
    const auto ctx = test::make_context("http://127.0.0.1:9/v1/events");
    const auto t = std::chrono::steady_clock::now() - std::chrono::seconds(3);
    std::string text = visitor(7, 100);
    const auto ev = make_event(ctx, text, t);
    text.assign(text.size(), '#');  // the event has its own copy
    CHECK(ev->visitor_json == visitor(7, 100));
    CHECK(ev->context == ctx);
    CHECK(ev->created == t);
    CHECK(make_event(ctx, "")->visitor_json.empty());
    // Larger than the biggest cached size: from the system allocator, the same to the user.
    const auto big = make_event(ctx, visitor(1, 20'000));
    CHECK(big->visitor_json == visitor(1, 20'000));
}

TEST_CASE("blocks released on another thread go back to the cache of the thread that made them") {
    const auto ctx = test::make_context("http://127.0.0.1:9/v1/events");
    std::vector<event_ptr> made;
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
    em::stats after_first{};
    em::stats after_second{};
    std::vector<std::string> second_bytes;
    std::thread producer([&] {
        for (int i = 0; i < 500; ++i)
            made.push_back(make_event(ctx, visitor(static_cast<std::size_t>(i), 200)));
        {
            std::unique_lock lk(mu);
            after_first = em::read_stats();
            cv.notify_all();
            cv.wait(lk, [&] { return released; });
        }
        // The 500 blocks the test thread released are back: these reuse them.
        std::vector<event_ptr> again;
        for (int i = 0; i < 500; ++i)
            again.push_back(make_event(ctx, visitor(1000 + static_cast<std::size_t>(i), 200)));
        after_second = em::read_stats();
        for (const auto& e : again)
            second_bytes.emplace_back(e->visitor_json);
    });
    {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return after_first.fresh + after_first.reused > 0; });
        {
            const em::return_scope gathering;  // as the processor's drain releases them
            made.clear();
        }
        released = true;
        cv.notify_all();
    }
    producer.join();
    CHECK(after_second.returned - after_first.returned >= 500);
    CHECK(after_second.reused - after_first.reused >= 500);
    CHECK(after_second.fresh == after_first.fresh);  // nothing new taken from the system
    REQUIRE(second_bytes.size() == 500);
    for (std::size_t i = 0; i < second_bytes.size(); ++i)
        CHECK(second_bytes[i] == visitor(1000 + i, 200));
}

TEST_CASE("a scope gathering the blocks of many threads gives every one back") {
    // Six producer threads (more owners than a scope gathers at once), 300 events each (more
    // than it gathers before handing back): released together on this thread.
    auto made = make_on_threads(6, 300, 50);
    std::vector<event_ptr> all;
    for (std::size_t p = 0; p < made.size(); ++p)
        for (std::size_t i = 0; i < made[p].size(); ++i) {
            REQUIRE(made[p][i]->visitor_json == visitor(p * 1000 + i, 50));
            all.push_back(std::move(made[p][i]));
        }
    {
        const em::return_scope outer;
        const em::return_scope inner;  // nesting: the outermost hands back
        all.clear();
    }
    // The threads have exited: their caches were parked (last), and six new threads alive at
    // once adopt them and take back what was returned, so all of it is reused.
    const auto before = em::read_stats();
    const auto again = make_on_threads(6, 300, 50);
    const auto after = em::read_stats();
    CHECK(after.returned - before.returned >= 6 * 300);
    CHECK(after.reused - before.reused >= 6 * 300);
    CHECK(after.fresh == before.fresh);
    for (std::size_t p = 0; p < again.size(); ++p)
        for (std::size_t i = 0; i < again[p].size(); ++i)
            REQUIRE(again[p][i]->visitor_json == visitor(p * 1000 + i, 50));
}

TEST_CASE("an event released on the thread that made it is cached there at once") {
    const auto ctx = test::make_context("http://127.0.0.1:9/v1/events");
    std::uint64_t reused = 0;
    std::uint64_t fresh = 0;
    std::size_t wrong = 0;
    std::thread t([&] {
        { const auto warm = make_event(ctx, visitor(1)); }
        const auto before = em::read_stats();
        for (int i = 0; i < 1000; ++i) {
            const auto ev = make_event(ctx, visitor(static_cast<std::size_t>(i)));
            wrong += ev->visitor_json != visitor(static_cast<std::size_t>(i));
        }
        const auto after = em::read_stats();
        reused = after.reused - before.reused;
        fresh = after.fresh - before.fresh;
    });
    t.join();
    CHECK(wrong == 0);
    CHECK(reused >= 1000);
    CHECK(fresh == 0);
}
