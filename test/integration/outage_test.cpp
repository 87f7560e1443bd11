// Endpoint outages against the real loopback collector: the collector stops listening (every
// connection refused, open ones closed) while producers keep sending at a paced rate.

#include "support/fixtures.hpp"
#include "support/tls_certs.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

/// A host_resolver that fails every query at once, or holds every query unanswered (its
/// destructor drops them): resolution failures and a connect deadline spent resolving.
class broken_resolver final : public host_resolver {
public:
    explicit broken_resolver(bool hold) : hold_(hold) {}
    void async_resolve(std::string, std::string,
                       asio::any_completion_handler<resolve_signature> h) override {
        if (hold_) {
            std::lock_guard lk(mu_);
            held_.push_back(std::move(h));
            return;
        }
        std::move(h)(make_error_code(asio::error::host_not_found),
                     std::vector<asio::ip::tcp::endpoint>{});
    }

private:
    bool hold_;
    std::mutex mu_;
    std::vector<asio::any_completion_handler<resolve_signature>> held_;
};

/// One way for an endpoint to fail, set up against a real collector on 127.0.0.1.
struct failure_kind {
    const char* name;
    /// Makes the processor's configuration and hooks for the kind; `col` is a plain-HTTP
    /// collector the kind may set faults on.
    std::function<void(collector& col, processor_config& cfg, processor_hooks& hooks)> setup;
};

std::vector<failure_kind> endpoint_failures() {
    return {
        {"connection refused",
         [](collector&, processor_config& cfg, processor_hooks&) {
             cfg.endpoint = "http://127.0.0.1:" + std::to_string(test::refused_port()) + "/e";
         }},
        {"connection reset mid-request",
         [](collector& col, processor_config&, processor_hooks&) {
             col.set_faults({.reset_mid_request = true});
         }},
        {"503 answers", [](collector& col, processor_config&,
                           processor_hooks&) { col.set_faults({.retry_after_status = 503}); }},
        {"429 answers without Retry-After",
         [](collector& col, processor_config&, processor_hooks&) {
             col.set_faults({.retry_after_status = 429});
         }},
        {"TLS handshake failure (HTTPS to a plain-HTTP port)",
         [](collector& col, processor_config& cfg, processor_hooks&) {
             cfg.endpoint = "https://127.0.0.1:" + std::to_string(col.port()) + "/v1/events";
             cfg.tls.ca_file = test::shared_tls_certs().ca.cert;
         }},
        {"name resolution failure",
         [](collector& col, processor_config& cfg, processor_hooks& hooks) {
             cfg.endpoint = "http://events.test:" + std::to_string(col.port()) + "/v1/events";
             hooks.resolver = std::make_shared<broken_resolver>(false);
         }},
        {"connect timeout (a resolution that never answers)",
         [](collector& col, processor_config& cfg, processor_hooks& hooks) {
             cfg.endpoint = "http://events.test:" + std::to_string(col.port()) + "/v1/events";
             cfg.http.connect_timeout = 200ms;
             hooks.resolver = std::make_shared<broken_resolver>(true);
         }},
    };
}

}  // namespace

TEST_CASE("each endpoint-level failure moves the endpoint to down; a 400 does not",
          "[integration][health]") {
    auto kinds = endpoint_failures();
    kinds.push_back({"400 answers (about the batch, not the endpoint)",
                     [](collector& col, processor_config& cfg, processor_hooks&) {
                         col.set_faults({.retry_after_status = 400});
                         (void)cfg;
                     }});
    const auto kind = GENERATE_COPY(from_range(kinds));
    const bool is_400 = std::string_view(kind.name).starts_with("400");
    CAPTURE(kind.name);
    collector col;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 5;
    cfg.health.probe_initial = 100ms;
    cfg.health.probe_max = 200ms;
    processor_hooks hooks;
    std::mutex mu;
    std::vector<endpoint_change> changes;
    hooks.on_endpoint_state = [&](const endpoint_change& c) {
        std::lock_guard lk(mu);
        changes.push_back(c);
    };
    kind.setup(col, cfg, hooks);
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 40; ++i)
        p.process(test::make_impression(b, std::uint64_t(i)));
    // 40 events in batches of 5: every one is sealed by size and goes out now.
    if (is_400) {
        REQUIRE(test::wait_until([&] { return p.metrics().pending == 0; }));
        const auto m = p.metrics();
        CHECK(m.outages == 0);
        CHECK(m.state == endpoint_state::up);
        CHECK(m.dropped[std::size_t(drop_reason::rejected_4xx)] == 40);
    } else {
        REQUIRE(test::wait_until([&] { return p.metrics().outages == 1; }));
        const auto m = p.metrics();
        CHECK(m.state != endpoint_state::up);
        CHECK(m.dropped_after_accept() == 0);  // held, not dropped
    }
    auto [ec, r] = test::close_and_wait(p, 300ms);
    CHECK(r.metrics.balanced());
    CHECK(r.metrics.pending == 0);
    if (!is_400) {
        CHECK(ec == error::close_deadline);
        CHECK(r.dropped[std::size_t(drop_reason::close_deadline)] == 40);
        std::lock_guard lk(mu);
        REQUIRE_FALSE(changes.empty());
        CHECK(changes.front().from == endpoint_state::up);
        CHECK(changes.front().to == endpoint_state::down);
        CHECK(changes.front().failures == cfg.health.failure_threshold);
    } else {
        std::lock_guard lk(mu);
        CHECK(changes.empty());
    }
}

