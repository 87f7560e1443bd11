// Name resolution against real sockets on 127.0.0.1: a resolver that never answers (the
// connect deadline, close and destruction stay bounded), one that answers late (after the
// deadline, after shutdown, after the processor and its io_context are gone: run under ASan
// and TSan), and the address cache (one resolution per ttl, background refresh, stale
// addresses used meanwhile and kept when the refresh fails).
//
// Host names here end in .test and are answered by test resolvers only: nothing leaves the
// machine.

#include "support/fixtures.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

using addresses = std::vector<tcp::endpoint>;

addresses loopback(unsigned short port) {
    return {{asio::ip::make_address("127.0.0.1"), port}};
}

/// A host_resolver under the test's control: answers at once (inside the call), fails at
/// once, or holds the query until release() (or forever: its destructor drops what it holds,
/// never answering). Counts the queries. Optionally blocks inside the call first.
class test_resolver final : public host_resolver {
public:
    enum class mode { answer, fail, hold };

    explicit test_resolver(mode m, addresses a = {}) : mode_(m), answer_(std::move(a)) {}

    void async_resolve(std::string host, std::string port,
                       asio::any_completion_handler<resolve_signature> h) override {
        std::unique_lock lk(mu_);
        ++calls_;
        last_query_ = host + ":" + port;
        const auto block = block_for_;
        switch (mode_) {
            case mode::hold:
                held_.push_back(std::move(h));
                return;
            case mode::fail:
                lk.unlock();
                std::move(h)(asio::error::host_not_found, addresses{});
                return;
            case mode::answer: {
                auto a = answer_;
                lk.unlock();
                std::this_thread::sleep_for(block);  // a resolver that blocks its caller
                std::move(h)(error_code{}, std::move(a));
                return;
            }
        }
    }

    void set_mode(mode m, addresses a = {}) {
        std::lock_guard lk(mu_);
        mode_ = m;
        if (!a.empty())
            answer_ = std::move(a);
    }
    void set_block(std::chrono::milliseconds d) {
        std::lock_guard lk(mu_);
        block_for_ = d;
    }
    int calls() const {
        std::lock_guard lk(mu_);
        return calls_;
    }
    std::size_t held() const {
        std::lock_guard lk(mu_);
        return held_.size();
    }
    std::string last_query() const {
        std::lock_guard lk(mu_);
        return last_query_;
    }

    /// Answers every held query with `a` (or `ec`) from a thread of its own; returns when done.
    void release(error_code ec, addresses a) {
        std::vector<asio::any_completion_handler<resolve_signature>> hs;
        {
            std::lock_guard lk(mu_);
            hs.swap(held_);
        }
        std::thread answering([&] {
            for (auto& h : hs)
                std::move(h)(ec, a);
        });
        answering.join();
    }

private:
    mutable std::mutex mu_;
    mode mode_;
    addresses answer_;
    std::chrono::milliseconds block_for_{0};
    int calls_ = 0;
    std::string last_query_;
    std::vector<asio::any_completion_handler<resolve_signature>> held_;
};

/// Batch results, collected from the strand.
struct results {
    std::mutex mu;
    std::vector<batch_result> all;
    std::vector<std::string> messages;

    processor_hooks hooks(std::shared_ptr<host_resolver> r) {
        processor_hooks h;
        h.on_batch_result = [this](const batch_result& b) {
            std::lock_guard lk(mu);
            all.push_back(b);
            all.back().created = {};
            all.back().message = {};
            messages.emplace_back(b.message);
        };
        h.resolver = std::move(r);
        return h;
    }
    std::size_t count() {
        std::lock_guard lk(mu);
        return all.size();
    }
    batch_result at(std::size_t i) {
        std::lock_guard lk(mu);
        return all.at(i);
    }
    std::string message(std::size_t i) {
        std::lock_guard lk(mu);
        return messages.at(i);
    }
};

/// Flushes and waits, generously: only a hang fails this.
void flush(batch_event_processor& p) {
    auto f = p.async_flush(asio::use_future);
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    f.get();
}

void send(batch_event_processor& p, const event_builder& b, int first, int n) {
    for (int i = first; i < first + n; ++i)
        REQUIRE(p.process(test::make_impression(b, i)) == process_result::accepted);
}

processor_config named_config(unsigned short port) {
    processor_config cfg;
    cfg.endpoint = "http://events.test:" + std::to_string(port) + "/v1/events";
    cfg.batch.batch_size = 5;
    cfg.retry.max_attempts = 1;
    return cfg;
}

}  // namespace

// ---- a resolution that never answers ------------------------------------------------------

