// The mock cluster and the read-back consumer of test/support/kafka_mock.hpp.

#include "support/kafka_mock.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <stdexcept>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace evdispatch::test {

namespace {

// The helpers' own handles log nothing: the tests look at results, not at librdkafka's lines.
void quiet(const rd_kafka_t*, int, const char*, const char*) {}

rd_kafka_conf_t* quiet_conf() {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet);
    return conf;
}

void set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
    char err[256];
    if (rd_kafka_conf_set(conf, name, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw std::runtime_error(std::string("kafka test consumer: ") + name + ": " + err);
    }
}

// Counts the events of one batch body (Optimizely v1 envelope:
// visitors[].snapshots[].events[].uuid) into `uuids`; -1 if it is not such a body.
long count_events(std::string_view body, std::unordered_set<std::string>& uuids,
                  kafka_consumed& c) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(body, ec);
    if (ec || !v.is_object())
        return -1;
    const auto* visitors = v.as_object().if_contains("visitors");
    if (!visitors || !visitors->is_array())
        return -1;
    long n = 0;
    for (const auto& visitor : visitors->as_array()) {
        const auto* snapshots =
            visitor.is_object() ? visitor.as_object().if_contains("snapshots") : nullptr;
        if (!snapshots || !snapshots->is_array())
            return -1;
        for (const auto& s : snapshots->as_array()) {
            const auto* events = s.is_object() ? s.as_object().if_contains("events") : nullptr;
            if (!events || !events->is_array())
                return -1;
            for (const auto& e : events->as_array()) {
                const auto* uuid = e.is_object() ? e.as_object().if_contains("uuid") : nullptr;
                if (!uuid || !uuid->is_string())
                    return -1;
                ++n;
                ++c.events;
                if (!uuids.emplace(uuid->as_string().c_str()).second)
                    ++c.duplicates;
            }
        }
    }
    return n;
}

}  // namespace

kafka_mock_cluster::kafka_mock_cluster(int brokers) : brokers_(brokers) {
    char err[256];
    rd_kafka_conf_t* conf = quiet_conf();
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk_) {
        rd_kafka_conf_destroy(conf);
        throw std::runtime_error(std::string("kafka mock cluster: ") + err);
    }
    cluster_ = rd_kafka_mock_cluster_new(rk_, brokers);
    if (!cluster_) {
        rd_kafka_destroy(rk_);
        throw std::runtime_error("kafka mock cluster: rd_kafka_mock_cluster_new failed");
    }
}

kafka_mock_cluster::~kafka_mock_cluster() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(rk_);
}

std::string kafka_mock_cluster::bootstraps() const {
    return rd_kafka_mock_cluster_bootstraps(cluster_);
}

void kafka_mock_cluster::create_topic(const std::string& topic, int partitions, int replication) {
    if (rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, replication))
        throw std::runtime_error("kafka mock cluster: cannot create topic " + topic);
}

void kafka_mock_cluster::set_leader(const std::string& topic, int partitions, int broker) {
    for (int p = 0; p < partitions; ++p)
        rd_kafka_mock_partition_set_leader(cluster_, topic.c_str(), p, broker);
}

void kafka_mock_cluster::set_down(int broker) {
    rd_kafka_mock_broker_set_down(cluster_, broker);
}

void kafka_mock_cluster::set_up(int broker) {
    rd_kafka_mock_broker_set_up(cluster_, broker);
}

void kafka_mock_cluster::push_produce_errors(const std::vector<int>& errors) {
    std::vector<rd_kafka_resp_err_t> e;
    for (int x : errors)
        e.push_back(static_cast<rd_kafka_resp_err_t>(x));
    constexpr std::int16_t produce_api_key = 0;  // Kafka protocol: Produce
    rd_kafka_mock_push_request_errors_array(cluster_, produce_api_key, e.size(), e.data());
}

