// The whole pipeline against the real loopback collector over HTTP.

#include "support/fixtures.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

TEST_CASE("4 producers x 50,000 events are delivered exactly once, batch sizes respected",
          "[integration][pipeline]") {
    collector col;
    const std::size_t batch_size = GENERATE(10, 100);
    std::atomic<std::uint64_t> oversized{0}, batches_seen{0};
    processor_hooks hooks;
    hooks.on_log_event = [&](const log_event& le) {
        ++batches_seen;
        if (le.event_count > batch_size || le.event_count == 0)
            ++oversized;
    };
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = batch_size;
    cfg.batch.flush_interval = 100ms;
    cfg.queue_capacity = 10'000;
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(col.url()));

    constexpr int producers = 4;
    constexpr std::uint64_t per = 50'000;
    std::atomic<std::uint64_t> accepted{0}, refused{0}, unexpected{0};
    const auto give_up = std::chrono::steady_clock::now() + 300s;  // sanitizers are slow
    std::vector<std::thread> ts;
    for (int t = 0; t < producers; ++t) {
        ts.emplace_back([&, t] {
            for (std::uint64_t i = 0; i < per; ++i) {
                auto ev = test::make_impression(b, t * per + i);
                // The test wants every event in: on a full queue, wait and offer it again
                // (a server would drop it; the drop is counted either way).
                for (;;) {
                    auto r = p.process(ev);
                    if (r == process_result::accepted)
                        break;
                    if (r != process_result::dropped_queue_full)
                        ++unexpected;
                    ++refused;
                    if (std::chrono::steady_clock::now() > give_up)
                        return;  // fails below
                    std::this_thread::sleep_for(50us);
                }
                ++accepted;
            }
        });
    }
    for (auto& t : ts)
        t.join();
    CHECK(unexpected == 0);
    {
        auto m = p.metrics();
        INFO("queue " << m.queue_depth << " open " << m.open_batch_events << " backlog "
                      << m.backlog_events << "/" << m.backlog_bytes << " inflight "
                      << m.in_flight_events << "/" << m.in_flight << " delivered " << m.delivered);
        CHECK(accepted == producers * per);
    }
    auto report = p.async_close(60s, asio::use_future).get();
    const auto& m = report.metrics;
    const auto s = col.stats();
    for (auto r : all_drop_reasons)
        if (m.dropped_for(r))
            std::fprintf(stderr, "dropped %s: %llu\n", std::string(to_string(r)).c_str(),
                         (unsigned long long)m.dropped_for(r));
    CHECK(m.accepted == producers * per);
    CHECK(m.delivered == producers * per);
    CHECK(m.dropped_after_accept() == 0);
    CHECK(m.dropped_for(drop_reason::queue_full) == refused);
    CHECK(m.pending == 0);
    CHECK(m.balanced());
    CHECK(s.events == producers * per);
    CHECK(s.unique_events == producers * per);
    CHECK(s.duplicates == 0);
    CHECK(s.rejected == 0);
    CHECK(s.batches == m.batches_delivered);
    CHECK(batches_seen == m.batches_sent);
    CHECK(oversized == 0);
    // Batches fill up under load: far fewer requests than events.
    CHECK(m.batches_delivered >= producers * per / batch_size);
    CHECK(m.connections_opened >= 1);
    CHECK(m.connections_opened <= cfg.http.max_connections * 4);  // keep-alive reuse
}

