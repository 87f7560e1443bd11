// The Kafka dispatcher against librdkafka's mock cluster (brokers on 127.0.0.1, with outages
// and injected errors), through a real batch_event_processor; what was delivered is read back
// with a consumer and counted by uuid.

#include "support/fixtures.hpp"
#include "support/kafka_mock.hpp"

#include <evdispatch/evdispatch.hpp>
#include <evdispatch/kafka.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>

#include <librdkafka/rdkafka.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

const std::string endpoint = "http://127.0.0.1:9/v1/events";  // names the batches' context only

// What the dispatcher's handlers were called with: counted on whatever thread calls them,
// checked on the test thread.
struct tally {
    std::atomic<std::uint64_t> dispatched{0}, delivered{0}, close_deadline{0}, other{0};
    std::uint64_t completed() const { return delivered + close_deadline + other; }
};

// Forwards to the Kafka dispatcher and counts every completion.
class counting_dispatcher final : public event_dispatcher {
public:
    counting_dispatcher(std::shared_ptr<event_dispatcher> inner, std::shared_ptr<tally> t)
        : inner_(std::move(inner)), t_(std::move(t)) {}

    void async_dispatch(std::shared_ptr<const log_event> ev,
                        asio::any_completion_handler<dispatch_signature> h) override {
        ++t_->dispatched;
        inner_->async_dispatch(
            std::move(ev), [t = t_, h = std::move(h)](error_code ec, dispatch_result r) mutable {
                if (!ec)
                    ++t->delivered;
                else if (ec == error::close_deadline)
                    ++t->close_deadline;
                else
                    ++t->other;
                std::move(h)(ec, std::move(r));
            });
    }
    std::size_t max_in_flight() const noexcept override { return inner_->max_in_flight(); }
    void shutdown() noexcept override { inner_->shutdown(); }

private:
    std::shared_ptr<event_dispatcher> inner_;
    std::shared_ptr<tally> t_;
};

kafka_config mock_config(const test::kafka_mock_cluster& mc, const std::string& topic) {
    kafka_config k;
    k.topic = topic;
    // lz4: the mock cluster keeps only the last ~5 MB of a partition; read back, the tests'
    // topics stay below that.
    k.properties = {
        {"bootstrap.servers", mc.bootstraps()}, {"linger.ms", "5"}, {"compression.type", "lz4"}};
    return k;
}

// `producers` threads offer `per` events each, waiting on a full queue; returns how many
// were accepted. `between` runs on the test thread meanwhile.
std::uint64_t produce(batch_event_processor& p, int producers, std::uint64_t per,
                      const std::function<void()>& between = {}) {
    event_builder b(test::make_context(endpoint));
    std::atomic<std::uint64_t> accepted{0};
    const auto give_up = std::chrono::steady_clock::now() + 120s;
    std::vector<std::thread> ts;
    for (int t = 0; t < producers; ++t) {
        ts.emplace_back([&, t] {
            for (std::uint64_t i = 0; i < per; ++i) {
                auto ev = test::make_impression(b, t * per + i);
                while (p.process(ev) != process_result::accepted) {
                    if (std::chrono::steady_clock::now() > give_up)
                        return;  // the counts below fail
                    std::this_thread::sleep_for(100us);
                }
                ++accepted;
                if (i % 200 == 199)
                    std::this_thread::sleep_for(2ms);  // spread the run over the faults
            }
        });
    }
    if (between)
        between();
    for (auto& t : ts)
        t.join();
    return accepted;
}

// async_close's report whatever the error code (use_future would throw close_deadline).
std::future<close_report> close(batch_event_processor& p, std::chrono::milliseconds deadline) {
    auto done = std::make_shared<std::promise<close_report>>();
    auto fut = done->get_future();
    p.async_close(deadline, [done](error_code, close_report r) { done->set_value(std::move(r)); });
    return fut;
}

void print_drops(const metrics_snapshot& m) {
    for (auto r : all_drop_reasons)
        if (m.dropped_for(r))
            std::fprintf(stderr, "dropped %s: %llu\n", std::string(to_string(r)).c_str(),
                         (unsigned long long)m.dropped_for(r));
}

}  // namespace

