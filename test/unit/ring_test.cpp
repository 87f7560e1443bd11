#include "core/mpsc_ring.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

using evdispatch::detail::mpsc_ring;
using evdispatch::detail::push_result;

TEST_CASE("ring: single thread FIFO, full, and wrap-around", "[unit][ring]") {
    const std::size_t cap = GENERATE(2, 3, 7, 64);
    mpsc_ring<std::unique_ptr<int>> r(cap);
    for (int lap = 0; lap < 3; ++lap) {
        for (std::size_t i = 0; i < cap; ++i) {
            auto p = std::make_unique<int>(int(i));
            REQUIRE(r.try_push(p) == push_result::ok);
            CHECK(p == nullptr);  // moved in
        }
        auto extra = std::make_unique<int>(-1);
        CHECK(r.try_push(extra) == push_result::full);
        CHECK(extra != nullptr);  // untouched when refused
        for (std::size_t i = 0; i < cap; ++i) {
            std::unique_ptr<int> out;
            REQUIRE(r.try_pop(out));
            CHECK(*out == int(i));
        }
        std::unique_ptr<int> none;
        CHECK_FALSE(r.try_pop(none));
    }
    CHECK(r.pushed() == 3 * cap);
    CHECK(r.popped() == 3 * cap);
}

TEST_CASE("ring: close refuses pushes and keeps what was queued", "[unit][ring]") {
    mpsc_ring<int> r(4);
    int v = 1;
    REQUIRE(r.try_push(v) == push_result::ok);
    r.close();
    CHECK(r.is_closed());
    int w = 2;
    CHECK(r.try_push(w) == push_result::closed);
    CHECK(r.pushed() == 1);
    int out = 0;
    REQUIRE(r.try_pop(out));
    CHECK(out == 1);
    r.close();  // idempotent
    CHECK(r.pushed() == 1);
}

TEST_CASE("ring: capacity below 2 is refused", "[unit][ring]") {
    CHECK_THROWS_AS(mpsc_ring<int>(0), boost::system::system_error);
    CHECK_THROWS_AS(mpsc_ring<int>(1), boost::system::system_error);
}

TEST_CASE("ring: many producers, one consumer: every value exactly once, per-producer order",
          "[unit][ring][stress]") {
    constexpr int producers = 4;
    constexpr std::uint64_t per = 100'000;
    mpsc_ring<std::uint64_t> r(128);
    std::atomic<int> started{0};
    std::atomic<std::uint64_t> full_seen{0};
    std::vector<std::thread> ts;
    for (int p = 0; p < producers; ++p) {
        ts.emplace_back([&, p] {
            started.fetch_add(1);
            while (started.load() < producers) {
            }
            for (std::uint64_t i = 0; i < per; ++i) {
                std::uint64_t v = (std::uint64_t(p) << 32) | i;
                while (r.try_push(v) != push_result::ok) {
                    full_seen.fetch_add(1, std::memory_order_relaxed);
                    std::this_thread::yield();
                }
            }
        });
    }
    std::vector<std::uint64_t> next(producers, 0);
    std::uint64_t got = 0;
    bool in_order = true;
    while (got < producers * per) {
        std::uint64_t v;
        if (!r.try_pop(v)) {
            std::this_thread::yield();
            continue;
        }
        const auto p = v >> 32;
        const auto i = v & 0xFFFFFFFFu;
        if (p >= producers || i != next[p])
            in_order = false;
        if (p < producers)
            next[p] = i + 1;
        ++got;
    }
    for (auto& t : ts)
        t.join();
    CHECK(in_order);
    for (int p = 0; p < producers; ++p)
        CHECK(next[p] == per);
    std::uint64_t extra;
    CHECK_FALSE(r.try_pop(extra));
    CHECK(r.pushed() == producers * per);
}
