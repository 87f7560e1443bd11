#pragma once

// librdkafka's mock cluster (brokers speaking the Kafka protocol on 127.0.0.1, with outage and
// error injection) and a consumer that reads a topic back: for the Kafka dispatcher's tests and
// `evdispatch bench --kafka mock`. Built only with evdispatch::kafka.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace evdispatch::test {

/// A mock cluster of `brokers` brokers (ids 1..brokers) on loopback ports, alive while this
/// object is. Not copyable. Throws std::runtime_error if librdkafka cannot start it.
class kafka_mock_cluster {
public:
    explicit kafka_mock_cluster(int brokers = 3);
    ~kafka_mock_cluster();
    kafka_mock_cluster(const kafka_mock_cluster&) = delete;
    kafka_mock_cluster& operator=(const kafka_mock_cluster&) = delete;

    /// "127.0.0.1:port,..." for bootstrap.servers.
    std::string bootstraps() const;
    int brokers() const noexcept { return brokers_; }
    /// Creates `topic` with `partitions` partitions, each replicated on `replication` brokers.
    void create_topic(const std::string& topic, int partitions, int replication = 3);
    /// Makes `broker` the leader of every partition of `topic` (0..partitions-1).
    void set_leader(const std::string& topic, int partitions, int broker);
    /// Takes a broker down (its connections are closed, new ones refused) or brings it back.
    void set_down(int broker);
    void set_up(int broker);
    /// The next Produce requests (to any broker) fail with these Kafka error codes, in order.
    void push_produce_errors(const std::vector<int>& errors);

private:
    rd_kafka_s* rk_ = nullptr;
    rd_kafka_mock_cluster_s* cluster_ = nullptr;
    int brokers_ = 0;
};

/// What reading a topic of batch messages back found.
struct kafka_consumed {
    std::uint64_t messages = 0;      ///< Messages read.
    std::uint64_t log_messages = 0;  ///< Messages the partitions held (sum of high watermarks).
    std::uint64_t events = 0;        ///< Events (visitors' snapshot events with a uuid) in them.
    std::uint64_t unique = 0;        ///< Distinct uuids among them.
    std::uint64_t duplicates = 0;    ///< events - unique.
    std::uint64_t bad = 0;  ///< Messages that were not batch JSON, or whose event-count header
                            ///< did not match the events in the body.
    /// Messages gone from the log before they were read: offsets skipped (librdkafka's mock
    /// cluster keeps only about the last 5 MB of each partition; read along with `finished`).
    std::uint64_t missed = 0;
    bool complete = false;  ///< Every partition was read to its end before the timeout.
};

/// Reads `topic` (which must exist) from the beginning of every partition to its end, within
/// `timeout`, and counts the events' uuids. With `finished`: reads along until it is set (call
/// it on a thread of its own while the run goes on), then to the ends as they are then.
kafka_consumed consume_topic(const std::string& bootstraps, const std::string& topic,
                             std::chrono::milliseconds timeout,
                             const std::atomic<bool>* finished = nullptr);

}  // namespace evdispatch::test
