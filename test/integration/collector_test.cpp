// The loopback collector against a real Beast client over 127.0.0.1.

#include "support/http_client.hpp"

#include <evdispatch/collector/collector.hpp>

#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using evdispatch::collector;
using evdispatch::collector_config;
using evdispatch::test::make_batch;
using evdispatch::test::reply;
using client = evdispatch::test::http_client;

namespace {

reply post(unsigned short port, const std::string& body, const std::string& target = "/v1/events") {
    client c(port);
    REQUIRE_FALSE(c.error());
    auto r = c.request(http::verb::post, target, body);
    INFO(c.error().message());
    REQUIRE_FALSE(c.error());
    return r;
}

}  // namespace

TEST_CASE("collector accepts a valid batch and counts it", "[integration][collector]") {
    collector col;
    REQUIRE(col.port() != 0);
    CHECK(col.url() == "http://127.0.0.1:" + std::to_string(col.port()) + "/v1/events");

    std::string body = make_batch(3, 1);
    client c(col.port());
    REQUIRE_FALSE(c.error());
    auto r = c.request(http::verb::post, "/v1/events", body);
    REQUIRE_FALSE(c.error());
    CHECK(r.status == 204);
    CHECK(r.body.empty());
    CHECK(r.keep_alive);

    auto s = col.stats();
    CHECK(s.connections == 1);
    CHECK(s.requests == 1);
    CHECK(s.batches == 1);
    CHECK(s.events == 3);
    CHECK(s.unique_events == 3);
    CHECK(s.duplicates == 0);
    CHECK(s.rejected == 0);
    CHECK(s.bytes == body.size());

    SECTION("the same batch again on the same connection counts duplicates") {
        auto again = c.request(http::verb::post, "/v1/events?x=1", body);
        REQUIRE_FALSE(c.error());
        CHECK(again.status == 204);
        // A batch that overlaps: two seen, two new.
        auto overlap = c.request(http::verb::post, "/other/prefix/events", make_batch(4, 2));
        REQUIRE_FALSE(c.error());
        CHECK(overlap.status == 204);
        s = col.stats();
        CHECK(s.connections == 1);  // keep-alive: one connection for all
        CHECK(s.requests == 3);
        CHECK(s.batches == 3);
        CHECK(s.events == 3 + 3 + 4);
        CHECK(s.unique_events == 5);
        CHECK(s.duplicates == 3 + 2);
        CHECK(s.rejected == 0);
    }
}

TEST_CASE("collector answers 400 with the reason for an invalid batch",
          "[integration][collector]") {
    collector col;
    std::string body = make_batch(2, 1);
    auto pos = body.rfind(R"("uuid":)");
    body.erase(pos, std::string(R"("uuid":"6a4c2f10-0000-4000-8000-000000000002",)").size());

    client c(col.port());
    auto r = c.request(http::verb::post, "/v1/events", body);
    REQUIRE_FALSE(c.error());
    CHECK(r.status == 400);
    CHECK(r.body.find(R"(visitors[1].snapshots[0].events[0]: missing "uuid")") !=
          std::string::npos);
    CHECK(r.keep_alive);

    auto bad_json = c.request(http::verb::post, "/v1/events", "{\"account_id\":");
    REQUIRE_FALSE(c.error());
    CHECK(bad_json.status == 400);
    CHECK(bad_json.body.find("malformed JSON") != std::string::npos);

    // The connection is still usable after a rejection.
    auto ok = c.request(http::verb::post, "/v1/events", make_batch(1, 7));
    REQUIRE_FALSE(c.error());
    CHECK(ok.status == 204);

    auto s = col.stats();
    CHECK(s.requests == 3);
    CHECK(s.rejected == 2);
    CHECK(s.batches == 1);
    CHECK(s.events == 1);
    CHECK(s.bytes == make_batch(1, 7).size());
}

TEST_CASE("collector answers 413 above max_body_bytes", "[integration][collector]") {
    collector_config cfg;
    std::string body = make_batch(1, 1);
    cfg.max_body_bytes = body.size() + 10;
    collector col(cfg);

    // Exactly at the limit (padded with whitespace) is accepted.
    std::string at_limit = body + std::string(10, ' ');
    CHECK(post(col.port(), at_limit).status == 204);

    std::string over = at_limit + " ";
    client c(col.port());
    auto r = c.request(http::verb::post, "/v1/events", over);
    REQUIRE_FALSE(c.error());
    CHECK(r.status == 413);
    CHECK(r.body.find(std::to_string(cfg.max_body_bytes)) != std::string::npos);
    CHECK_FALSE(r.keep_alive);
    CHECK(c.read_until_closed() == asio::error::eof);

    // A large body (far above the limit) also gets its answer.
    auto big = post(col.port(), std::string(256 * 1024, ' '));
    CHECK(big.status == 413);

    auto s = col.stats();
    CHECK(s.batches == 1);
    CHECK(s.rejected == 2);
    CHECK(s.requests == 3);
    CHECK(s.bytes == at_limit.size());
}