TEST_CASE("http_event_dispatcher: a resolution that never answers fails with connect_timeout",
          "[integration][resolver]") {
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::hold);
    test::io_fixture fx;  // its destructor checks that no work is left (the held query is none)
    auto d = std::make_shared<http_event_dispatcher>(
        fx.executor(), "http://events.test:9/v1/events", http_config{.connect_timeout = 300ms},
        tls_config{}, resolver);
    auto ev = std::make_shared<log_event>();
    ev->body = "{}";
    std::promise<std::pair<error_code, dispatch_result>> done;
    const auto t0 = std::chrono::steady_clock::now();
    asio::post(fx.executor(), [&] {
        d->async_dispatch(ev, [&](error_code ec, dispatch_result r) {
            done.set_value({ec, std::move(r)});
        });
    });
    auto f = done.get_future();
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    const auto [ec, r] = f.get();
    CHECK(ec == error::connect_timeout);
    CHECK(classify_failure(ec) == drop_reason::timeout);
    CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);  // not before the deadline
    CHECK_THAT(r.message, Catch::Contains("events.test:9") &&
                              Catch::Contains("name resolution did not finish"));
    CHECK(resolver->calls() == 1);
    CHECK(resolver->last_query() == "events.test:9");
    CHECK(resolver->held() == 1);  // still "running": its answer will be dropped
    std::promise<void> gone;
    asio::post(fx.executor(), [&] {
        d.reset();
        gone.set_value();
    });
    REQUIRE(gone.get_future().wait_for(60s) == std::future_status::ready);
}

TEST_CASE("a resolution that never answers: batches fail with timeout, one query at a time",
          "[integration][resolver]") {
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::hold);
    results res;
    auto cfg = named_config(9);
    cfg.http.connect_timeout = 300ms;
    cfg.retry.max_attempts = 2;
    cfg.retry.base_backoff = 10ms;
    batch_event_processor p(cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 5);
    flush(p);
    REQUIRE(res.count() == 1);
    const auto r = res.at(0);
    CHECK(!r.delivered);
    CHECK(r.reason == drop_reason::timeout);
    CHECK(r.ec == error::connect_timeout);
    CHECK(r.attempts == 2);
    CHECK(resolver->calls() == 1);  // the second attempt waited for the same resolution
    CHECK(p.metrics().dropped[std::size_t(drop_reason::timeout)] == 5);
}

TEST_CASE("async_close completes by its deadline while a resolution hangs",
          "[integration][resolver]") {
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::hold);
    test::io_fixture fx;  // no work may be left: the waiting exchanges end at shutdown
    results res;
    auto cfg = named_config(9);
    cfg.http.connect_timeout = 120s;  // the close deadline, not this, must end the wait
    cfg.http.max_connections = 2;
    batch_event_processor p(fx.executor(), cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 10);
    REQUIRE(test::wait_until([&] { return p.metrics().in_flight == 2; }, 60s));
    const auto [ec, r] = test::close_and_wait(p, 300ms);
    CHECK(ec == error::close_deadline);
    CHECK(r.deadline_passed);
    CHECK(r.delivered == 0);
    CHECK(r.dropped[std::size_t(drop_reason::close_deadline)] == 10);
    CHECK(r.metrics.pending == 0);
    CHECK(resolver->calls() == 1);
}

TEST_CASE("the destructor of an owning processor returns while a resolution hangs",
          "[integration][resolver]") {
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::hold);
    results res;
    auto cfg = named_config(9);
    cfg.http.connect_timeout = 120s;
    cfg.destructor_close_timeout = 300ms;
    auto p = std::make_unique<batch_event_processor>(cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    send(*p, b, 0, 5);
    REQUIRE(test::wait_until([&] { return p->metrics().in_flight == 1; }, 60s));
    auto destroyed = std::make_shared<std::promise<void>>();
    auto f = destroyed->get_future();
    std::thread t([destroyed, p = std::move(p)]() mutable {
        p.reset();
        destroyed->set_value();
    });
    const bool returned = f.wait_for(60s) == std::future_status::ready;
    if (!returned) {
        t.detach();  // hung: report it rather than hang the test binary
        FAIL("the destructor did not return within 60 s");
    }
    t.join();
    REQUIRE(res.count() == 1);
    CHECK(res.at(0).reason == drop_reason::close_deadline);
    CHECK(resolver->held() == 1);
}

// ---- late answers ----------------------------------------------------------------------------