TEST_CASE("an outage in the middle of a run loses nothing and is probed, not hammered",
          "[integration][health]") {
    collector col;
    const std::string url = col.url();
    std::mutex mu;
    std::vector<endpoint_change> changes;
    processor_hooks hooks;
    hooks.on_endpoint_state = [&](const endpoint_change& c) {
        std::lock_guard lk(mu);
        changes.push_back(c);
    };
    processor_config cfg;
    cfg.endpoint = url;
    cfg.batch.batch_size = 20;
    cfg.batch.flush_interval = 50ms;
    cfg.http.connect_timeout = 2s;
    cfg.health.probe_initial = 250ms;
    cfg.health.probe_max = 2s;
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(url));

    // 4 producers, 500 events/s each, for about 9 s; the collector is down from 2 s to 7 s.
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> refused{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < 4; ++t) {
        producers.emplace_back([&, t] {
            auto next = std::chrono::steady_clock::now();
            for (std::uint64_t i = 0; !stop.load(); ++i) {
                next += 2ms;
                std::this_thread::sleep_until(next);
                if (p.process(test::make_impression(b, std::uint64_t(t) * 1'000'000 + i)) !=
                    process_result::accepted)
                    ++refused;
            }
        });
    }
    std::this_thread::sleep_for(2s);
    col.pause_listening();
    const auto at_pause = p.metrics();
    std::this_thread::sleep_for(5s);
    const auto at_resume = p.metrics();
    col.resume_listening();
    std::this_thread::sleep_for(2s);
    stop = true;
    for (auto& t : producers)
        t.join();

    // The endpoint was known to be down during the outage, and everything waited for it.
    CHECK(at_resume.outages == 1);
    CHECK(at_resume.state != endpoint_state::up);
    CHECK(at_resume.held_events > 0);
    CHECK(at_resume.dropped_after_accept() == 0);
    // Requests during the outage: the ones in flight or failing before the outage was known,
    // then one per probe (250 ms doubling to 2 s, jittered: at most 6 in 5 s).
    const auto requests = at_resume.requests - at_pause.requests;
    const auto probes = at_resume.probes - at_pause.probes;
    CHECK(probes >= 2);
    CHECK(probes <= 6);
    CHECK(requests <= cfg.http.max_connections + cfg.health.failure_threshold + probes);

    // After the endpoint returned, the held events went out (the next probe is at most
    // probe_max away).
    REQUIRE(test::wait_until([&] { return p.metrics().held_events == 0; }, 30s));
    auto [ec, r] = test::close_and_wait(p, 30s);
    CHECK_FALSE(ec);
    CHECK(refused == 0);
    CHECK(r.metrics.dropped_total() == 0);
    CHECK(r.delivered == r.metrics.accepted);
    CHECK(r.metrics.balanced());
    // Every event arrived once, or again as a duplicate the collector recognised by uuid.
    const auto s = col.stats();
    CHECK(s.unique_events == r.delivered);
    CHECK(s.events == s.unique_events + s.duplicates);
    std::lock_guard lk(mu);
    REQUIRE(changes.size() >= 3);
    CHECK(changes.front().to == endpoint_state::down);
    CHECK(changes.back().to == endpoint_state::up);
    CHECK(changes.back().outage >= 4s);
}

TEST_CASE("429 with Retry-After: no request before it passes", "[integration][health]") {
    collector col;
    collector_faults ra;  // every batch: 429 with Retry-After: 2
    ra.retry_after_status = 429;
    ra.retry_after = "2";
    col.set_faults(ra);
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 10;
    std::mutex mu;
    std::vector<std::chrono::steady_clock::time_point> sends;
    processor_hooks hooks;
    hooks.on_endpoint_state = [&](const endpoint_change& c) {
        if (c.to == endpoint_state::probing) {
            std::lock_guard lk(mu);
            sends.push_back(std::chrono::steady_clock::now());
        }
    };
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 10; ++i)
        p.process(test::make_impression(b, std::uint64_t(i)));
    REQUIRE(test::wait_until([&] { return p.metrics().state != endpoint_state::up; }));
    const auto paused_at = std::chrono::steady_clock::now();
    const auto requests = col.stats().requests;
    col.set_faults({});
    REQUIRE(test::wait_until([&] { return p.metrics().delivered == 10; }));
    const auto s = col.stats();
    CHECK(s.requests == requests + 1);  // the one probe, after Retry-After
    std::lock_guard lk(mu);
    REQUIRE(sends.size() == 1);
    // The probe went out no earlier than 2 s after the 429 (which came before paused_at).
    CHECK(sends[0] - paused_at >= 1900ms);
    auto [ec, r] = test::close_and_wait(p, 5s);
    CHECK_FALSE(ec);
    CHECK(r.delivered == 10);
}
