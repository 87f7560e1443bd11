// The loopback collector's fault injection and TLS, against the tests' blocking Beast client
// (plain or TLS with peer and host name verification) over 127.0.0.1.

#include "support/fixtures.hpp"
#include "support/http_client.hpp"
#include "support/tls_certs.hpp"

#include <evdispatch/collector/collector.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

#include <openssl/x509_vfy.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using evdispatch::collector;
using evdispatch::collector_config;
using evdispatch::collector_faults;
using evdispatch::test::make_batch;
using evdispatch::test::reply;
using evdispatch::test::shared_tls_certs;
using evdispatch::test::tls_options;
using evdispatch::test::wait_until;
using client = evdispatch::test::http_client;
using namespace std::chrono_literals;

namespace {

// A collector serving HTTPS with `cert` (the trusted server certificate by default).
collector_config tls_config(const evdispatch::test::cert_files& cert) {
    collector_config cfg;
    cfg.tls_cert_file = cert.cert;
    cfg.tls_key_file = cert.key;
    cfg.url_host = "localhost";
    return cfg;
}

tls_options trusted(std::string host = "localhost") {
    return {shared_tls_certs().ca.cert, std::move(host)};
}

bool closed_or_reset(error_code ec) {
    return ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == http::error::end_of_stream;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Scripted statuses and Retry-After

TEST_CASE("collector answers scripted statuses in order, then success_status",
          "[integration][collector][faults]") {
    collector_config cfg;
    cfg.success_status = 202;  // tells the script's 204 from "script over"
    cfg.faults.script = {500, 503, 204};
    cfg.faults.script_retry_after = {"", "7"};
    collector col(cfg);
    const std::string a = make_batch(3, 1), b = make_batch(2, 100);

    client c(col.port());
    REQUIRE_FALSE(c.error());
    auto r1 = c.post(a);
    REQUIRE_FALSE(c.error());
    CHECK(r1.status == 500);
    CHECK_FALSE(r1.retry_after);
    CHECK(r1.keep_alive);  // a scripted failure keeps the connection
    CHECK(r1.body.find("injected") != std::string::npos);

    // An invalid batch gets its 400 and does not consume a script entry.
    auto bad = c.post("{}");
    CHECK(bad.status == 400);

    auto r2 = c.post(a);
    CHECK(r2.status == 503);
    REQUIRE(r2.retry_after);
    CHECK(*r2.retry_after == "7");
    auto stats_mid = col.stats();
    CHECK(stats_mid.failed_batches == 2);
    CHECK(stats_mid.failed_events == 6);
    CHECK(stats_mid.batches == 0);
    CHECK(stats_mid.events == 0);  // failed batches are not delivered

    auto r3 = c.post(a);
    CHECK(r3.status == 204);
    CHECK_FALSE(r3.retry_after);
    auto r4 = c.post(b);
    CHECK(r4.status == 202);
    auto r5 = c.post(b);
    CHECK(r5.status == 202);
    REQUIRE_FALSE(c.error());

    auto s = col.stats();
    CHECK(s.connections == 1);
    CHECK(s.requests == 6);
    CHECK(s.failed_batches == 2);
    CHECK(s.failed_events == 6);
    CHECK(s.batches == 3);
    CHECK(s.events == 3 + 2 + 2);
    CHECK(s.unique_events == 5);  // `a` was not seen while it failed
    CHECK(s.duplicates == 2);
    CHECK(s.rejected == 1);
    CHECK(s.bytes == a.size() + 2 * b.size());
}

TEST_CASE("set_faults restarts the script and applies to new requests at run time",
          "[integration][collector][faults]") {
    collector col;
    client c(col.port());
    CHECK(c.post(make_batch(1, 1)).status == 204);
    col.set_faults({.script = {502}});
    CHECK(c.post(make_batch(1, 2)).status == 502);
    CHECK(c.post(make_batch(1, 2)).status == 204);
    col.set_faults({.script = {429, 429}});
    CHECK(col.faults().script == std::vector<unsigned>{429, 429});
    CHECK(c.post(make_batch(1, 3)).status == 429);
    col.set_faults({.script = {503}});  // replaces the rest of the old script
    CHECK(c.post(make_batch(1, 3)).status == 503);
    CHECK(c.post(make_batch(1, 3)).status == 204);
    col.set_faults({.script = {500}});
    col.set_faults({});
    CHECK(c.post(make_batch(1, 4)).status == 204);
    REQUIRE_FALSE(c.error());
    auto s = col.stats();
    CHECK(s.failed_batches == 3);
    CHECK(s.batches == 4);
    CHECK(s.unique_events == 4);
}

TEST_CASE("retry_after_status answers every batch with Retry-After",
          "[integration][collector][faults]") {
    const std::string value =
        GENERATE(std::string("1"), std::string("Wed, 21 Oct 2015 07:28:00 GMT"));
    INFO(value);
    collector col(collector_config{.faults = {.retry_after_status = 429, .retry_after = value}});
    client c(col.port());
    for (int i = 0; i < 2; ++i) {
        auto r = c.post(make_batch(2, 1));
        REQUIRE_FALSE(c.error());
        CHECK(r.status == 429);
        REQUIRE(r.retry_after);
        CHECK(*r.retry_after == value);
    }
    // GET /stats is not throttled.
    auto st = c.request(http::verb::get, "/stats");
    CHECK(st.status == 200);
    CHECK_FALSE(st.retry_after);

    col.set_faults({});
    auto ok = c.post(make_batch(2, 1));
    CHECK(ok.status == 204);
    CHECK_FALSE(ok.retry_after);
    auto s = col.stats();
    CHECK(s.failed_batches == 2);
    CHECK(s.failed_events == 4);
    CHECK(s.batches == 1);
    CHECK(s.unique_events == 2);
    CHECK(s.duplicates == 0);
}

TEST_CASE("the script runs before retry_after_status", "[integration][collector][faults]") {
    collector col(collector_config{
        .faults = {.script = {503}, .retry_after_status = 429, .retry_after = "3"}});
    client c(col.port());
    auto r1 = c.post(make_batch(1, 1));
    CHECK(r1.status == 503);
    CHECK_FALSE(r1.retry_after);
    auto r2 = c.post(make_batch(1, 1));
    CHECK(r2.status == 429);
    CHECK(r2.retry_after == std::optional<std::string>("3"));
    REQUIRE_FALSE(c.error());
}

TEST_CASE("fail_every answers every Nth valid batch with fail_status",
          "[integration][collector][faults]") {
    collector col(collector_config{.faults = {.fail_every = 3, .fail_status = 503}});
    client c(col.port());
    std::vector<unsigned> statuses;
    for (unsigned i = 0; i < 7; ++i) {
        statuses.push_back(c.post(make_batch(2, 10 * i)).status);
        // Neither an invalid batch nor GET /stats counts towards fail_every.
        CHECK(c.post("{}").status == 400);
        CHECK(c.request(http::verb::get, "/stats").status == 200);
    }
    REQUIRE_FALSE(c.error());
    CHECK(statuses == std::vector<unsigned>{204, 204, 503, 204, 204, 503, 204});
    auto s = col.stats();
    CHECK(s.failed_batches == 2);
    CHECK(s.failed_events == 4);
    CHECK(s.batches == 5);
    CHECK(s.events == 10);
    CHECK(s.rejected == 7);

    // Counted over all connections; set_faults restarts the count; the script goes first.
    col.set_faults({.script = {500}, .fail_every = 2, .fail_status = 429});
    client d(col.port());
    CHECK(c.post(make_batch(1, 100)).status == 500);  // script
    CHECK(d.post(make_batch(1, 101)).status == 204);  // 1st counted
    CHECK(c.post(make_batch(1, 102)).status == 429);  // 2nd
    CHECK(d.post(make_batch(1, 103)).status == 204);  // 3rd
    CHECK(d.post(make_batch(1, 104)).status == 429);  // 4th
    REQUIRE_FALSE(c.error());
    REQUIRE_FALSE(d.error());
    CHECK(col.stats().failed_batches == 2 + 3);

    // A 2xx fail_status accepts the batch.
    col.set_faults({.fail_every = 1, .fail_status = 202});
    CHECK(c.post(make_batch(1, 200)).status == 202);
    CHECK(col.stats().failed_batches == 5);
    col.set_faults({});
    CHECK(c.post(make_batch(1, 201)).status == 204);
}

TEST_CASE("faults changed under concurrent load keep the accounting exact",
          "[integration][collector][faults]") {
    collector col(collector_config{.threads = 2});
    constexpr unsigned clients = 3, batches = 40;
    std::atomic<unsigned> ok{0}, failed{0}, other{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> threads;
    col.set_faults({.script = {503}});  // at least one failure, whatever the timing
    for (unsigned t = 0; t < clients; ++t) {
        threads.emplace_back([&, t] {
            client c(col.port());
            for (unsigned b = 0; b < batches; ++b) {
                auto r = c.post(make_batch(2, 1000 * t + 2 * b));
                if (c.error())
                    ++other;
                else if (r.status >= 200 && r.status < 300)
                    ++ok;
                else if (r.status == 503 || r.status == 429)
                    ++failed;
                else
                    ++other;
            }
        });
    }
    std::thread toggler([&] {
        wait_until([&] { return col.stats().failed_batches > 0; }, 5s);
        for (unsigned i = 0; !done; ++i) {
            switch (i % 3) {
                case 0:
                    col.set_faults({.script = {503, 503, 503}});
                    break;
                case 1:
                    col.set_faults({.retry_after_status = 429, .retry_after = "1"});
                    break;
                default:
                    col.set_faults({});
            }
            std::this_thread::sleep_for(1ms);
        }
    });
    for (auto& th : threads)
        th.join();
    done = true;
    toggler.join();

    CHECK(other == 0);
    CHECK(failed > 0);
    CHECK(ok + failed == clients * batches);
    auto s = col.stats();
    CHECK(s.requests == clients * batches);
    CHECK(s.batches == ok);
    CHECK(s.failed_batches == failed);
    CHECK(s.events == 2 * ok);
    CHECK(s.failed_events == 2 * failed);
    CHECK(s.unique_events + s.duplicates == s.events);
}

TEST_CASE("invalid faults are refused with a clear error", "[integration][collector][faults]") {
    collector_faults bad =
        GENERATE(collector_faults{.script = {99}}, collector_faults{.script = {200, 600}},
                 collector_faults{.script = {503}, .script_retry_after = {"1", "2"}},
                 collector_faults{.script = {503}, .script_retry_after = {"1\r\nX: y"}},
                 collector_faults{.retry_after_status = 1000},
                 collector_faults{.retry_after_status = 429, .retry_after = "1\n"},
                 collector_faults{.fail_every = 2, .fail_status = 99},
                 collector_faults{.fail_every = 1, .fail_status = 600});
    CHECK_THROWS_AS(collector(collector_config{.faults = bad}), boost::system::system_error);

    collector col(collector_config{.faults = {.script = {500}}});
    try {
        col.set_faults(bad);
        FAIL("set_faults accepted invalid faults");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == evdispatch::error::invalid_config);
        CHECK(std::string(e.what()).find("collector_faults::") != std::string::npos);
    }
    CHECK(col.faults().script == std::vector<unsigned>{500});  // unchanged
    CHECK(client(col.port()).post(make_batch(1, 1)).status == 500);
}

// ---------------------------------------------------------------------------------------------
// Stall, reset, lost responses

TEST_CASE("stall reads the request and never answers until stop()",
          "[integration][collector][faults]") {
    auto col = std::make_unique<collector>(collector_config{.faults = {.stall = true}});
    const unsigned short port = col->port();

    client c(port, std::nullopt, 300ms);
    REQUIRE_FALSE(c.error());
    auto t0 = std::chrono::steady_clock::now();
    auto r = c.post(make_batch(2, 1));
    CHECK(c.error() == beast::error::timeout);
    CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
    CHECK(r.status == 0);

    // GET /stats is still answered, on a new connection.
    client watcher(port);
    CHECK(watcher.request(http::verb::get, "/stats").status == 200);
    auto s = col->stats();
    CHECK(s.stalled == 1);
    CHECK(s.requests == 2);
    CHECK(s.batches == 0);
    CHECK(s.events == 0);

    // A second stalled request is released by stop(): disconnected, not answered, not timed out.
    client waiting(port);
    waiting.send(http::verb::post, "/v1/events", make_batch(1, 5));
    REQUIRE(wait_until([&] { return col->stats().stalled == 2; }, 5s));
    col->stop();
    auto released = waiting.read();
    INFO(waiting.error().message());
    CHECK(closed_or_reset(waiting.error()));
    CHECK(released.status == 0);
    CHECK(col->stats().batches == 0);
}

TEST_CASE("reset_mid_request resets the connection after the request headers",
          "[integration][collector][faults]") {
    collector col(collector_config{.faults = {.reset_mid_request = true}});

    SECTION("a complete request") {
        client c(col.port());
        auto r = c.post(make_batch(2, 1));
        INFO(c.error().message());
        CHECK(c.error() == asio::error::connection_reset);
        CHECK(r.status == 0);
    }
    SECTION("headers and only part of a large body: reset without waiting for the rest") {
        client c(col.port(), std::nullopt, 3s);
        c.send_raw(
            "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
            "{\"account_id\":");
        REQUIRE_FALSE(c.error());
        auto r = c.read();
        INFO(c.error().message());
        CHECK(c.error() == asio::error::connection_reset);  // not a timeout
        CHECK(r.status == 0);
    }
    auto s = col.stats();
    CHECK(s.resets == 1);
    CHECK(s.requests == 1);
    CHECK(s.batches == 0);
    CHECK(s.events == 0);
    // Not for GET /stats.
    client w(col.port());
    CHECK(w.request(http::verb::get, "/stats").status == 200);
    CHECK(col.stats().resets == 1);
}

TEST_CASE("accept_then_drop_response counts the batch and closes without answering",
          "[integration][collector][faults]") {
    collector col(collector_config{.faults = {.accept_then_drop_response = true}});
    const std::string body = make_batch(3, 1);
    client c(col.port());
    auto r = c.post(body);
    INFO(c.error().message());
    CHECK(c.error() == http::error::end_of_stream);  // closed with no response at all
    CHECK(r.status == 0);
    auto s = col.stats();
    CHECK(s.dropped_responses == 1);
    CHECK(s.batches == 1);
    CHECK(s.events == 3);
    CHECK(s.unique_events == 3);
    CHECK(s.bytes == body.size());

    // The client retries the "lost" batch: the collector sees duplicates.
    col.set_faults({});
    client retry(col.port());
    CHECK(retry.post(body).status == 204);
    s = col.stats();
    CHECK(s.batches == 2);
    CHECK(s.events == 6);
    CHECK(s.unique_events == 3);
    CHECK(s.duplicates == 3);
    CHECK(s.dropped_responses == 1);
}

// ---------------------------------------------------------------------------------------------
// Connection lifetime

TEST_CASE("close_after_response closes after each response", "[integration][collector][faults]") {
    collector col(collector_config{.faults = {.close_after_response = true}});
    for (int i = 0; i < 2; ++i) {
        client c(col.port());
        auto r = i == 0 ? c.post(make_batch(1, 1)) : c.request(http::verb::get, "/stats");
        REQUIRE_FALSE(c.error());
        CHECK(r.status == (i == 0 ? 204u : 200u));
        CHECK_FALSE(r.keep_alive);
        CHECK(c.read_until_closed() == asio::error::eof);
    }
    // A client that asks to close itself is not counted as closed by the fault.
    client c(col.port());
    auto r = c.request(http::verb::post, "/v1/events", make_batch(1, 2), false);
    CHECK(r.status == 204);
    CHECK_FALSE(r.keep_alive);
    auto s = col.stats();
    CHECK(s.fault_closes == 2);
    CHECK(s.connections == 3);
    CHECK(s.batches == 2);

    col.set_faults({});
    client k(col.port());
    CHECK(k.post(make_batch(1, 3)).keep_alive);
    CHECK(k.post(make_batch(1, 4)).keep_alive);
    CHECK(col.stats().fault_closes == 2);
}

TEST_CASE("max_requests_per_connection closes after N responses",
          "[integration][collector][faults]") {
    collector col(collector_config{.faults = {.max_requests_per_connection = 3}});
    for (unsigned conn = 0; conn < 2; ++conn) {
        client c(col.port());
        for (unsigned i = 1; i <= 3; ++i) {
            auto r = c.post(make_batch(1, 10 * conn + i));
            REQUIRE_FALSE(c.error());
            CHECK(r.status == 204);
            CHECK(r.keep_alive == (i < 3));  // Connection: close on the 3rd
        }
        CHECK(c.read_until_closed() == asio::error::eof);
    }
    auto s = col.stats();
    CHECK(s.connections == 2);
    CHECK(s.batches == 6);
    CHECK(s.fault_closes == 2);
}

TEST_CASE("pause_listening refuses connections; resume_listening accepts on the same port",
          "[integration][collector][faults]") {
    collector col;
    const unsigned short port = col.port();
    client kept(port);
    REQUIRE(kept.post(make_batch(1, 1)).status == 204);
    REQUIRE(kept.post(make_batch(1, 2)).keep_alive);

    col.pause_listening();
    col.pause_listening();  // idempotent
    CHECK(col.port() == port);
    client refused(port);
    CHECK(refused.error() == asio::error::connection_refused);
    // Open connections were closed.
    auto closed = kept.read_until_closed();
    INFO(closed.message());
    CHECK(closed_or_reset(closed));

    SECTION("resume on the same port") {
        col.resume_listening();
        col.resume_listening();  // idempotent
        CHECK(col.port() == port);
        client again(port);
        REQUIRE_FALSE(again.error());
        CHECK(again.post(make_batch(1, 3)).status == 204);
        auto s = col.stats();
        CHECK(s.connections == 2);
        CHECK(s.batches == 3);
        // And pause again, then stop and destroy while paused.
        col.pause_listening();
        CHECK(client(port).error() == asio::error::connection_refused);
    }
    SECTION("resume fails while the port is taken, then succeeds") {
        asio::io_context io;
        tcp::acceptor squatter(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        CHECK_THROWS_AS(col.resume_listening(), boost::system::system_error);
        squatter.close();
        col.resume_listening();
        CHECK(client(port).post(make_batch(1, 3)).status == 204);
    }
    SECTION("a stalled request is released by pause") {
        col.resume_listening();
        col.set_faults({.stall = true});
        client waiting(port);
        waiting.send(http::verb::post, "/v1/events", make_batch(1, 9));
        REQUIRE(wait_until([&] { return col.stats().stalled == 1; }, 5s));
        col.pause_listening();
        waiting.read();
        INFO(waiting.error().message());
        CHECK(closed_or_reset(waiting.error()));
    }
    col.stop();
    col.pause_listening();  // no-ops after stop
    col.resume_listening();
    CHECK(client(port).error() == asio::error::connection_refused);
}

// ---------------------------------------------------------------------------------------------
// TLS

TEST_CASE("collector serves HTTPS to a client that verifies it",
          "[integration][collector][faults][tls]") {
    const auto& certs = shared_tls_certs();
    collector col(tls_config(certs.server));
    CHECK(col.uses_tls());
    CHECK(col.url() == "https://localhost:" + std::to_string(col.port()) + "/v1/events");

    const std::string host = GENERATE(std::string("localhost"), std::string("127.0.0.1"));
    INFO(host);
    client c(col.port(), trusted(host));
    INFO(c.error().message());
    REQUIRE_FALSE(c.error());
    CHECK(c.verify_result() == X509_V_OK);
    auto r = c.post(make_batch(2, 1));
    REQUIRE_FALSE(c.error());
    CHECK(r.status == 204);
    CHECK(r.keep_alive);
    CHECK(c.post(make_batch(2, 1)).status == 204);  // keep-alive over TLS
    auto s = col.stats();
    CHECK(s.tls_handshakes == 1);
    CHECK(s.tls_handshake_failures == 0);
    CHECK(s.connections == 1);
    CHECK(s.batches == 2);
    CHECK(s.duplicates == 2);

    // Plain HTTP to the HTTPS port: no answer, a handshake failure, the server goes on.
    client plain(col.port(), std::nullopt, 2s);
    auto pr = plain.post(make_batch(1, 7));
    CHECK(pr.status == 0);
    CHECK(wait_until([&] { return col.stats().tls_handshake_failures == 1; }, 5s));
    CHECK(client(col.port(), trusted(host)).post(make_batch(1, 8)).status == 204);
    CHECK(col.stats().batches == 3);
}

TEST_CASE("TLS clients refuse certificates they must not trust",
          "[integration][collector][faults][tls]") {
    const auto& certs = shared_tls_certs();
    struct bad_case {
        const char* name;
        const evdispatch::test::cert_files* cert;
        long expected;
        std::optional<tls_options> accepting;  // a client that does trust this certificate
    };
    auto bc = GENERATE_REF(
        bad_case{"wrong host name", &certs.wrong_name, X509_V_ERR_HOSTNAME_MISMATCH,
                 tls_options{certs.ca.cert, "wrong.example"}},
        bad_case{"CA the client does not trust", &certs.untrusted,
                 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                 tls_options{certs.other_ca.cert, "localhost"}},
        bad_case{"expired", &certs.expired, X509_V_ERR_CERT_HAS_EXPIRED, std::nullopt});
    INFO(bc.name);
    collector col(tls_config(*bc.cert));

    client c(col.port(), trusted("localhost"));
    INFO(c.error().message());
    CHECK(c.error().category() == asio::error::get_ssl_category());
    CHECK(c.verify_result() == bc.expected);
    // The server saw the client's refusal; it counts it and keeps serving.
    CHECK(wait_until([&] { return col.stats().tls_handshake_failures == 1; }, 5s));
    auto s = col.stats();
    CHECK(s.tls_handshakes == 0);
    CHECK(s.requests == 0);
    CHECK(s.batches == 0);

    for (int i = 0; i < 3; ++i)
        CHECK(client(col.port(), trusted("localhost")).error());
    CHECK(wait_until([&] { return col.stats().tls_handshake_failures == 4; }, 5s));
    CHECK(col.stats().connections == 4);
    if (bc.accepting) {
        // The failures left the collector working: a client that trusts this certificate
        // gets its batch through.
        client ok(col.port(), bc.accepting);
        INFO(ok.error().message());
        REQUIRE_FALSE(ok.error());
        CHECK(ok.post(make_batch(1, 1)).status == 204);
        CHECK(col.stats().tls_handshakes == 1);
        CHECK(col.stats().tls_handshake_failures == 4);
    }
}

TEST_CASE("faults work over TLS", "[integration][collector][faults][tls]") {
    const auto& certs = shared_tls_certs();
    auto cfg = tls_config(certs.server);
    cfg.faults.script = {503};
    collector col(cfg);
    client c(col.port(), trusted());
    REQUIRE_FALSE(c.error());
    CHECK(c.post(make_batch(1, 1)).status == 503);
    CHECK(c.post(make_batch(1, 1)).status == 204);

    col.set_faults({.close_after_response = true});
    auto r = c.post(make_batch(1, 2));
    CHECK(r.status == 204);
    CHECK_FALSE(r.keep_alive);
    CHECK(c.read_until_closed() == asio::error::eof);  // close_notify, then FIN

    col.set_faults({.accept_then_drop_response = true});
    client d(col.port(), trusted());
    d.post(make_batch(1, 3));
    CHECK(d.error() == http::error::end_of_stream);

    col.set_faults({.reset_mid_request = true});
    client e(col.port(), trusted());
    e.post(make_batch(1, 4));
    INFO(e.error().message());
    CHECK(e.error() == asio::error::connection_reset);

    auto s = col.stats();
    CHECK(s.tls_handshakes == 3);
    CHECK(s.tls_handshake_failures == 0);
    CHECK(s.failed_batches == 1);
    CHECK(s.batches == 3);
    CHECK(s.dropped_responses == 1);
    CHECK(s.resets == 1);
    CHECK(s.fault_closes == 1);
}

TEST_CASE("TLS configuration errors throw", "[integration][collector][faults][tls]") {
    const auto& certs = shared_tls_certs();
    auto expect_throw = [](const collector_config& cfg, const std::string& needle) {
        try {
            collector col(cfg);
            FAIL("collector accepted a broken TLS configuration");
        } catch (const boost::system::system_error& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    collector_config only_cert;
    only_cert.tls_cert_file = certs.server.cert;
    expect_throw(only_cert, "set together");
    collector_config missing = tls_config(certs.server);
    missing.tls_cert_file = certs.dir() + "/nope.crt";
    expect_throw(missing, "nope.crt");
    collector_config mismatch = tls_config(certs.server);
    mismatch.tls_key_file = certs.wrong_name.key;
    expect_throw(mismatch, certs.wrong_name.key);
    collector_config key_as_cert = tls_config(certs.server);
    key_as_cert.tls_cert_file = certs.server.key;
    expect_throw(key_as_cert, "tls_cert_file");
}

TEST_CASE("url() uses url_host and the scheme", "[integration][collector][faults]") {
    collector plain;
    CHECK(plain.url() == "http://127.0.0.1:" + std::to_string(plain.port()) + "/v1/events");
    collector named(collector_config{.url_host = "localhost"});
    CHECK(named.url() == "http://localhost:" + std::to_string(named.port()) + "/v1/events");
    collector v6(collector_config{.url_host = "::1"});
    CHECK(v6.url() == "http://[::1]:" + std::to_string(v6.port()) + "/v1/events");
    auto cfg = tls_config(shared_tls_certs().server);
    cfg.url_host.clear();
    collector tls(cfg);
    CHECK(tls.url() == "https://127.0.0.1:" + std::to_string(tls.port()) + "/v1/events");
}

// ---------------------------------------------------------------------------------------------
// Outages: down_after + down_for, refuse_for

namespace {

// Whether a connection to `port` on 127.0.0.1 is accepted now.
bool accepts(unsigned short port) {
    return !client(port).error();
}

}  // namespace

TEST_CASE("down_after: the Nth request is answered, then the collector is gone for down_for",
          "[integration][collector][faults][outage]") {
    constexpr auto down_for = 3s;
    collector col(collector_config{.faults = {.down_after = 3, .down_for = down_for}});
    const unsigned short port = col.port();
    client idle(port);
    REQUIRE(idle.post(make_batch(1, 1)).status == 204);  // request 1; the connection stays open
    client c(port);
    REQUIRE(c.request(http::verb::get, "/stats").status == 200);  // request 2: any kind counts

    auto third = c.post(make_batch(1, 2));  // request 3: answered, and the outage has begun
    const auto answered = std::chrono::steady_clock::now();
    REQUIRE_FALSE(c.error());
    CHECK(third.status == 204);
    CHECK_FALSE(third.keep_alive);
    const auto refused = client(port).error();
    // (Guard against a host that stalled us past the whole outage: then it may be over.)
    if (std::chrono::steady_clock::now() - answered < down_for) {
        INFO(refused.message());
        CHECK(refused == asio::error::connection_refused);
    }
    // The connection that was open was dropped, and so is the one that began the outage.
    auto dropped = idle.read_until_closed();
    INFO(dropped.message());
    CHECK(closed_or_reset(dropped));
    CHECK(closed_or_reset(c.read_until_closed()));
    auto during = col.stats();
    CHECK(during.outages == 1);
    CHECK(during.requests == 3);
    CHECK(during.batches == 2);

    // Then the same port accepts again, and there is no second outage.
    REQUIRE(wait_until([&] { return accepts(port); }, 30s));
    CHECK(col.port() == port);
    client again(port);
    for (unsigned i = 0; i < 5; ++i)
        CHECK(again.post(make_batch(1, 10 + i)).status == 204);
    REQUIRE_FALSE(again.error());
    auto s = col.stats();
    CHECK(s.outages == 1);
    CHECK(s.down_ms >= std::chrono::milliseconds(down_for).count());  // it lasted down_for at least
    CHECK(s.batches == 7);
    CHECK(s.unique_events == 7);
}

TEST_CASE("down_after: requests read while going down are not answered",
          "[integration][collector][faults][outage]") {
    // Two requests pipelined on one connection: the first begins the outage and is answered,
    // the second (already read, or read before the connection closes) is not.
    collector col(collector_config{.faults = {.down_after = 1, .down_for = 60s}});
    client c(col.port());
    c.send(http::verb::post, "/v1/events", make_batch(1, 1));
    c.send(http::verb::post, "/v1/events", make_batch(1, 2));
    REQUIRE_FALSE(c.error());
    auto first = c.read();
    CHECK(first.status == 204);
    CHECK_FALSE(first.keep_alive);
    c.read();
    CHECK(c.error());  // closed, not answered
    auto s = col.stats();
    CHECK(s.batches == 1);
    CHECK(s.unique_events == 1);
    CHECK(s.outages == 1);
    // set_faults ends the outage at once.
    col.set_faults({});
    CHECK(accepts(col.port()));
    CHECK(client(col.port()).post(make_batch(1, 2)).status == 204);
}

TEST_CASE("refuse_for: refused from the start, then the same port accepts",
          "[integration][collector][faults][outage]") {
    constexpr auto refuse_for = 2s;
    const auto before = std::chrono::steady_clock::now();
    collector col(collector_config{.faults = {.refuse_for = refuse_for}});
    const unsigned short port = col.port();
    REQUIRE(port != 0);
    const auto refused = client(port).error();
    if (std::chrono::steady_clock::now() - before < refuse_for) {
        INFO(refused.message());
        CHECK(refused == asio::error::connection_refused);
    }
    CHECK(col.stats().outages == 1);
    REQUIRE(wait_until([&] { return accepts(port); }, 30s));
    CHECK(client(port).post(make_batch(2, 1)).status == 204);
    auto s = col.stats();
    CHECK(s.outages == 1);
    CHECK(s.down_ms >= std::chrono::milliseconds(refuse_for).count());
    CHECK(s.batches == 1);
}

TEST_CASE("refuse_for set at run time drops open connections and refuses until it is over",
          "[integration][collector][faults][outage]") {
    collector col;
    const unsigned short port = col.port();
    client kept(port);
    REQUIRE(kept.post(make_batch(1, 1)).status == 204);

    SECTION("until refuse_for is over") {
        constexpr auto refuse_for = 2s;
        const auto before = std::chrono::steady_clock::now();
        col.set_faults({.refuse_for = refuse_for});
        const auto refused = client(port).error();
        if (std::chrono::steady_clock::now() - before < refuse_for) {
            INFO(refused.message());
            CHECK(refused == asio::error::connection_refused);
        }
        auto dropped = kept.read_until_closed();
        INFO(dropped.message());
        CHECK(closed_or_reset(dropped));
        REQUIRE(wait_until([&] { return accepts(port); }, 30s));
        CHECK(client(port).post(make_batch(1, 2)).status == 204);
        CHECK(col.stats().down_ms >= std::chrono::milliseconds(refuse_for).count());
    }
    SECTION("set_faults ends it early") {
        col.set_faults({.refuse_for = 60s});
        CHECK(client(port).error() == asio::error::connection_refused);
        CHECK(closed_or_reset(kept.read_until_closed()));
        col.set_faults({});
        CHECK(accepts(port));
    }
    SECTION("a new refuse_for starts a new outage") {
        col.set_faults({.refuse_for = 60s});
        col.set_faults({.refuse_for = 60s});
        CHECK(client(port).error() == asio::error::connection_refused);
        CHECK(col.stats().outages == 2);
        col.set_faults({});
        CHECK(accepts(port));
    }
    SECTION("pause_listening during an outage stays paused after it") {
        col.set_faults({.refuse_for = 60s});
        col.pause_listening();
        col.set_faults({});  // the outage is over, the pause is not
        CHECK(client(port).error() == asio::error::connection_refused);
        col.set_faults({.refuse_for = 60s});
        col.resume_listening();  // the pause is over, the outage is not
        CHECK(client(port).error() == asio::error::connection_refused);
        col.set_faults({});
        CHECK(accepts(port));
    }
    CHECK(col.stats().outages >= 1);
    col.stop();  // during or after an outage
    CHECK(client(port).error() == asio::error::connection_refused);
}

TEST_CASE("a processor loses nothing across a down_after outage and delivers after it",
          "[integration][collector][faults][outage][health]") {
    constexpr auto down_for = 2s;
    collector col(collector_config{.faults = {.down_after = 5, .down_for = down_for}});
    evdispatch::processor_config cfg;  // default health settings
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 10;
    cfg.batch.flush_interval = 50ms;
    evdispatch::batch_event_processor p(cfg);
    evdispatch::event_builder b(evdispatch::test::make_context(cfg.endpoint));

    // 1200 events in bursts of 10 every 25 ms (about 3 s): the collector goes away after its
    // 5th request, early in the run, and comes back while events still arrive.
    constexpr std::uint64_t n = 1200;
    std::uint64_t refused = 0;
    auto next = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < n; ++i) {
        if (i % 10 == 0) {
            next += 25ms;
            std::this_thread::sleep_until(next);
        }
        if (p.process(evdispatch::test::make_impression(b, i)) !=
            evdispatch::process_result::accepted)
            ++refused;
    }
    REQUIRE(wait_until([&] { return p.metrics().delivered == n; }, 60s));
    auto [ec, r] = evdispatch::test::close_and_wait(p, 30s);
    CHECK_FALSE(ec);
    CHECK(refused == 0);
    CHECK(r.metrics.dropped_total() == 0);
    CHECK(r.delivered == n);
    CHECK(r.metrics.balanced());
    CHECK(r.metrics.outages >= 1);  // the processor saw the endpoint go down
    const auto s = col.stats();
    CHECK(s.outages == 1);
    CHECK(s.down_ms >= std::chrono::milliseconds(down_for).count());
    // Every event arrived once, or again as a duplicate the collector recognised by uuid (a
    // response lost when the connections were dropped).
    CHECK(s.unique_events == n);
    CHECK(s.events == s.unique_events + s.duplicates);
}