TEST_CASE("a late answer is dropped safely once the processor is shut down or gone",
          "[integration][resolver]") {
    collector col;
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::hold);
    auto cfg = named_config(col.port());
    cfg.http.connect_timeout = 200ms;
    cfg.destructor_close_timeout = 1s;

    SECTION("after the owning processor is destroyed") {
        {
            results res;
            batch_event_processor p(cfg, res.hooks(resolver));
            event_builder b(test::make_context(cfg.endpoint));
            send(p, b, 0, 5);
            flush(p);
            CHECK(res.at(0).reason == drop_reason::timeout);
        }
        REQUIRE(resolver->held() == 1);
        resolver->release({}, loopback(col.port()));  // from another thread, into nothing
    }
    SECTION("after close, while the user's io_context still runs; then after it is gone") {
        auto io = std::make_unique<asio::io_context>();
        auto guard = asio::make_work_guard(*io);
        std::thread runner([&] { io->run(); });
        {
            batch_event_processor p(io->get_executor(), cfg, {.resolver = resolver});
            event_builder b(test::make_context(cfg.endpoint));
            send(p, b, 0, 5);
            const auto [ec, r] = test::close_and_wait(p, 10s);
            CHECK_FALSE(ec);  // the connect timeout dropped the batch, not the close deadline
            CHECK(r.dropped[std::size_t(drop_reason::timeout)] == 5);
            REQUIRE(resolver->held() == 1);
            resolver->release({}, loopback(col.port()));  // shut down: dropped, not posted
        }
        // A second query held, then the io_context destroyed before it is answered.
        {
            batch_event_processor p(io->get_executor(), cfg, {.resolver = resolver});
            event_builder b(test::make_context(cfg.endpoint));
            send(p, b, 10, 5);
            REQUIRE(test::wait_until([&] { return resolver->held() == 1; }, 60s));
            const auto [ec, r] = test::close_and_wait(p, 10s);
            CHECK_FALSE(ec);
            CHECK(r.dropped[std::size_t(drop_reason::timeout)] == 5);
        }
        guard.reset();
        runner.join();
        io.reset();
        resolver->release({}, loopback(col.port()));
    }
    SECTION("a processor destroyed with its io_context, the query never answered") {
        auto io = std::make_unique<asio::io_context>();
        {
            batch_event_processor p(io->get_executor(), cfg, {.resolver = resolver});
            event_builder b(test::make_context(cfg.endpoint));
            send(p, b, 0, 5);
            // The batch is sent; its exchange waits for the resolver (its timer keeps the
            // io_context busy meanwhile).
            for (int i = 0; i < 600 && resolver->held() == 0; ++i)
                io->run_for(100ms);
            REQUIRE(resolver->held() == 1);
        }
        io.reset();  // handlers destroyed without running: the pool dies with them
        resolver->release({}, loopback(col.port()));
    }
    CHECK(col.stats().requests == 0);
}

TEST_CASE("a late answer while the processor lives fills the cache for the next connection",
          "[integration][resolver]") {
    collector col;
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::hold);
    results res;
    auto cfg = named_config(col.port());
    cfg.http.connect_timeout = 200ms;
    cfg.http.dns_ttl = 1h;
    batch_event_processor p(cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 5);
    flush(p);
    CHECK(res.at(0).reason == drop_reason::timeout);
    resolver->release({}, loopback(col.port()));  // late, from another thread
    send(p, b, 5, 5);
    flush(p);
    REQUIRE(res.count() == 2);
    CHECK(res.at(1).delivered);
    CHECK(resolver->calls() == 1);
    CHECK(col.stats().unique_events == 5);
}

// ---- one deadline --------------------------------------------------------------------------

TEST_CASE("time spent resolving counts against connect_timeout", "[integration][resolver]") {
    collector col;
    // Answers inside the call, but only after the whole connect_timeout: with one deadline for
    // resolve + connect + handshake nothing is left for connecting.
    auto resolver =
        std::make_shared<test_resolver>(test_resolver::mode::answer, loopback(col.port()));
    resolver->set_block(400ms);
    results res;
    auto cfg = named_config(col.port());
    cfg.http.connect_timeout = 300ms;
    batch_event_processor p(cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 5);
    flush(p);
    REQUIRE(res.count() == 1);
    CHECK(res.at(0).reason == drop_reason::timeout);
    CHECK(res.at(0).ec == error::connect_timeout);
    CHECK(col.stats().connections == 0);
}

// ---- the cache -----------------------------------------------------------------------------

TEST_CASE("addresses are cached for dns_ttl: many connections, one resolution",
          "[integration][resolver]") {
    collector col;
    auto resolver =
        std::make_shared<test_resolver>(test_resolver::mode::answer, loopback(col.port()));
    results res;
    auto cfg = named_config(col.port());
    cfg.http.dns_ttl = 1h;
    cfg.http.max_connections = 1;
    cfg.http.max_requests_per_connection = 1;  // a new connection for every batch
    batch_event_processor p(cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    for (int round = 0; round < 8; ++round) {
        send(p, b, round * 5, 5);
        flush(p);
    }
    const auto [ec, r] = test::close_and_wait(p, 10s);
    CHECK_FALSE(ec);
    CHECK(r.delivered == 40);
    CHECK(r.metrics.connections_opened == 8);
    CHECK(col.stats().connections == 8);
    CHECK(resolver->calls() == 1);
}

TEST_CASE("connections needing addresses while a resolution runs wait for it",
          "[integration][resolver]") {
    collector col;
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::hold);
    auto cfg = named_config(col.port());
    cfg.http.connect_timeout = 120s;
    cfg.http.max_connections = 4;
    batch_event_processor p(cfg, {.resolver = resolver});
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 20);
    REQUIRE(test::wait_until([&] { return p.metrics().in_flight == 4; }, 60s));
    CHECK(resolver->calls() == 1);
    resolver->release({}, loopback(col.port()));
    flush(p);
    CHECK(p.metrics().delivered == 20);
    CHECK(col.stats().connections == 4);
    CHECK(resolver->calls() == 1);
}