TEST_CASE("kafka: 4 producers' events are consumed back exactly once", "[integration][kafka]") {
    test::kafka_mock_cluster mc(3);
    mc.create_topic("events", 4);
    auto t = std::make_shared<tally>();
    processor_config cfg;
    cfg.endpoint = endpoint;
    cfg.batch.batch_size = 100;
    cfg.batch.flush_interval = 50ms;
    cfg.queue_capacity = 10'000;
    const auto key = GENERATE(kafka_key::project, kafka_key::none);
    auto k = mock_config(mc, "events");
    k.key = key;
    processor_hooks hooks;
    hooks.dispatcher =
        std::make_shared<counting_dispatcher>(std::make_shared<kafka_event_dispatcher>(k), t);
    batch_event_processor p(cfg, hooks);

    constexpr int producers = 4;
    constexpr std::uint64_t per = 5'000;
    const auto accepted = produce(p, producers, per);
    auto report = close(p, 60s).get();
    const auto& m = report.metrics;
    print_drops(m);
    CHECK(accepted == producers * per);
    CHECK(m.accepted == accepted);
    CHECK(m.delivered == accepted);
    CHECK(m.dropped_after_accept() == 0);
    CHECK(m.balanced());
    CHECK(t->delivered == m.batches_delivered);
    CHECK(t->other == 0);

    const auto c = test::consume_topic(mc.bootstraps(), "events", 60s);
    CHECK(c.complete);
    CHECK(c.missed == 0);
    CHECK(c.bad == 0);
    CHECK(c.log_messages == m.batches_delivered);
    CHECK(c.messages == m.batches_delivered);
    CHECK(c.events == accepted);
    CHECK(c.unique == accepted);
    CHECK(c.duplicates == 0);
}

TEST_CASE("kafka: a broker down and back, and injected Produce errors: nothing lost or doubled",
          "[integration][kafka]") {
    test::kafka_mock_cluster mc(3);
    mc.create_topic("events", 2);
    mc.set_leader("events", 2, 1);  // broker 1 leads everything: taking it down matters
    auto t = std::make_shared<tally>();
    processor_config cfg;
    cfg.endpoint = endpoint;
    cfg.batch.batch_size = 50;
    cfg.batch.flush_interval = 20ms;
    cfg.queue_capacity = 10'000;
    processor_hooks hooks;
    hooks.dispatcher = std::make_shared<counting_dispatcher>(
        std::make_shared<kafka_event_dispatcher>(mock_config(mc, "events")), t);
    batch_event_processor p(cfg, hooks);

    const auto accepted = produce(p, 2, 4'000, [&] {
        std::this_thread::sleep_for(100ms);
        mc.push_produce_errors({RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND});
        std::this_thread::sleep_for(100ms);
        mc.set_down(1);
        std::this_thread::sleep_for(1500ms);
        mc.set_up(1);
    });
    auto report = close(p, 90s).get();
    const auto& m = report.metrics;
    print_drops(m);
    CHECK(accepted == 2 * 4'000);
    CHECK(m.delivered == accepted);
    CHECK(m.dropped_after_accept() == 0);
    CHECK(m.balanced());
    // librdkafka retried inside the delivery timeout: the processor saw no failure.
    CHECK(t->other == 0);
    CHECK(t->delivered == m.batches_delivered);

    const auto c = test::consume_topic(mc.bootstraps(), "events", 60s);
    CHECK(c.complete);
    CHECK(c.missed == 0);
    CHECK(c.bad == 0);
    CHECK(c.unique == m.delivered);
    // The idempotent producer's retries are deduplicated by the broker.
    CHECK(c.duplicates == 0);
    CHECK(c.messages == m.batches_delivered);
}

