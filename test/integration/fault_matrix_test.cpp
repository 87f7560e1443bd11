// The fault matrix: a fixed load through every collector fault, over HTTP and HTTPS, with the
// accounting and de-duplication checked for each.

#include "support/fixtures.hpp"
#include "support/loopback_resolver.hpp"
#include "support/tls_certs.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;

namespace {

enum class outcome { all_delivered, all_rejected_4xx, all_tls_verify_failed };

struct fault_row {
    const char* name;
    collector_faults faults;
    /// The collector waits this long before each response (collector_config::delay).
    std::chrono::milliseconds delay{0};
    /// Faults are cleared this long after the load starts (0: they stay), and not before
    /// `seen` says the fault has acted (so slow runs, e.g. under sanitizers, still see it).
    std::chrono::milliseconds clear_after{0};
    outcome expect = outcome::all_delivered;
    bool expect_duplicates = false;
    bool pause_listening = false;  // stop listening at the start, come back at clear_after
    /// The certificate the HTTPS collector serves.
    test::cert_files test::tls_certs::*server_cert = &test::tls_certs::server;
    std::function<bool(const collector_stats&)> seen;
};

std::vector<fault_row> fault_rows() {
    return {
        {.name = "no fault"},
        {.name = "5xx then success", .faults = {.script = {500, 503, 502, 500, 503}}},
        {.name = "429 with Retry-After",
         .faults = {.script = {429, 429}, .script_retry_after = {"1", "1"}}},
        {.name = "slow responses", .delay = 20ms},
        {.name = "stall, then recover",
         .faults = {.stall = true},
         .clear_after = 700ms,
         .seen = [](const collector_stats& s) { return s.stalled >= 1; }},
        {.name = "reset mid-request, then recover",
         .faults = {.reset_mid_request = true},
         .clear_after = 300ms,
         .seen = [](const collector_stats& s) { return s.resets >= 3; }},
        {.name = "close after each response", .faults = {.close_after_response = true}},
        {.name = "3 requests per connection", .faults = {.max_requests_per_connection = 3}},
        {.name = "response lost after accept, then recover",
         .faults = {.accept_then_drop_response = true},
         .clear_after = 300ms,
         .expect_duplicates = true,
         .seen = [](const collector_stats& s) { return s.dropped_responses >= 3; }},
        {.name = "stop listening, come back", .clear_after = 800ms, .pause_listening = true},
        {.name = "permanent 400",
         .faults = {.retry_after_status = 400},
         .expect = outcome::all_rejected_4xx},
    };
}

/// Rows of the HTTPS matrix only: certificates the client must refuse.
std::vector<fault_row> certificate_rows() {
    return {
        {.name = "certificate for another name",
         .expect = outcome::all_tls_verify_failed,
         .server_cert = &test::tls_certs::wrong_name},
        {.name = "certificate from an untrusted CA",
         .expect = outcome::all_tls_verify_failed,
         .server_cert = &test::tls_certs::untrusted},
        {.name = "expired certificate",
         .expect = outcome::all_tls_verify_failed,
         .server_cert = &test::tls_certs::expired},
    };
}

struct run_totals {
    boost::system::error_code close_ec;
    metrics_snapshot m;
    collector_stats s;
    std::uint64_t accepted = 0;
};

run_totals run_load(collector& col, const fault_row& row, const std::string& url,
                    const std::string& ca_file, std::shared_ptr<host_resolver> resolver) {
    processor_config cfg;
    cfg.endpoint = url;
    cfg.queue_capacity = 30'000;
    cfg.batch.batch_size = 50;
    cfg.batch.flush_interval = 50ms;
    cfg.http.connect_timeout = 500ms;
    cfg.http.request_timeout = 3s;  // a timeout after the server accepted would duplicate
    cfg.tls.ca_file = ca_file;
    cfg.retry.max_attempts = 60;
    cfg.retry.base_backoff = 20ms;
    cfg.retry.max_backoff = 200ms;
    cfg.retry.max_retry_time = 60s;
    batch_event_processor p(cfg, {.resolver = std::move(resolver)});
    event_builder b(test::make_context(url));

    if (row.pause_listening)
        col.pause_listening();
    col.set_faults(row.faults);
    std::thread clearer;
    if (row.clear_after.count() > 0) {
        clearer = std::thread([&] {
            std::this_thread::sleep_for(row.clear_after);
            const auto limit = std::chrono::steady_clock::now() + 30s;
            while (row.seen && !row.seen(col.stats()) && std::chrono::steady_clock::now() < limit)
                std::this_thread::sleep_for(5ms);
            col.set_faults({});
            if (row.pause_listening)
                col.resume_listening();
        });
    }
    constexpr int producers = 4;
    constexpr int per = 5'000;
    std::atomic<std::uint64_t> accepted{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < producers; ++t)
        ts.emplace_back([&, t] {
            for (int i = 0; i < per; ++i)
                if (p.process(test::make_impression(b, std::uint64_t(t) * per + i)) ==
                    process_result::accepted)
                    ++accepted;
        });
    for (auto& t : ts)
        t.join();
    auto [ec, report] = test::close_and_wait(p, 60s);
    if (clearer.joinable())
        clearer.join();
    return {ec, report.metrics, col.stats(), accepted.load()};
}

void check_row(const fault_row& row, const run_totals& r) {
    const auto& m = r.m;
    INFO("row: " << row.name);
    for (auto reason : all_drop_reasons)
        if (m.dropped_for(reason))
            INFO("dropped " << to_string(reason) << " " << m.dropped_for(reason));
    // Nothing lost without a reason.
    CHECK(m.accepted == r.accepted);
    CHECK(m.pending == 0);
    CHECK(m.balanced());
    CHECK(m.accepted == m.delivered + m.dropped_after_accept());
    CHECK(r.accepted == 20'000);  // the ring is large enough: nothing refused
    // Every row settles its events (delivered or dropped) well before the close deadline.
    CHECK_FALSE(r.close_ec);
    switch (row.expect) {
        case outcome::all_delivered:
            CHECK(m.delivered == m.accepted);
            // Every delivered event reached the collector exactly once as a unique event.
            CHECK(r.s.unique_events == m.delivered);
            break;
        case outcome::all_rejected_4xx:
            CHECK(m.delivered == 0);
            CHECK(m.dropped_for(drop_reason::rejected_4xx) == m.accepted);
            CHECK(m.retries == 0);  // a permanent 4xx is not retried
            CHECK(r.s.unique_events == 0);
            break;
        case outcome::all_tls_verify_failed:
            CHECK(m.delivered == 0);
            CHECK(m.dropped_for(drop_reason::tls_verify_failed) == m.accepted);
            CHECK(r.s.requests == 0);  // not one byte of a batch reached the server
            break;
    }
    if (row.expect_duplicates) {
        CHECK(r.s.dropped_responses > 0);
        CHECK(r.s.duplicates > 0);  // re-sent events recognised by their uuid
        CHECK(r.s.events == r.s.unique_events + r.s.duplicates);
    } else {
        CHECK(r.s.duplicates == 0);
    }
}

void run_matrix(bool tls) {
    const auto& certs = test::shared_tls_certs();
    auto rows = fault_rows();
    if (tls) {
        auto more = certificate_rows();
        rows.insert(rows.end(), more.begin(), more.end());
    }
    for (const auto& row : rows) {
        DYNAMIC_SECTION((tls ? "https: " : "http: ") << row.name) {
            collector_config cc;
            cc.delay = row.delay;
            if (tls) {
                const test::cert_files& c = certs.*row.server_cert;
                cc.tls_cert_file = c.cert;
                cc.tls_key_file = c.key;
                cc.url_host = "localhost";
            }
            collector col(cc);
            // https://localhost: resolved by the test, not by the machine's hosts file or DNS.
            auto resolver = std::make_shared<test::loopback_resolver>();
            const auto r = run_load(col, row, col.url(), tls ? certs.ca.cert : "", resolver);
            check_row(row, r);
            if (tls)
                CHECK(resolver->calls() >= 1);
        }
    }
}

}  // namespace

TEST_CASE("fault matrix over HTTP", "[integration][faults][matrix]") {
    run_matrix(false);
}

TEST_CASE("fault matrix over HTTPS", "[integration][faults][matrix][tls]") {
    run_matrix(true);
}

TEST_CASE("TLS: verification failure names the cause; insecure mode is explicit",
          "[integration][tls]") {
    const auto& certs = test::shared_tls_certs();
    collector col(collector_config{.tls_cert_file = certs.wrong_name.cert,
                                   .tls_key_file = certs.wrong_name.key,
                                   .url_host = "localhost"});
    std::string message;
    drop_reason reason{};
    std::mutex mu;
    // https://localhost: resolved by the test; the certificate is still checked for "localhost".
    auto resolver = std::make_shared<test::loopback_resolver>();
    processor_hooks hooks;
    hooks.on_batch_result = [&](const batch_result& r) {
        std::lock_guard lk(mu);
        message = std::string(r.message);
        reason = r.reason;
    };
    hooks.resolver = resolver;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.tls.ca_file = certs.ca.cert;
    {
        batch_event_processor p(cfg, hooks);
        event_builder b(test::make_context(col.url()));
        p.process(test::make_impression(b, 1));
        auto [ec, r] = test::close_and_wait(p, 5s);
        CHECK_FALSE(ec);  // dropped for its reason, not by the deadline
        CHECK(r.dropped[std::size_t(drop_reason::tls_verify_failed)] == 1);
        std::lock_guard lk(mu);
        CHECK(reason == drop_reason::tls_verify_failed);
        CHECK_THAT(message, Catch::Contains("hostname mismatch"));
        CHECK(col.stats().requests == 0);
    }
    // Explicitly insecure: delivered despite the wrong name (tests against self-signed servers).
    cfg.tls.insecure_skip_verify = true;
    cfg.tls.ca_file.clear();
    batch_event_processor p(cfg, {.resolver = resolver});
    event_builder b(test::make_context(col.url()));
    p.process(test::make_impression(b, 2));
    auto [ec, r] = test::close_and_wait(p, 5s);
    CHECK_FALSE(ec);
    CHECK(r.delivered == 1);
    // Both processors resolved "localhost" through the test's resolver, and nothing else.
    const auto asked = resolver->hosts();
    CHECK(asked.size() >= 2);
    CHECK(std::count(asked.begin(), asked.end(), "localhost") == std::ptrdiff_t(asked.size()));
}

TEST_CASE("TLS: one handshake per connection, not per batch", "[integration][tls]") {
    const auto& certs = test::shared_tls_certs();
    collector col(collector_config{.tls_cert_file = certs.server.cert,
                                   .tls_key_file = certs.server.key,
                                   .url_host = "localhost"});
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.tls.ca_file = certs.ca.cert;
    cfg.batch.batch_size = 10;
    cfg.http.max_connections = 2;
    auto resolver = std::make_shared<test::loopback_resolver>();
    batch_event_processor p(cfg, {.resolver = resolver});
    event_builder b(test::make_context(col.url()));
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 200; ++i)
            p.process(test::make_impression(b, round * 200 + i));
        p.async_flush(boost::asio::use_future).get();
    }
    auto [ec, r] = test::close_and_wait(p, 5s);
    CHECK_FALSE(ec);
    CHECK(resolver->calls() >= 1);
    CHECK(r.delivered == 1000);
    CHECK(r.metrics.batches_delivered == 100);
    CHECK(col.stats().tls_handshakes <= 2);
    CHECK(r.metrics.connections_opened <= 2);
}

TEST_CASE("an idle keep-alive connection closed by the server is replaced without an attempt",
          "[integration][faults]") {
    collector col;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 5;
    cfg.http.max_connections = 1;
    cfg.retry.max_attempts = 1;  // a spent attempt would drop the batch
    batch_event_processor p(cfg);
    event_builder b(test::make_context(col.url()));
    for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 5; ++i)
            p.process(test::make_impression(b, round * 5 + i));
        p.async_flush(boost::asio::use_future).get();
        // The server drops every connection (our idle keep-alive one included) and comes back.
        col.pause_listening();
        col.resume_listening();
    }
    auto [ec, r] = test::close_and_wait(p, 5s);
    CHECK_FALSE(ec);
    CHECK(r.delivered == 20);
    CHECK(r.metrics.retries == 0);
    CHECK(r.metrics.connections_opened == 4);
    CHECK(col.stats().unique_events == 20);
}