TEST_CASE("a lone event waits for flush_interval, then arrives", "[integration][pipeline]") {
    collector col;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 10;
    cfg.batch.flush_interval = 300ms;
    // When the batch is handed to the dispatcher: stamped on the strand, read after delivery.
    std::atomic<std::chrono::steady_clock::time_point> sent_at{};
    std::atomic<int> batches_sent{0};
    processor_hooks hooks;
    hooks.on_log_event = [&](const log_event&) {
        sent_at = std::chrono::steady_clock::now();
        ++batches_sent;
    };
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(col.url()));
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(p.process(test::make_impression(b, 1)) == process_result::accepted);
    REQUIRE(test::wait_until([&] { return col.stats().events == 1; }, 10s));
    // The processor learns of the delivery when the response reaches it.
    REQUIRE(test::wait_until([&] { return p.metrics().delivered == 1; }, 10s));
    // Not before the interval: the batch opened after t0 and was handed over no sooner than
    // flush_interval after it opened. Timers never fire early, so this holds however slow
    // the run is, and a batch sent at once fails it.
    CHECK(batches_sent == 1);
    CHECK(sent_at.load() - t0 >= 300ms);
    const auto m = p.metrics();
    CHECK(m.delivered == 1);
    CHECK(m.batches_sent == 1);
    CHECK(m.batches_delivered == 1);
    CHECK(col.stats().batches == 1);
}

