#include <evdispatch/retry_policy.hpp>

#include <catch2/catch.hpp>

#include <ctime>

using namespace evdispatch;
using namespace std::chrono_literals;
using action = retry_decision::action;

namespace {
attempt_outcome status(unsigned s) {
    return {make_error_code(error::http_status), s, {}};
}
attempt_outcome err(error e) {
    return {make_error_code(e), 0, {}};
}
}  // namespace

TEST_CASE("retry policy: which outcomes retry and which give up", "[unit][retry]") {
    struct row {
        const char* name;
        attempt_outcome o;
        action what;
        drop_reason reason;
    };
    const std::vector<row> rows = {
        {"200", {{}, 200, {}}, action::done, {}},
        {"204", {{}, 204, {}}, action::done, {}},
        {"custom ok (status 0)", {{}, 0, {}}, action::done, {}},
        {"408", status(408), action::retry, drop_reason::server_error},
        {"429", status(429), action::retry, drop_reason::server_error},
        {"500", status(500), action::retry, drop_reason::server_error},
        {"503", status(503), action::retry, drop_reason::server_error},
        {"400", status(400), action::give_up, drop_reason::rejected_4xx},
        {"401", status(401), action::give_up, drop_reason::rejected_4xx},
        {"413", status(413), action::give_up, drop_reason::rejected_4xx},
        {"302", status(302), action::give_up, drop_reason::server_error},
        {"refused", err(error::connect_failed), action::retry, drop_reason::connect_failed},
        {"dns", err(error::resolve_failed), action::retry, drop_reason::connect_failed},
        {"connect timeout", err(error::connect_timeout), action::retry, drop_reason::timeout},
        {"request timeout", err(error::request_timeout), action::retry, drop_reason::timeout},
        {"reset", err(error::connection_lost), action::retry, drop_reason::network_error},
        {"bad response", err(error::bad_response), action::retry, drop_reason::network_error},
        {"oversized response", err(error::response_too_large), action::give_up,
         drop_reason::network_error},
        {"tls handshake", err(error::tls_handshake_failed), action::retry, drop_reason::tls_failed},
        {"tls verify", err(error::tls_verify_failed), action::give_up,
         drop_reason::tls_verify_failed},
        {"shut down", err(error::close_deadline), action::give_up, drop_reason::close_deadline},
        {"custom failure", err(error::dispatcher_failed), action::retry,
         drop_reason::dispatcher_failed},
        {"refused for good", err(error::dispatcher_rejected), action::give_up,
         drop_reason::dispatcher_failed},
    };
    retry_policy p(retry_config{});
    for (const auto& r : rows) {
        DYNAMIC_SECTION(r.name) {
            const auto d = p.decide(1, r.o, 0ms, 0.5);
            CHECK(d.what == r.what);
            if (r.what != action::done)
                CHECK(d.reason == r.reason);
        }
    }
}

TEST_CASE("retry policy: exponential backoff with full jitter, capped", "[unit][retry]") {
    retry_policy p(retry_config{
        .max_attempts = 20, .base_backoff = 200ms, .max_backoff = 30s, .max_retry_time = 0ms});
    const auto o = status(503);
    struct row {
        unsigned attempt;
        double jitter;
        std::chrono::milliseconds expect;
    };
    for (auto r : {row{1, 1.0, 200ms}, row{2, 1.0, 400ms}, row{3, 1.0, 800ms}, row{3, 0.5, 400ms},
                   row{3, 0.0, 0ms}, row{8, 1.0, 25600ms}, row{9, 1.0, 30000ms},
                   row{19, 1.0, 30000ms}, row{19, 0.25, 7500ms}}) {
        const auto d = p.decide(r.attempt, o, 0ms, r.jitter);
        INFO("attempt " << r.attempt << " jitter " << r.jitter);
        REQUIRE(d.what == action::retry);
        CHECK(d.delay == r.expect);
    }
}

TEST_CASE("retry policy: max_attempts and the total retry budget", "[unit][retry]") {
    retry_policy p(
        retry_config{.max_attempts = 3, .base_backoff = 1000ms, .max_retry_time = 5000ms});
    const auto o = err(error::connect_failed);
    CHECK(p.decide(1, o, 0ms, 1.0).what == action::retry);
    CHECK(p.decide(2, o, 0ms, 1.0).what == action::retry);
    const auto last = p.decide(3, o, 0ms, 1.0);
    CHECK(last.what == action::give_up);
    CHECK(last.reason == drop_reason::connect_failed);
    // 4000 ms spent + 2000 ms backoff > 5000 ms budget.
    CHECK(p.decide(2, o, 4000ms, 1.0).what == action::give_up);
    CHECK(p.decide(2, o, 2999ms, 1.0).what == action::retry);
    retry_policy once(retry_config{.max_attempts = 1});
    CHECK(once.decide(1, o, 0ms, 0.5).what == action::give_up);
}

TEST_CASE("retry policy: Retry-After replaces the backoff, capped", "[unit][retry]") {
    retry_policy p(retry_config{.max_retry_time = 0ms, .max_retry_after = 10s});
    attempt_outcome o = status(429);
    o.retry_after = 3s;
    auto d = p.decide(1, o, 0ms, 0.0);
    REQUIRE(d.what == action::retry);
    CHECK(d.delay == 3s);
    o.retry_after = 120s;
    CHECK(p.decide(1, o, 0ms, 0.0).delay == 10s);
}

TEST_CASE("Retry-After parsing: seconds and HTTP-date forms", "[unit][retry]") {
    // 1994-11-06 08:49:37 UTC
    const auto base = std::chrono::system_clock::time_point(std::chrono::seconds(784111777));
    const auto now = base - std::chrono::seconds(90);
    CHECK(parse_retry_after("120", now) == std::chrono::milliseconds(120'000));
    CHECK(parse_retry_after(" 0 ", now) == std::chrono::milliseconds(0));
    CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) ==
          std::chrono::milliseconds(90'000));
    CHECK(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now) ==
          std::chrono::milliseconds(90'000));
    CHECK(parse_retry_after("Sun Nov  6 08:49:37 1994", now) == std::chrono::milliseconds(90'000));
    // In the past: retry now.
    CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", base + std::chrono::hours(1)) ==
          std::chrono::milliseconds(0));
    CHECK_FALSE(parse_retry_after("", now));
    CHECK_FALSE(parse_retry_after("soon", now));
    CHECK_FALSE(parse_retry_after("-5", now));
    CHECK_FALSE(parse_retry_after("1.5", now));
    CHECK_FALSE(parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", now));
    CHECK_FALSE(parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", now));
}
