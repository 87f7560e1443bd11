#pragma once

// evdispatch bench --kafka mock | --kafka-brokers: the evdispatch run produces to a Kafka
// topic (a mock cluster of 3 brokers in this process, or a cluster you run), and a consumer
// reads the topic back along the run to count the events' uuids. Compiled in only with
// evdispatch::kafka (EVDISPATCH_HAVE_KAFKA); without it, run_kafka_bench says so.

#include "bench_run.hpp"

namespace evdispatch::app {

/// True if this program was built with evdispatch::kafka.
bool kafka_available() noexcept;

/// The evdispatch run against Kafka (`o.kafka` is "mock" or "brokers"), with
/// run_result::kafka_consumed_unique filled in. Throws std::runtime_error when Kafka support
/// is not compiled in, or when the cluster or the topic cannot be set up.
run_result run_kafka_bench(bench_options o);

}  // namespace evdispatch::app