TEST_CASE("collector answers 404 to other methods and targets", "[integration][collector]") {
    collector col;
    struct route {
        http::verb verb;
        const char* target;
    };
    auto rt = GENERATE(route{http::verb::post, "/v1/event"}, route{http::verb::post, "/events/x"},
                       route{http::verb::get, "/v1/events"}, route{http::verb::put, "/v1/events"},
                       route{http::verb::post, "/stats"}, route{http::verb::get, "/stats/x"},
                       route{http::verb::get, "/"});
    INFO(rt.target);
    client c(col.port());
    auto r = c.request(rt.verb, rt.target, rt.verb == http::verb::get ? "" : make_batch(1, 1));
    REQUIRE_FALSE(c.error());
    CHECK(r.status == 404);
    CHECK_FALSE(r.body.empty());
    auto s = col.stats();
    CHECK(s.rejected == 1);
    CHECK(s.requests == 1);
    CHECK(s.batches == 0);
    CHECK(s.events == 0);
}

TEST_CASE("GET /stats returns the counters as JSON", "[integration][collector]") {
    collector col;
    post(col.port(), make_batch(2, 1));
    post(col.port(), make_batch(2, 2));
    post(col.port(), "[]");

    client c(col.port());
    auto r = c.request(http::verb::get, "/stats");
    REQUIRE_FALSE(c.error());
    REQUIRE(r.status == 200);
    error_code ec;
    auto v = boost::json::parse(r.body, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(v.is_object());
    const auto& o = v.as_object();
    CHECK(o.size() == 20);
    for (const char* name :
         {"failed_batches", "failed_events", "stalled", "resets", "dropped_responses",
          "fault_closes", "tls_handshakes", "tls_handshake_failures", "outages", "down_ms",
          "gzip_batches", "gzip_bytes"}) {
        INFO(name);
        REQUIRE(o.contains(name));
        CHECK(o.at(name).to_number<std::uint64_t>() == 0);
    }
    auto s = col.stats();  // now also counts the GET
    CHECK(o.at("connections").to_number<std::uint64_t>() == 4);
    CHECK(o.at("requests").to_number<std::uint64_t>() == 4);  // the GET itself included
    CHECK(o.at("batches").to_number<std::uint64_t>() == 2);
    CHECK(o.at("events").to_number<std::uint64_t>() == 4);
    CHECK(o.at("unique_events").to_number<std::uint64_t>() == 3);
    CHECK(o.at("duplicates").to_number<std::uint64_t>() == 1);
    CHECK(o.at("rejected").to_number<std::uint64_t>() == 1);
    CHECK(o.at("bytes").to_number<std::uint64_t>() ==
          make_batch(2, 1).size() + make_batch(2, 2).size());
    CHECK(s.requests == 4);
    CHECK(s.bytes == o.at("bytes").to_number<std::uint64_t>());
}

TEST_CASE("collector delays its responses", "[integration][collector]") {
    using clock = std::chrono::steady_clock;
    constexpr auto delay = std::chrono::milliseconds(200);
    auto timed_post = [](collector& col) {
        client c(col.port());
        REQUIRE_FALSE(c.error());
        auto t0 = clock::now();
        auto r = c.request(http::verb::post, "/v1/events", make_batch(1, 1));
        auto elapsed = clock::now() - t0;
        REQUIRE_FALSE(c.error());
        CHECK(r.status == 204);
        return elapsed;
    };

    SECTION("from the configuration") {
        collector_config cfg;
        cfg.delay = delay;
        collector col(cfg);
        CHECK(timed_post(col) >= delay);
    }
    SECTION("from set_delay") {
        collector col;
        col.set_delay(delay);
        CHECK(timed_post(col) >= delay);
        CHECK(col.stats().batches == 1);
    }
}

TEST_CASE("collector keeps accepted bodies when asked", "[integration][collector]") {
    collector_config cfg;
    cfg.keep_bodies = GENERATE(true, false);
    cfg.success_status = 200;
    collector col(cfg);
    std::string a = make_batch(1, 1), b = make_batch(2, 5);
    CHECK(post(col.port(), a).status == 200);
    CHECK(post(col.port(), "{}").status == 400);
    CHECK(post(col.port(), b).status == 200);
    if (cfg.keep_bodies) {
        CHECK(col.bodies() == std::vector<std::string>{a, b});
    } else {
        CHECK(col.bodies().empty());
    }
}

TEST_CASE("collector handles pipelined requests and Connection: close",
          "[integration][collector]") {
    collector col;
    auto raw = [](const std::string& target, const std::string& body) {
        return "POST " + target +
               " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\n\r\n" + body;
    };
    client c(col.port());
    c.send_raw(raw("/v1/events", make_batch(1, 1)) + raw("/nope", "") +
               raw("/v1/events", make_batch(1, 2)));
    auto r1 = c.read();
    auto r2 = c.read();
    auto r3 = c.read();
    REQUIRE_FALSE(c.error());
    CHECK(r1.status == 204);
    CHECK(r2.status == 404);
    CHECK(r3.status == 204);

    auto last = c.request(http::verb::post, "/v1/events", make_batch(1, 3), false);
    REQUIRE_FALSE(c.error());
    CHECK(last.status == 204);
    CHECK_FALSE(last.keep_alive);
    CHECK(c.read_until_closed() == asio::error::eof);

    auto s = col.stats();
    CHECK(s.connections == 1);
    CHECK(s.requests == 4);
    CHECK(s.unique_events == 3);
}

TEST_CASE("collector answers 400 to a malformed HTTP request", "[integration][collector]") {
    collector col;
    client c(col.port());
    c.send_raw("THIS IS NOT HTTP\r\n\r\n");
    auto r = c.read();
    REQUIRE_FALSE(c.error());
    CHECK(r.status == 400);
    CHECK(r.body.find("bad HTTP request") != std::string::npos);
    CHECK(col.stats().rejected == 1);
}

TEST_CASE("collector survives clients that disconnect", "[integration][collector]") {
    collector col;
    {
        client c(col.port());
        c.send_raw("POST /v1/events HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"acc");
        REQUIRE_FALSE(c.error());
    }  // closed mid-request
    {
        client c(col.port());
        REQUIRE_FALSE(c.error());
    }  // closed before any request
    auto r = post(col.port(), make_batch(1, 1));
    CHECK(r.status == 204);
    auto s = col.stats();
    CHECK(s.connections == 3);
    CHECK(s.requests == 1);
    CHECK(s.rejected == 0);
}

TEST_CASE("collector with two threads counts concurrent clients exactly",
          "[integration][collector]") {
    collector_config cfg;
    cfg.threads = 2;
    collector col(cfg);
    constexpr unsigned clients = 4, batches = 25, per_batch = 10;
    std::vector<std::thread> threads;
    std::atomic<unsigned> accepted{0};
    for (unsigned t = 0; t < clients; ++t) {
        threads.emplace_back([&, t] {
            client c(col.port());
            for (unsigned b = 0; b < batches; ++b) {
                // Every client sends the same uuids for its first batch: duplicates across
                // connections and threads.
                unsigned first = b == 0 ? 0 : 1000 * (t + 1) + b * per_batch;
                auto r = c.request(http::verb::post, "/v1/events", make_batch(per_batch, first));
                if (!c.error() && r.status == 204)
                    ++accepted;
            }
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(accepted == clients * batches);
    auto s = col.stats();
    CHECK(s.connections == clients);
    CHECK(s.batches == clients * batches);
    CHECK(s.events == clients * batches * per_batch);
    CHECK(s.duplicates == (clients - 1) * per_batch);
    CHECK(s.unique_events == s.events - s.duplicates);
}

TEST_CASE("collector stop is idempotent and closes the port", "[integration][collector]") {
    collector_config cfg;
    cfg.delay = std::chrono::seconds(30);  // a request is waiting when stop() comes
    auto col = std::make_unique<collector>(cfg);
    unsigned short port = col->port();

    client waiting(port);
    waiting.send(http::verb::post, "/v1/events", make_batch(1, 1));
    REQUIRE_FALSE(waiting.error());
    // Wait until the collector has read the request (bounded).
    for (int i = 0; i < 500 && col->stats().requests == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(col->stats().requests == 1);

    col->stop();
    col->stop();
    // The waiting client is disconnected instead of answered.
    auto r = waiting.read();
    INFO(waiting.error().message());
    CHECK((waiting.error() == http::error::end_of_stream || waiting.error() == asio::error::eof ||
           waiting.error() == asio::error::connection_reset));
    CHECK(r.status == 0);

    client refused(port);
    CHECK(refused.error() == asio::error::connection_refused);
    CHECK(col->stats().batches == 1);  // counters stay readable
    col.reset();                       // destructor after stop()
}

TEST_CASE("collectors on port 0 get different ports; a taken port throws",
          "[integration][collector]") {
    collector a, b;
    CHECK(a.port() != 0);
    CHECK(b.port() != 0);
    CHECK(a.port() != b.port());
    CHECK(post(a.port(), make_batch(1, 1)).status == 204);
    CHECK(post(b.port(), make_batch(1, 1)).status == 204);
    CHECK(a.stats().unique_events == 1);
    CHECK(b.stats().unique_events == 1);  // separate de-dup sets

    collector_config cfg;
    cfg.port = a.port();
    try {
        collector c(cfg);
        FAIL("binding a taken port did not throw");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == asio::error::address_in_use);
        CHECK(std::string(e.what()).find("cannot listen on 127.0.0.1:" +
                                         std::to_string(a.port())) != std::string::npos);
    }
}

TEST_CASE("collector rejects a broken configuration", "[integration][collector]") {
    collector_config threads0;
    threads0.threads = 0;
    CHECK_THROWS_AS(collector(threads0), boost::system::system_error);
    collector_config bad_status;
    bad_status.success_status = 500;
    CHECK_THROWS_AS(collector(bad_status), boost::system::system_error);
    collector_config bad_address;
    bad_address.listen_address = "not an address";
    CHECK_THROWS_AS(collector(bad_address), boost::system::system_error);
}

TEST_CASE("a broken configuration throws invalid_config naming the field",
          "[integration][collector]") {
    auto expect_invalid = [](const collector_config& cfg, const std::string& field) {
        try {
            collector c(cfg);
            FAIL("the collector accepted a broken configuration");
        } catch (const boost::system::system_error& e) {
            INFO(e.what());
            CHECK(e.code() == evdispatch::error::invalid_config);
            CHECK(std::string(e.what()).find(field) != std::string::npos);
        }
    };
    expect_invalid(collector_config{.threads = 0}, "collector_config::threads");
    expect_invalid(collector_config{.success_status = 500}, "collector_config::success_status");
    expect_invalid(collector_config{.listen_address = "not an address"},
                   "collector_config::listen_address");
    expect_invalid(collector_config{.tls_cert_file = "cert.pem"},
                   "collector_config::tls_cert_file");
    expect_invalid(collector_config{.faults = {.fail_every = 2, .fail_status = 99}},
                   "collector_faults::fail_status");
}

TEST_CASE("to_json writes every counter, in declaration order", "[integration][collector]") {
    evdispatch::collector_stats s;
    std::uint64_t v = 1;
    for (std::uint64_t* f :
         {&s.connections,       &s.requests,      &s.batches,        &s.events,
          &s.unique_events,     &s.duplicates,    &s.rejected,       &s.bytes,
          &s.failed_batches,    &s.failed_events, &s.stalled,        &s.resets,
          &s.dropped_responses, &s.fault_closes,  &s.tls_handshakes, &s.tls_handshake_failures,
          &s.outages,           &s.down_ms,       &s.gzip_batches,   &s.gzip_bytes})
        *f = v++;
    static_assert(sizeof(evdispatch::collector_stats) == 20 * sizeof(std::uint64_t),
                  "a new counter goes into to_json and this test");
    CHECK(evdispatch::to_json(s) ==
          R"({"connections":1,"requests":2,"batches":3,"events":4,"unique_events":5,)"
          R"("duplicates":6,"rejected":7,"bytes":8,"failed_batches":9,"failed_events":10,)"
          R"("stalled":11,"resets":12,"dropped_responses":13,"fault_closes":14,)"
          R"("tls_handshakes":15,"tls_handshake_failures":16,"outages":17,"down_ms":18,)"
          R"("gzip_batches":19,"gzip_bytes":20})");
    s.events = 18446744073709551615ULL;  // the largest counter, as an unsigned number
    CHECK(evdispatch::to_json(s).find(R"("events":18446744073709551615,)") != std::string::npos);
}
