// The fault matrix: a fixed load through every collector fault, over HTTP and HTTPS, with the
// accounting and de-duplication checked for each.

#include "support/fixtures.hpp"
#include "support/tls_certs.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/use_future.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;

namespace {

enum class outcome { all_delivered, all_rejected_4xx, all_tls_verify_failed };

struct fault_row {
    const char* name;
    collector_faults faults;
    /// Faults are cleared this long after the load starts (0: they stay), and not before
    /// `seen` says the fault has acted (so slow runs, e.g. under sanitizers, still see it).
    std::chrono::milliseconds clear_after{0};
    outcome expect = outcome::all_delivered;
    bool expect_duplicates = false;
    bool pause_listening = false;        // stop listening at the start, come back at clear_after
    const char* server_cert = "server";  // which certificate the HTTPS collector serves
    std::function<bool(const collector_stats&)> seen;
};

std::vector<fault_row> fault_rows() {
    std::vector<fault_row> rows;
    rows.push_back({"no fault", {}});
    {
        collector_faults f;
        f.script = {500, 503, 502, 500, 503};
        rows.push_back({"5xx then success", f});
    }
    {
        collector_faults f;
        f.script = {429, 429};
        f.script_retry_after = {"1", "1"};
        rows.push_back({"429 with Retry-After", f});
    }
    rows.push_back({"slow responses", {}});  // delay set below
    {
        collector_faults f;
        f.stall = true;
        rows.push_back({"stall, then recover", f, 700ms});
        rows.back().seen = [](const collector_stats& s) { return s.stalled >= 1; };
    }
    {
        collector_faults f;
        f.reset_mid_request = true;
        rows.push_back({"reset mid-request, then recover", f, 300ms});
        rows.back().seen = [](const collector_stats& s) { return s.resets >= 3; };
    }
    {
        collector_faults f;
        f.close_after_response = true;
        rows.push_back({"close after each response", f});
    }
    {
        collector_faults f;
        f.max_requests_per_connection = 3;
        rows.push_back({"3 requests per connection", f});
    }
    {
        collector_faults f;
        f.accept_then_drop_response = true;
        rows.push_back(
            {"response lost after accept, then recover", f, 300ms, outcome::all_delivered, true});
        rows.back().seen = [](const collector_stats& s) { return s.dropped_responses >= 3; };
    }
    rows.push_back({"stop listening, come back", {}, 800ms, outcome::all_delivered, false, true});
    {
        collector_faults f;
        f.retry_after_status = 400;
        rows.push_back({"permanent 400", f, 0ms, outcome::all_rejected_4xx});
    }
    return rows;
}

struct run_totals {
    metrics_snapshot m;
    collector_stats s;
    std::uint64_t accepted = 0;
};

run_totals run_load(collector& col, const fault_row& row, const std::string& url,
                    const std::string& ca_file) {
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
    batch_event_processor p(cfg);
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
    return {report.metrics, col.stats(), accepted.load()};
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
        rows.push_back({"certificate for another name",
                        {},
                        0ms,
                        outcome::all_tls_verify_failed,
                        false,
                        false,
                        "wrong_name"});
        rows.push_back({"certificate from an untrusted CA",
                        {},
                        0ms,
                        outcome::all_tls_verify_failed,
                        false,
                        false,
                        "untrusted"});
        rows.push_back({"expired certificate",
                        {},
                        0ms,
                        outcome::all_tls_verify_failed,
                        false,
                        false,
                        "expired"});
    }
    for (const auto& row : rows) {
        DYNAMIC_SECTION((tls ? "https: " : "http: ") << row.name) {
            collector_config cc;
            if (std::string(row.name) == "slow responses")
                cc.delay = 20ms;
            if (tls) {
                const std::string which = row.server_cert;
                const auto& c = which == "wrong_name"  ? certs.wrong_name
                                : which == "untrusted" ? certs.untrusted
                                : which == "expired"   ? certs.expired
                                                       : certs.server;
                cc.tls_cert_file = c.cert;
                cc.tls_key_file = c.key;
                cc.url_host = "localhost";
            }
            collector col(cc);
            const auto r = run_load(col, row, col.url(), tls ? certs.ca.cert : "");
            check_row(row, r);
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
    processor_hooks hooks;
    hooks.on_batch_result = [&](const batch_result& r) {
        std::lock_guard lk(mu);
        message = std::string(r.message);
        reason = r.reason;
    };
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.tls.ca_file = certs.ca.cert;
    {
        batch_event_processor p(cfg, hooks);
        event_builder b(test::make_context(col.url()));
        p.process(test::make_impression(b, 1));
        auto [ec, r] = test::close_and_wait(p, 5s);
        CHECK(r.dropped[std::size_t(drop_reason::tls_verify_failed)] == 1);
        std::lock_guard lk(mu);
        CHECK(reason == drop_reason::tls_verify_failed);
        CHECK_THAT(message, Catch::Contains("hostname mismatch"));
        CHECK(col.stats().requests == 0);
    }
    // Explicitly insecure: delivered despite the wrong name (tests against self-signed servers).
    cfg.tls.insecure_skip_verify = true;
    cfg.tls.ca_file.clear();
    batch_event_processor p(cfg);
    event_builder b(test::make_context(col.url()));
    p.process(test::make_impression(b, 2));
    auto [ec, r] = test::close_and_wait(p, 5s);
    CHECK(r.delivered == 1);
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
    batch_event_processor p(cfg);
    event_builder b(test::make_context(col.url()));
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 200; ++i)
            p.process(test::make_impression(b, round * 200 + i));
        p.async_flush(boost::asio::use_future).get();
    }
    auto [ec, r] = test::close_and_wait(p, 5s);
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
    CHECK(r.delivered == 20);
    CHECK(r.metrics.retries == 0);
    CHECK(r.metrics.connections_opened == 4);
    CHECK(col.stats().unique_events == 20);
}
