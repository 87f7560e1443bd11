#pragma once

/// @file kafka.hpp
/// An event_dispatcher that produces each batch as one Kafka message (target
/// evdispatch::kafka, built when librdkafka is found). See docs/kafka.md.

#include <evdispatch/event_dispatcher.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace evdispatch {

namespace detail {
struct kafka_producer;
}

/// What the key of a batch's Kafka message is (kafka_config::key).
enum class kafka_key {
    /// `account_id + ":" + project_id` of the batch context: one project's batches go to one
    /// partition, in order. The default.
    project,
    /// kafka_config::fixed_key for every batch.
    fixed,
    /// No key: librdkafka's partitioner spreads the batches over the partitions.
    none,
};

/// Configuration of kafka_event_dispatcher. A plain aggregate: set it with designated
/// initialisers.
struct kafka_config {
    /// Topic every batch is produced to. Required: empty is invalid.
    std::string topic;
    /// The message key. Default kafka_key::project.
    kafka_key key = kafka_key::project;
    /// The key with kafka_key::fixed. Default empty (an empty key).
    std::string fixed_key;
    /// librdkafka configuration properties, passed through in order after evdispatch's
    /// defaults (so they override them): `bootstrap.servers` (required, unless
    /// `test.mock.num.brokers` is given), `compression.type`, `linger.ms`, security settings...
    /// evdispatch's defaults: `acks=all`, `enable.idempotence=true` and `message.timeout.ms`
    /// from message_timeout. An unknown property or a bad value is an error at construction.
    std::vector<std::pair<std::string, std::string>> properties;
    /// Batches produced and not yet reported by librdkafka, at most (the processor's in-flight
    /// limit). Default 64. 0 is invalid.
    std::size_t max_in_flight = 64;
    /// How long librdkafka tries to deliver a message (its own retries included) before the
    /// batch fails with error::request_timeout (retried by the processor). Sets
    /// `message.timeout.ms` unless `properties` does. Default 30 s. 0 is invalid.
    std::chrono::milliseconds message_timeout{30'000};
    /// On destruction (without shutdown() first): how long to wait for outstanding messages'
    /// delivery reports before purging them. Default 5 s. 0: purge at once.
    std::chrono::milliseconds close_timeout{5'000};
    /// librdkafka's log lines (syslog level 0-7, facility, text). Called from librdkafka's
    /// threads: it must be thread-safe and must not throw (exceptions are swallowed). Default
    /// null: librdkafka's lines are discarded (failures still reach every batch's result).
    std::function<void(int level, std::string_view facility, std::string_view text)> logger;
};

/// Sends each batch as one Kafka message with librdkafka: the value is log_event::body (the
/// batch JSON, the bytes the HTTP dispatcher sends uncompressed; use the `compression.type`
/// property to compress), the key per kafka_config::key, and headers `content-type`
/// (`application/json`) and `event-count` (decimal).
///
/// Delivery: a batch is reported delivered only by librdkafka's delivery report (the broker
/// acknowledged it with the configured `acks`), never when it is queued. Failures:
/// - librdkafka's local queue full, or a delivery error librdkafka gave up on after its own
///   retries: a retryable error (error::dispatcher_failed, request_timeout for a message timeout,
///   connect_failed when no broker could be reached) with librdkafka's reason as the message;
/// - a fatal producer error or a permanent refusal (message too large, authorisation):
///   error::dispatcher_rejected, not retried, with the reason.
///
/// Threads: async_dispatch, max_in_flight and shutdown may be called from any one thread at a
/// time (the processor's strand). The dispatcher owns one polling thread that serves
/// librdkafka's delivery reports; completion handlers are invoked from it (or, for a batch
/// refused at once, from inside async_dispatch).
///
/// shutdown(): purges every queued and in-flight message; each purged batch completes with
/// error::close_deadline. Later dispatches complete at once with close_deadline.
/// Destruction: waits up to close_timeout for outstanding delivery reports, purges the rest,
/// joins the polling thread; every outstanding handler has been invoked when it returns.
class kafka_event_dispatcher final : public event_dispatcher {
public:
    /// Throws boost::system::system_error(error::invalid_config) naming the field or the
    /// librdkafka property that is wrong (with librdkafka's explanation).
    explicit kafka_event_dispatcher(kafka_config cfg);
    ~kafka_event_dispatcher() override;
    kafka_event_dispatcher(const kafka_event_dispatcher&) = delete;
    kafka_event_dispatcher& operator=(const kafka_event_dispatcher&) = delete;

    void async_dispatch(std::shared_ptr<const log_event> ev,
                        boost::asio::any_completion_handler<dispatch_signature> handler) override;
    std::size_t max_in_flight() const noexcept override;
    void shutdown() noexcept override;

    /// The topic batches are produced to.
    const std::string& topic() const noexcept;

private:
    std::unique_ptr<detail::kafka_producer> impl_;
};

}  // namespace evdispatch