TEST_CASE("close drains everything", "[integration][pipeline]") {
    collector col;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 1000;
    cfg.batch.flush_interval = 60s;
    batch_event_processor p(cfg);
    event_builder b(test::make_context(col.url()));
    for (int i = 0; i < 5'500; ++i)
        REQUIRE(p.process(test::make_impression(b, i)) == process_result::accepted);
    auto [ec, r] = test::close_and_wait(p, 20s);
    CHECK(!ec);
    CHECK_FALSE(r.deadline_passed);
    CHECK(r.delivered == 5'500);
    CHECK(r.not_delivered == 0);
    CHECK(r.metrics.pending == 0);
    CHECK(col.stats().unique_events == 5'500);
    CHECK(col.stats().batches == 6);  // five full, one closed by close
}

TEST_CASE("close with a stalled collector reports undelivered events within the deadline",
          "[integration][pipeline]") {
    collector col(collector_config{.delay = 10s});
    std::atomic<std::uint64_t> reported_deadline{0};
    processor_hooks hooks;
    hooks.on_batch_result = [&](const batch_result& r) {
        if (r.reason == drop_reason::close_deadline)
            reported_deadline += r.events;
    };
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 50;
    cfg.http.request_timeout = 30s;
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(col.url()));
    for (int i = 0; i < 1'000; ++i)
        p.process(test::make_impression(b, i));
    const auto t0 = std::chrono::steady_clock::now();
    auto [ec, r] = test::close_and_wait(p, 500ms);
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(ec == error::close_deadline);
    CHECK(r.deadline_passed);
    CHECK(r.delivered == 0);
    CHECK(r.not_delivered == 1'000);
    CHECK(r.dropped[std::size_t(drop_reason::close_deadline)] == 1'000);
    CHECK(reported_deadline == 1'000);
    CHECK(r.metrics.pending == 0);
    CHECK(r.metrics.balanced());
    CHECK(took >= 500ms);
    CHECK(took < 5s);  // bounded by the deadline, not by the 10 s stall
}

TEST_CASE("a refused port: with health off, events are dropped with reason connect_failed",
          "[integration][pipeline]") {
    const auto port = test::refused_port();
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v1/events";
    std::string message;
    std::mutex mu;
    processor_hooks hooks;
    hooks.on_batch_result = [&](const batch_result& r) {
        std::lock_guard lk(mu);
        message = std::string(r.message);
    };
    processor_config cfg;
    cfg.endpoint = url;
    cfg.batch.batch_size = 10;
    cfg.health.failure_threshold = 0;  // every batch retries on its own, then gives up
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(url));
    for (int i = 0; i < 100; ++i)
        p.process(test::make_impression(b, i));
    auto r = p.async_close(10s, asio::use_future).get();
    CHECK(r.delivered == 0);
    CHECK(r.dropped[std::size_t(drop_reason::connect_failed)] == 100);
    CHECK(r.metrics.pending == 0);
    CHECK(r.metrics.balanced());
    std::lock_guard lk(mu);
    CHECK_THAT(message, Catch::Contains(std::to_string(port)));
}

TEST_CASE("a refused port: with health on, batches are held and probed, not hammered",
          "[integration][pipeline][health]") {
    const auto port = test::refused_port();
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v1/events";
    std::vector<endpoint_change> changes;
    std::vector<std::string> messages;
    std::mutex mu;
    processor_hooks hooks;
    hooks.on_endpoint_state = [&](const endpoint_change& c) {
        std::lock_guard lk(mu);
        changes.push_back(c);
        messages.emplace_back(c.message);
    };
    processor_config cfg;
    cfg.endpoint = url;
    cfg.batch.batch_size = 10;
    cfg.health.probe_initial = 50ms;
    cfg.health.probe_max = 200ms;
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(url));
    for (int i = 0; i < 100; ++i)
        p.process(test::make_impression(b, i));
    REQUIRE(test::wait_until([&] { return p.metrics().state != endpoint_state::up; }));
    REQUIRE(test::wait_until([&] { return p.metrics().probes >= 3; }));
    auto m = p.metrics();
    CHECK(m.outages == 1);
    CHECK(m.held_events + m.in_flight_events == 100);
    CHECK(m.dropped_after_accept() == 0);  // held, not dropped
    // Requests: the pool and the failure run before the outage was known, then one per probe.
    CHECK(m.requests <= cfg.http.max_connections + cfg.health.failure_threshold + m.probes);
    auto [ec, r] = test::close_and_wait(p, 300ms);
    CHECK(ec == error::close_deadline);
    CHECK(r.delivered == 0);
    CHECK(r.dropped[std::size_t(drop_reason::close_deadline)] == 100);
    CHECK(r.metrics.pending == 0);
    CHECK(r.metrics.balanced());
    std::lock_guard lk(mu);
    REQUIRE(changes.size() >= 3);
    CHECK(changes[0].from == endpoint_state::up);
    CHECK(changes[0].to == endpoint_state::down);
    CHECK(changes[0].failures == 3);
    CHECK_THAT(messages[0], Catch::Contains(std::to_string(port)));
    CHECK(changes[1].to == endpoint_state::probing);
    CHECK(changes[2].to == endpoint_state::down);
}

TEST_CASE("the processor runs on a user's io_context and reuses connections",
          "[integration][pipeline]") {
    collector col;
    test::io_fixture fx;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 10;
    cfg.http.max_connections = 2;
    batch_event_processor p(fx.executor(), cfg);
    event_builder b(test::make_context(col.url()));
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 100; ++i)
            p.process(test::make_impression(b, round * 100 + i));
        p.async_flush(asio::use_future).get();
    }
    auto m = p.metrics();
    CHECK(m.delivered == 500);
    CHECK(m.connections_opened <= 2);  // kept alive across flushes
    CHECK(col.stats().connections <= 2);
    auto r = p.async_close(5s, asio::use_future).get();
    CHECK(r.delivered == 500);
}

TEST_CASE("bodies received by the collector are the batches that were sent",
          "[integration][pipeline]") {
    collector col(collector_config{.keep_bodies = true});
    std::vector<std::string> sent;
    std::mutex mu;
    processor_hooks hooks;
    hooks.on_log_event = [&](const log_event& le) {
        std::lock_guard lk(mu);
        sent.push_back(le.body);
        CHECK(le.url == col.url());
        CHECK(le.http_verb == "POST");
    };
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 7;
    cfg.http.max_connections = 1;  // one connection: arrival order is sending order
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(col.url()));
    for (int i = 0; i < 30; ++i)
        p.process(test::make_impression(b, i));
    p.async_close(5s, asio::use_future).get();
    std::lock_guard lk(mu);
    CHECK(col.bodies() == sent);
    REQUIRE(sent.size() == 5);
    auto v = boost::json::parse(sent[0]);
    CHECK(v.at("visitors").as_array().size() == 7);
    CHECK(v.at("visitors").as_array()[0].at("visitor_id") == "user-0");
}