TEST_CASE("a stale entry is used while it is refreshed; the refresh replaces it",
          "[integration][resolver]") {
    collector first, second;
    auto resolver =
        std::make_shared<test_resolver>(test_resolver::mode::answer, loopback(first.port()));
    results res;
    auto cfg = named_config(first.port());
    cfg.http.dns_ttl = 100ms;
    cfg.http.max_connections = 1;
    cfg.http.max_requests_per_connection = 1;
    batch_event_processor p(cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 5);
    flush(p);
    CHECK(resolver->calls() == 1);

    resolver->set_mode(test_resolver::mode::hold);
    std::this_thread::sleep_for(250ms);  // older than dns_ttl: stale
    for (int round = 1; round < 4; ++round) {
        send(p, b, round * 5, 5);
        flush(p);  // delivered on the stale addresses while the refresh is held
    }
    CHECK(p.metrics().delivered == 20);
    CHECK(resolver->calls() == 2);  // one refresh, however many connections
    CHECK(resolver->held() == 1);
    CHECK(first.stats().unique_events == 20);

    resolver->release({}, loopback(second.port()));  // the refresh answers: new addresses
    send(p, b, 20, 5);
    flush(p);
    CHECK(p.metrics().delivered == 25);
    CHECK(second.stats().unique_events == 5);
}

TEST_CASE("a failed refresh keeps the old addresses", "[integration][resolver]") {
    collector col;
    auto resolver =
        std::make_shared<test_resolver>(test_resolver::mode::answer, loopback(col.port()));
    auto cfg = named_config(col.port());
    cfg.http.dns_ttl = 100ms;
    cfg.http.max_connections = 1;
    cfg.http.max_requests_per_connection = 1;
    batch_event_processor p(cfg, {.resolver = resolver});
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 5);
    flush(p);

    std::this_thread::sleep_for(250ms);  // stale
    resolver->set_mode(test_resolver::mode::fail);
    send(p, b, 5, 5);
    flush(p);  // refresh failed (answered before this batch completed); stale addresses used
    CHECK(resolver->calls() == 2);

    // Had the failure dropped the addresses, this batch would wait for a held resolution.
    resolver->set_mode(test_resolver::mode::hold);
    send(p, b, 10, 5);
    flush(p);
    CHECK(resolver->calls() == 3);
    CHECK(p.metrics().delivered == 15);
    CHECK(col.stats().unique_events == 15);
}

TEST_CASE("a failed resolution without cached addresses fails with resolve_failed",
          "[integration][resolver]") {
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::fail);
    results res;
    auto cfg = named_config(9);
    batch_event_processor p(cfg, res.hooks(resolver));
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 5);
    flush(p);
    REQUIRE(res.count() == 1);
    CHECK(res.at(0).ec == error::resolve_failed);
    CHECK(res.at(0).reason == drop_reason::connect_failed);
    CHECK_THAT(res.message(0), Catch::Contains("events.test:9"));
}

TEST_CASE("a resolver that throws counts as a failed resolution", "[integration][resolver]") {
    struct throwing_resolver final : host_resolver {
        void async_resolve(std::string, std::string,
                           asio::any_completion_handler<resolve_signature>) override {
            throw std::runtime_error("no resolver today");
        }
    };
    results res;
    auto cfg = named_config(9);
    batch_event_processor p(cfg, res.hooks(std::make_shared<throwing_resolver>()));
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 5);
    flush(p);
    REQUIRE(res.count() == 1);
    CHECK(res.at(0).ec == error::resolve_failed);
}

TEST_CASE("IP-literal hosts are never resolved", "[integration][resolver]") {
    collector col;
    auto resolver = std::make_shared<test_resolver>(test_resolver::mode::fail);
    processor_config cfg;
    cfg.endpoint = col.url();  // http://127.0.0.1:port/v1/events
    cfg.batch.batch_size = 5;
    cfg.http.max_requests_per_connection = 1;
    batch_event_processor p(cfg, {.resolver = resolver});
    event_builder b(test::make_context(cfg.endpoint));
    send(p, b, 0, 15);
    flush(p);
    CHECK(p.metrics().delivered == 15);
    CHECK(resolver->calls() == 0);
}
