// Name resolution without sockets: the address cache's decisions (table), the resolve_job
// hand-off from a foreign thread (run these under ASan and TSan), and system_host_resolver on
// numeric hosts (getaddrinfo answers those without asking any server).

#include "http/address_cache.hpp"
#include "http/resolve_job.hpp"

#include <evdispatch/host_resolver.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using detail::address_cache;
using detail::resolve_job;

namespace {

const address_cache::addresses first = {{asio::ip::make_address("127.0.0.1"), 8080}};
const address_cache::addresses second = {{asio::ip::make_address("::1"), 8080},
                                         {asio::ip::make_address("127.0.0.1"), 8081}};

}  // namespace

TEST_CASE("address cache: what a new connection does", "[unit][resolver]") {
    struct row {
        const char* name;
        bool cached;                    // a resolution answered at t0
        std::chrono::milliseconds age;  // now - t0
        bool resolving;                 // a resolution is running now
        std::chrono::milliseconds ttl;
        bool use;    // connect to the cached addresses now
        bool start;  // start a resolution
    };
    const auto r = GENERATE(values<row>({
        {"nothing cached", false, 0ms, false, 30s, false, true},
        {"nothing cached, one running: wait for it", false, 0ms, true, 30s, false, false},
        {"fresh", true, 1s, false, 30s, true, false},
        {"just under the ttl", true, 29'999ms, false, 30s, true, false},
        {"exactly the ttl: stale", true, 30s, false, 30s, true, true},
        {"stale: used while refreshed", true, 31s, false, 30s, true, true},
        {"stale, refresh running: used, no second one", true, 31s, true, 30s, true, false},
        {"ttl 0: never reused", true, 0ms, false, 0ms, false, true},
        {"ttl 0, one running: wait for it", true, 0ms, true, 0ms, false, false},
    }));
    CAPTURE(r.name);
    const auto t0 = address_cache::clock::time_point{} + 1h;
    address_cache c;
    if (r.cached) {
        REQUIRE(c.lookup(t0, r.ttl).start_resolution);
        c.resolved({}, first, t0);
    }
    if (r.resolving)
        REQUIRE(c.lookup(t0 + 10h, 1ms).start_resolution);  // stale or empty
    const auto l = c.lookup(t0 + r.age, r.ttl);
    CHECK((l.use != nullptr) == r.use);
    if (l.use)
        CHECK(*l.use == first);
    CHECK(l.start_resolution == r.start);
    CHECK(c.resolving() == (r.resolving || r.start));
}

TEST_CASE("address cache: answers replace, failures keep, abandon frees", "[unit][resolver]") {
    const auto t0 = address_cache::clock::time_point{} + 1h;
    address_cache c;
    REQUIRE(c.lookup(t0, 30s).start_resolution);
    c.resolved({}, first, t0);
    CHECK(!c.resolving());

    SECTION("a failed refresh keeps the old addresses, still stale") {
        REQUIRE(c.lookup(t0 + 31s, 30s).start_resolution);
        c.resolved(asio::error::host_not_found, {}, t0 + 32s);
        const auto l = c.lookup(t0 + 33s, 30s);
        REQUIRE(l.use);
        CHECK(*l.use == first);
        CHECK(l.start_resolution);  // tried again by the next new connection
    }
    SECTION("an empty answer counts as a failure") {
        REQUIRE(c.lookup(t0 + 31s, 30s).start_resolution);
        c.resolved({}, {}, t0 + 32s);
        CHECK(c.current() == first);
    }
    SECTION("a refresh replaces the addresses and restarts the ttl") {
        REQUIRE(c.lookup(t0 + 31s, 30s).start_resolution);
        c.resolved({}, second, t0 + 32s);
        const auto l = c.lookup(t0 + 61s, 30s);
        REQUIRE(l.use);
        CHECK(*l.use == second);
        CHECK(!l.start_resolution);
    }
    SECTION("abandon (shutdown) lets a later lookup start a new resolution") {
        REQUIRE(c.lookup(t0 + 31s, 30s).start_resolution);
        CHECK(!c.lookup(t0 + 31s, 30s).start_resolution);
        c.abandon();
        CHECK(c.lookup(t0 + 31s, 30s).start_resolution);
    }
}

TEST_CASE("resolve_job: an answer before cancel runs once on the executor", "[unit][resolver]") {
    asio::io_context io;
    auto job = std::make_shared<resolve_job>(asio::make_strand(io));
    std::atomic<int> ran{0};
    std::atomic<bool> first_posted{false}, second_posted{true};
    std::thread answering([&] {
        first_posted = job->post([&] { ++ran; });
        second_posted = job->post([&] { ++ran; });  // one answer per job
    });
    answering.join();
    CHECK(first_posted);
    CHECK(!second_posted);
    CHECK(ran == 0);  // posted, not run inline
    io.run();
    CHECK(ran == 1);
    job->cancel();  // after the answer: harmless
    CHECK(job->cancelled());
}

TEST_CASE("resolve_job: after cancel nothing is posted, even once the io_context is gone",
          "[unit][resolver]") {
    std::shared_ptr<resolve_job> job;
    std::atomic<int> ran{0};
    {
        asio::io_context io;
        job = std::make_shared<resolve_job>(asio::make_strand(io));
        job->cancel();  // what the pool does at shutdown / destruction
        CHECK(!job->post([&] { ++ran; }));
        io.run();
    }
    // The io_context (and its strand service) is destroyed: a late answer from another thread
    // must not touch it, and the job must hold no executor copy whose destruction would.
    bool posted = true;
    std::thread late([&, j = std::move(job)]() mutable {
        posted = j->post([&] { ++ran; });
        j.reset();  // the last reference dies on this thread
    });
    late.join();
    CHECK(!posted);
    CHECK(ran == 0);
}

TEST_CASE("resolve_job: answer and cancel race; an answer posted is an answer run",
          "[unit][resolver]") {
    asio::io_context io;
    auto guard = asio::make_work_guard(io);
    std::thread runner([&] { io.run(); });
    auto strand = asio::make_strand(io);
    constexpr int rounds = 2000;
    std::atomic<int> ran{0};
    int posted = 0;
    for (int i = 0; i < rounds; ++i) {
        auto job = std::make_shared<resolve_job>(strand);
        std::promise<void> cancelled;
        // The pool cancels on its strand while another thread answers.
        asio::post(strand, [job, &cancelled] {
            job->cancel();
            cancelled.set_value();
        });
        std::thread answering([job, &ran, &posted] {
            if (job->post([&ran] { ++ran; }))
                ++posted;
        });
        answering.join();
        cancelled.get_future().wait();
    }
    // Everything posted before a cancel runs; nothing runs that was not posted.
    std::promise<void> drained;
    asio::post(strand, [&] { drained.set_value(); });
    REQUIRE(drained.get_future().wait_for(30s) == std::future_status::ready);
    guard.reset();
    runner.join();
    CHECK(ran == posted);
}

TEST_CASE("system_host_resolver answers numeric hosts from its own thread", "[unit][resolver]") {
    struct row {
        const char* host;
        const char* port;
        const char* address;  // expected, empty: an error
    };
    const auto r = GENERATE(values<row>({
        {"127.0.0.1", "8080", "127.0.0.1"},
        {"::1", "443", "::1"},
        {"127.0.0.1", "http", ""},  // service names are refused: ports are numeric
    }));
    CAPTURE(r.host, r.port);
    system_host_resolver resolver;
    std::promise<std::pair<error_code, std::vector<tcp::endpoint>>> answer;
    std::promise<std::thread::id> answered_on;
    resolver.async_resolve(r.host, r.port, [&](error_code ec, std::vector<tcp::endpoint> a) {
        answered_on.set_value(std::this_thread::get_id());
        answer.set_value({ec, std::move(a)});
    });
    auto f = answer.get_future();
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    CHECK(answered_on.get_future().get() != std::this_thread::get_id());
    const auto [ec, a] = f.get();
    if (*r.address) {
        REQUIRE(!ec);
        REQUIRE(!a.empty());
        CHECK(a.front().address() == asio::ip::make_address(r.address));
        CHECK(a.front().port() == std::stoi(r.port));
    } else {
        CHECK(ec);
        CHECK(a.empty());
    }
}
