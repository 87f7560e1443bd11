#include "config_check.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <string>

namespace evdispatch::detail {

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& rule, const std::string& value) {
    throw boost::system::system_error(make_error_code(error::invalid_config),
                                      field + " " + rule + " (it is " + value + ")");
}

std::string ms(std::chrono::milliseconds d) {
    return std::to_string(d.count()) + " ms";
}

}  // namespace

void check_config(const batch_config& c) {
    if (c.batch_size == 0)
        bad("batch.batch_size", "must be at least 1", "0");
    if (c.flush_interval.count() <= 0)
        bad("batch.flush_interval", "must be at least 1 ms", ms(c.flush_interval));
    if (c.max_batch_bytes < 1024)
        bad("batch.max_batch_bytes", "must be at least 1024", std::to_string(c.max_batch_bytes));
}

void check_config(const retry_config& c) {
    if (c.max_attempts == 0)
        bad("retry.max_attempts", "must be at least 1", "0");
    if (c.base_backoff.count() < 0)
        bad("retry.base_backoff", "must be >= 0", ms(c.base_backoff));
    if (c.max_backoff < c.base_backoff)
        bad("retry.max_backoff", "must be at least retry.base_backoff (" + ms(c.base_backoff) + ")",
            ms(c.max_backoff));
    if (c.max_retry_time.count() < 0)
        bad("retry.max_retry_time", "must be >= 0", ms(c.max_retry_time));
    if (c.max_retry_after.count() < 0)
        bad("retry.max_retry_after", "must be >= 0", ms(c.max_retry_after));
}

void check_config(const http_config& c) {
    if (c.max_connections == 0)
        bad("http.max_connections", "must be at least 1", "0");
    if (c.connect_timeout.count() <= 0)
        bad("http.connect_timeout", "must be at least 1 ms", ms(c.connect_timeout));
    if (c.request_timeout.count() <= 0)
        bad("http.request_timeout", "must be at least 1 ms", ms(c.request_timeout));
    if (c.max_response_bytes < 256)
        bad("http.max_response_bytes", "must be at least 256",
            std::to_string(c.max_response_bytes));
    if (c.idle_timeout.count() < 0)
        bad("http.idle_timeout", "must be >= 0", ms(c.idle_timeout));
    if (c.dns_ttl.count() < 0)
        bad("http.dns_ttl", "must be >= 0", ms(c.dns_ttl));
    if (c.compression != http_compression::none && c.compression != http_compression::gzip)
        bad("http.compression", "must be none or gzip",
            std::to_string(static_cast<int>(c.compression)));
    if (c.compression_level < 1 || c.compression_level > 9)
        bad("http.compression_level", "must be in 1..9", std::to_string(c.compression_level));
}

void check_config(const health_config& c) {
    if (c.probe_initial.count() <= 0)
        bad("health.probe_initial", "must be at least 1 ms", ms(c.probe_initial));
    if (c.probe_max < c.probe_initial)
        bad("health.probe_max",
            "must be at least health.probe_initial (" + ms(c.probe_initial) + ")", ms(c.probe_max));
    if (c.max_age.count() < 0)
        bad("health.max_age", "must be >= 0", ms(c.max_age));
}

// The directory itself (exists, writable, format version) is checked when the spool opens.
void check_config(const spool_config& c, const batch_config& batch) {
    if (c.dir.empty())
        return;  // off: the other fields are not used
    if (c.segment_bytes < batch.max_batch_bytes + 4096)
        bad("spool.segment_bytes",
            "must be at least batch.max_batch_bytes + 4096 (" +
                std::to_string(batch.max_batch_bytes + 4096) + ")",
            std::to_string(c.segment_bytes));
    if (c.max_bytes < c.segment_bytes)
        bad("spool.max_bytes",
            "must be at least spool.segment_bytes (" + std::to_string(c.segment_bytes) + ")",
            std::to_string(c.max_bytes));
    if (c.fsync_interval.count() <= 0)
        bad("spool.fsync_interval", "must be at least 1 ms", ms(c.fsync_interval));
    if (c.max_age.count() < 0)
        bad("spool.max_age", "must be >= 0", ms(c.max_age));
}

void check_config(const processor_config& c, bool custom_dispatcher) {
    if (c.queue_capacity < 2)
        bad("queue_capacity", "must be at least 2", std::to_string(c.queue_capacity));
    check_config(c.batch);
    check_config(c.retry);
    check_config(c.health);
    check_config(c.spool, c.batch);
    if (c.backlog_max_bytes < c.batch.max_batch_bytes)
        bad("backlog_max_bytes",
            "must be at least batch.max_batch_bytes (" + std::to_string(c.batch.max_batch_bytes) +
                ")",
            std::to_string(c.backlog_max_bytes));
    if (c.drain_chunk == 0)
        bad("drain_chunk", "must be at least 1", "0");
    if (c.drain_poll.count() < 0 || c.drain_poll > std::chrono::seconds(1))
        bad("drain_poll", "must be between 0 and 1 s",
            std::to_string(c.drain_poll.count()) + " us");
    if (c.destructor_close_timeout.count() < 0)
        bad("destructor_close_timeout", "must be >= 0", ms(c.destructor_close_timeout));
    if (!custom_dispatcher)
        check_config(c.http);
}

}  // namespace evdispatch::detail