TEST_CASE("kafka: close with every broker down returns at its deadline, every event counted",
          "[integration][kafka]") {
    test::kafka_mock_cluster mc(3);
    mc.create_topic("events", 2);
    auto t = std::make_shared<tally>();
    {
        processor_config cfg;
        cfg.endpoint = endpoint;
        cfg.batch.batch_size = 20;
        cfg.batch.flush_interval = 10ms;
        processor_hooks hooks;
        hooks.dispatcher = std::make_shared<counting_dispatcher>(
            std::make_shared<kafka_event_dispatcher>(mock_config(mc, "events")), t);
        batch_event_processor p(cfg, hooks);
        for (int b = 1; b <= mc.brokers(); ++b)
            mc.set_down(b);
        const auto accepted = produce(p, 1, 1'000);
        REQUIRE(accepted == 1'000);
        auto fut = close(p, 1s);
        // A guard against a hang, not a timing check: the deadline is 1 s.
        REQUIRE(fut.wait_for(60s) == std::future_status::ready);
        const auto report = fut.get();
        const auto& m = report.metrics;
        print_drops(m);
        CHECK(report.deadline_passed);
        CHECK(m.accepted == accepted);
        CHECK(m.delivered == 0);
        CHECK(m.dropped_for(drop_reason::close_deadline) == accepted);
        CHECK(m.dropped_after_accept() == accepted);
        CHECK(m.pending == 0);
        CHECK(m.balanced());
    }
    // The processor is gone: every batch handed to the dispatcher was completed (purged ones
    // with close_deadline), none twice.
    CHECK(t->dispatched > 0);
    CHECK(t->completed() == t->dispatched);
    CHECK(t->delivered == 0);
    CHECK(t->other == 0);
}

TEST_CASE("kafka: bad configuration is refused at construction, naming the problem",
          "[integration][kafka]") {
    auto refused = [](kafka_config k) -> std::string {
        try {
            kafka_event_dispatcher d(std::move(k));
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == error::invalid_config);
            return e.what();
        }
        return "(accepted)";
    };
    const std::vector<std::pair<std::string, std::string>> brokers{
        {"bootstrap.servers", "127.0.0.1:1"}};
    CHECK_THAT(refused({.topic = "", .properties = brokers}),
               Catch::Contains("kafka_config::topic is empty"));
    CHECK_THAT(refused({.topic = "a topic", .properties = brokers}),
               Catch::Contains("not a valid Kafka topic name"));
    CHECK_THAT(
        refused({.topic = "t",
                 .properties = {{"bootstrap.servers", "127.0.0.1:1"}, {"no.such.property", "1"}}}),
        Catch::Contains("\"no.such.property\"") && Catch::Contains("No such configuration"));
    CHECK_THAT(refused({.topic = "t",
                        .properties = {{"bootstrap.servers", "127.0.0.1:1"}, {"acks", "seven"}}}),
               Catch::Contains("\"acks\""));
    CHECK_THAT(refused({.topic = "t"}), Catch::Contains("bootstrap.servers"));
    CHECK_THAT(refused({.topic = "t", .properties = brokers, .max_in_flight = 0}),
               Catch::Contains("max_in_flight"));
    CHECK_THAT(refused({.topic = "t", .properties = brokers, .message_timeout = 0ms}),
               Catch::Contains("message_timeout"));
}

TEST_CASE("kafka: unreachable bootstrap servers: a counted failure after message.timeout.ms",
          "[integration][kafka]") {
    // A loopback port that was just free: nothing listens there.
    unsigned short port = 0;
    {
        asio::io_context io;
        asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
        port = a.local_endpoint().port();
    }
    auto t = std::make_shared<tally>();
    std::atomic<int> log_lines{0};
    processor_config cfg;
    cfg.endpoint = endpoint;
    cfg.batch.batch_size = 10;
    cfg.batch.flush_interval = 10ms;
    cfg.retry.max_attempts = 1;        // the first failure is final: it must be counted
    cfg.health.failure_threshold = 0;  // every batch fails on its own (none held as "down")
    kafka_config k;
    k.topic = "events";
    k.properties = {{"bootstrap.servers", "127.0.0.1:" + std::to_string(port)}};
    k.message_timeout = 500ms;
    k.logger = [&](int, std::string_view, std::string_view) { ++log_lines; };
    processor_hooks hooks;
    hooks.dispatcher =
        std::make_shared<counting_dispatcher>(std::make_shared<kafka_event_dispatcher>(k), t);
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(endpoint));
    for (int i = 0; i < 30; ++i)
        REQUIRE(p.process(test::make_impression(b, i)) == process_result::accepted);
    auto fut = close(p, 30s);
    REQUIRE(fut.wait_for(90s) == std::future_status::ready);
    const auto report = fut.get();
    const auto& m = report.metrics;
    print_drops(m);
    CHECK_FALSE(report.deadline_passed);  // failed by message.timeout.ms, long before 30 s
    CHECK(m.accepted == 30);
    CHECK(m.delivered == 0);
    CHECK(m.dropped_for(drop_reason::timeout) == 30);
    CHECK(m.balanced());
    CHECK(t->other == t->dispatched);
    CHECK(log_lines > 0);  // librdkafka said why (connection refused), through the logger
}
