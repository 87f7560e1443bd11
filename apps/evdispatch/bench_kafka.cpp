// evdispatch bench --kafka: see bench_kafka.hpp.

#include "bench_kafka.hpp"

#ifdef EVDISPATCH_HAVE_KAFKA
#include "support/kafka_mock.hpp"

#include <evdispatch/kafka.hpp>

#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#endif

#include <stdexcept>

namespace evdispatch::app {

#ifdef EVDISPATCH_HAVE_KAFKA

namespace {

std::uint64_t process_cpu_ns() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto ns = [](const timeval& t) {
        return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000u +
               static_cast<std::uint64_t>(t.tv_usec) * 1'000u;
    };
    return ns(ru.ru_utime) + ns(ru.ru_stime);
}

}  // namespace

bool kafka_available() noexcept {
    return true;
}

run_result run_kafka_bench(bench_options o) {
    std::unique_ptr<test::kafka_mock_cluster> mock;
    std::string brokers = o.kafka_brokers;
    if (o.kafka == "mock") {
        mock = std::make_unique<test::kafka_mock_cluster>(3);
        // Partitions as many as producers: with the default key (the project) every batch goes
        // to one of them, in order.
        mock->create_topic(o.kafka_topic, 4, 3);
        brokers = mock->bootstraps();
    }
    kafka_config k;
    k.topic = o.kafka_topic;
    k.properties = {{"bootstrap.servers", brokers}};
    // The mock cluster keeps only the last ~5 MB of a partition: lz4 keeps more of the run
    // there for the read-back (a real cluster gets librdkafka's defaults).
    if (mock)
        k.properties.emplace_back("compression.type", "lz4");
    k.max_in_flight = o.proc.http.max_connections * 16;
    // Made once now, so that a bad configuration fails before any thread starts.
    auto dispatcher = std::make_shared<kafka_event_dispatcher>(k);
    o.make_dispatcher = [&dispatcher]() -> std::shared_ptr<event_dispatcher> {
        return std::exchange(dispatcher, nullptr);
    };
    if (o.progress)
        std::fprintf(stderr, "evdispatch bench: kafka %s, topic %s (%s)\n", o.kafka.c_str(),
                     o.kafka_topic.c_str(), brokers.c_str());

    // The consumer reads along (the mock cluster keeps only the last few MB of a partition),
    // and to the end once the run is closed.
    std::atomic<bool> finished{false};
    test::kafka_consumed consumed;
    std::exception_ptr consumer_failed;
    std::thread consumer([&] {
        try {
            consumed =
                test::consume_topic(brokers, o.kafka_topic, std::chrono::seconds(60), &finished);
        } catch (...) {
            consumer_failed = std::current_exception();
        }
    });
    const auto cpu_before = process_cpu_ns();
    run_result r;
    try {
        r = run_ours(o, "http://127.0.0.1:9/v1/events", nullptr);  // the URL names the context
    } catch (...) {
        finished = true;
        consumer.join();
        throw;
    }
    const auto cpu_run = process_cpu_ns() - cpu_before;
    finished = true;
    consumer.join();
    if (consumer_failed)
        std::rethrow_exception(consumer_failed);
    r.kafka_consumed_unique = static_cast<std::int64_t>(consumed.unique);
    r.kafka_consumed_missed = consumed.missed;
    r.duplicates = consumed.duplicates;
    // What is not the producers' or the processor thread's: librdkafka's threads (the producer
    // client, the in-process mock brokers, the read-back consumer) and the polling thread.
    if (r.delivered) {
        const double all = static_cast<double>(cpu_run) / static_cast<double>(r.delivered);
        r.collector_cpu_ns_per_event =
            std::max(0.0, all - r.producers_cpu_ns_per_event - r.dispatcher_cpu_ns_per_event);
    }
    return r;
}

#else

bool kafka_available() noexcept {
    return false;
}

run_result run_kafka_bench(bench_options) {
    throw std::runtime_error(
        "this evdispatch was built without Kafka support (librdkafka was not found: install "
        "librdkafka-dev and build again)");
}

#endif

}  // namespace evdispatch::app