kafka_consumed consume_topic(const std::string& bootstraps, const std::string& topic,
                             std::chrono::milliseconds timeout, const std::atomic<bool>* finished) {
    kafka_consumed c;
    char err[256];
    rd_kafka_conf_t* conf = quiet_conf();
    set(conf, "bootstrap.servers", bootstraps);
    set(conf, "group.id", "evdispatch-read-back");
    set(conf, "enable.auto.commit", "false");
    // Fallen behind the log's start (the mock cluster drops old data): go on from the start,
    // and count the gap as missed.
    set(conf, "auto.offset.reset", "earliest");
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        throw std::runtime_error(std::string("kafka test consumer: ") + err);
    }
    struct guard {
        rd_kafka_t* rk;
        ~guard() {
            rd_kafka_consumer_close(rk);
            rd_kafka_destroy(rk);
        }
    } g{rk};

    auto until = std::chrono::steady_clock::now() + timeout;
    auto left_ms = [&] {
        const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(
            until - std::chrono::steady_clock::now());
        return static_cast<int>(std::max<long long>(0, d.count()));
    };
    // The partitions, from the cluster's metadata.
    int partitions = 0;
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    while (partitions == 0 && left_ms() > 0) {
        const rd_kafka_metadata_t* md = nullptr;
        if (rd_kafka_metadata(rk, 0, t, &md, std::min(left_ms(), 2000)) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && !md->topics[0].err)
                partitions = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
    }
    rd_kafka_topic_destroy(t);
    if (partitions == 0)
        return c;
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p)
        rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);

    std::vector<std::int64_t> high(partitions, -1), next(partitions, 0);
    std::unordered_set<std::string> uuids;
    auto read = [&](rd_kafka_message_t* m) {
        if (!m->err && m->partition >= 0 && m->partition < partitions) {
            // A gap: messages gone from the log before they were read (the mock cluster keeps
            // only the last few MB of each partition).
            if (m->offset > next[m->partition])
                c.missed += static_cast<std::uint64_t>(m->offset - next[m->partition]);
            next[m->partition] = m->offset + 1;
            ++c.messages;
            const long n = count_events(
                std::string_view(static_cast<const char*>(m->payload), m->len), uuids, c);
            // The event-count header must say how many events the body holds.
            const void* hv = nullptr;
            std::size_t hs = 0;
            rd_kafka_headers_t* hdrs = nullptr;
            bool header_ok = false;
            if (n >= 0 && rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                rd_kafka_header_get_last(hdrs, "event-count", &hv, &hs) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR)
                header_ok = std::string(static_cast<const char*>(hv), hs) == std::to_string(n);
            if (!header_ok)
                ++c.bad;
        }
    };
    // Reading along while the run goes on, until it is over.
    while (finished && !finished->load()) {
        if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100)) {
            read(m);
            rd_kafka_message_destroy(m);
        }
        until = std::chrono::steady_clock::now() + timeout;
    }
    // Where each partition ends now: the high watermarks (the offset after the last message).
    for (int p = 0; p < partitions; ++p) {
        std::int64_t low = 0;
        while (high[p] < 0 && left_ms() > 0)
            if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high[p],
                                                 std::min(left_ms(), 2000)))
                high[p] = -1;
    }
    auto at_end = [&] {
        for (int p = 0; p < partitions; ++p)
            if (high[p] < 0 || next[p] < high[p])
                return false;
        return true;
    };
    rd_kafka_topic_partition_list_t* positions = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p)
        rd_kafka_topic_partition_list_add(positions, topic.c_str(), p);
    while (!at_end() && left_ms() > 0) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, std::min(left_ms(), 200));
        if (!m) {
            // Nothing more to read may also mean the end was passed over (data gone from the
            // log): the consumer's positions say where it is.
            if (rd_kafka_position(rk, positions) == RD_KAFKA_RESP_ERR_NO_ERROR)
                for (int i = 0; i < positions->cnt; ++i) {
                    const auto& tp = positions->elems[i];
                    if (tp.offset > next[tp.partition]) {
                        c.missed += static_cast<std::uint64_t>(tp.offset - next[tp.partition]);
                        next[tp.partition] = tp.offset;
                    }
                }
            continue;
        }
        read(m);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(positions);
    c.complete = at_end();
    for (int p = 0; p < partitions; ++p)
        c.log_messages += static_cast<std::uint64_t>(std::max<std::int64_t>(0, high[p]));
    c.unique = uuids.size();
    return c;
}

}  // namespace evdispatch::test
