// http_config::compression gzip against the real loopback collector: compressed once when
// sealed, decoded (bounded) by the collector, and the fallback to JSON when an endpoint refuses.

#include "core/gzip.hpp"
#include "support/fixtures.hpp"
#include "support/http_client.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

processor_config gzip_config(const collector& col) {
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 50;
    cfg.batch.flush_interval = 50ms;
    cfg.http.compression = http_compression::gzip;
    return cfg;
}

std::string raw_gzip_post(const std::string& gz) {
    return "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Encoding: gzip\r\nContent-Length: " +
           std::to_string(gz.size()) + "\r\n\r\n" + gz;
}

}  // namespace

TEST_CASE("gzip: batches are compressed once when sealed and the collector decodes them",
          "[integration][gzip]") {
    collector_config cc;
    cc.keep_bodies = true;
    collector col(cc);
    // Every request carries both: the JSON (for hooks, the spool, custom dispatchers) and the
    // gzip bytes the HTTP dispatcher sends, which must decode to the JSON. The hook runs on the
    // processor's thread: it records, the test thread checks (Catch2 is not thread-safe).
    std::vector<std::string> sent_json;
    std::size_t mismatches = 0;
    processor_hooks hooks;
    hooks.on_log_event = [&](const log_event& le) {
        std::string decoded, why;
        if (detail::gunzip(le.gzip_body, 1 << 24, decoded, why) != detail::gunzip_status::ok ||
            decoded != le.body)
            ++mismatches;
        sent_json.push_back(le.body);
    };
    batch_event_processor p(gzip_config(col), hooks);
    event_builder b(test::make_context(col.url()));
    for (int i = 0; i < 500; ++i)
        REQUIRE(p.process(test::make_impression(b, i)) == process_result::accepted);
    const auto report = p.async_close(10s, asio::use_future).get();
    CHECK(report.delivered == 500);
    // The close has completed: the hook's thread is done with these.
    CHECK(mismatches == 0);
    CHECK(sent_json.size() == 10);
    const auto m = report.metrics;
    CHECK(m.compressed_batches == 10);
    CHECK(m.compressed_out_bytes < m.compressed_in_bytes / 3);  // JSON batches compress well
    CHECK(m.compression_refused == 0);
    const auto s = col.stats();
    CHECK(s.gzip_batches == 10);
    CHECK(s.unique_events == 500);
    CHECK(s.gzip_bytes == m.compressed_out_bytes);
    CHECK(s.bytes == m.compressed_in_bytes);  // the collector counts decoded bytes
    // The same bodies (four connections: not necessarily in the same order).
    auto received = col.bodies();
    std::sort(received.begin(), received.end());
    std::sort(sent_json.begin(), sent_json.end());
    CHECK(received == sent_json);
}

TEST_CASE("gzip: an endpoint that refuses gzip gets the batch again as JSON, then only JSON",
          "[integration][gzip]") {
    collector_config cc;
    cc.refuse_gzip = true;  // 415 to gzip bodies
    collector col(cc);
    std::vector<std::string> logs;
    processor_hooks hooks;
    hooks.logger = [&](log_level, std::string_view line) { logs.emplace_back(line); };
    auto cfg = gzip_config(col);
    // One request at a time: with more, the batches already on their way when the first 415
    // comes back are refused too (each is re-sent once, as this one).
    cfg.http.max_connections = 1;
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(col.url()));
    for (int i = 0; i < 200; ++i)
        REQUIRE(p.process(test::make_impression(b, i)) == process_result::accepted);
    const auto report = p.async_close(10s, asio::use_future).get();
    CHECK(report.delivered == 200);
    CHECK(report.not_delivered == 0);
    const auto m = report.metrics;
    CHECK(m.compression_refused == 1);  // once: then the endpoint gets JSON only
    CHECK(m.retries == 0);              // not a failed attempt: the same attempt, re-sent
    const auto s = col.stats();
    CHECK(s.rejected == 1);
    CHECK(s.gzip_batches == 0);
    CHECK(s.unique_events == 200);
    CHECK(std::any_of(logs.begin(), logs.end(), [](const std::string& l) {
        return l.find("refused a gzipped batch") != std::string::npos;
    }));
}

TEST_CASE("gzip: the collector bounds what it decodes and names what is wrong",
          "[integration][gzip]") {
    collector_config cc;
    cc.max_body_bytes = 64 * 1024;
    collector col(cc);
    const std::string good = test::make_batch(3, 1);
    struct bad_case {
        const char* what;
        std::string gz;
        unsigned status;
        const char* says;
    };
    const std::vector<bad_case> cases = {
        // 32 MiB of blanks: about 32 KB compressed, under the body limit as sent.
        {"a decompression bomb", detail::gzip_compress(std::string(32 << 20, ' '), 9), 413,
         "decodes to more than 65536"},
        {"corrupt gzip", "\x1f\x8b not really", 400, "gzip"},
        {"gzip of something that is not a batch", detail::gzip_compress("{\"a\":1}", 6), 400,
         "account_id"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        test::http_client client(col.port());
        client.send_raw(raw_gzip_post(c.gz));
        const auto rep = client.read();
        CHECK(rep.status == c.status);
        CHECK(rep.body.find(c.says) != std::string::npos);
    }
    test::http_client client(col.port());
    client.send_raw(raw_gzip_post(detail::gzip_compress(good, 6)));
    CHECK(client.read().status == 204);
    const auto s = col.stats();
    CHECK(s.rejected == 3);
    CHECK(s.gzip_batches == 1);
    CHECK(s.unique_events == 3);
}

TEST_CASE("gzip: compression_level outside 1..9 is refused, naming the field",
          "[integration][gzip]") {
    processor_config cfg;
    cfg.http.compression = http_compression::gzip;
    cfg.http.compression_level = 0;
    try {
        batch_event_processor p(cfg);
        FAIL("accepted");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == error::invalid_config);
        CHECK(std::string(e.what()).find("http.compression_level") != std::string::npos);
    }
}
