// The collector's fault decision without sockets: detail::decide() and validate_faults(), from
// tables. The same decisions against real sockets are in integration/collector_faults_test.cpp.

#include "collector/faults.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using evdispatch::collector_faults;
using evdispatch::detail::decide;
using evdispatch::detail::fault_progress;
using evdispatch::detail::initial_progress;
using evdispatch::detail::injects_any;
using evdispatch::detail::plan_action;
using evdispatch::detail::request_info;
using evdispatch::detail::request_kind;
using evdispatch::detail::response_plan;

namespace {

using kind = request_kind;
using act = plan_action;

const char* name_of(kind k) {
    switch (k) {
        case kind::batch_headers:
            return "batch_headers";
        case kind::valid_batch:
            return "valid_batch";
        case kind::invalid_batch:
            return "invalid_batch";
        case kind::other:
            return "other";
        case kind::malformed:
            return "malformed";
    }
    return "?";
}

// What a plan says, in a form CHECK can compare and print.
struct outcome {
    act action = act::respond;
    unsigned status = 0;
    std::string retry_after;
    bool close_after = false;
    bool fault_close = false;
    std::chrono::milliseconds outage{0};

    friend bool operator==(const outcome&, const outcome&) = default;
};

outcome outcome_of(const response_plan& p) {
    return {p.action, p.status, p.retry_after, p.close_after, p.fault_close, p.outage};
}

std::string describe(const outcome& o) {
    const char* actions[] = {"respond", "read_body", "stall", "reset", "drop", "lose"};
    std::string s = actions[static_cast<int>(o.action)];
    s += " status " + std::to_string(o.status);
    if (!o.retry_after.empty())
        s += " retry-after '" + o.retry_after + "'";
    if (o.close_after)
        s += o.fault_close ? " fault-close" : " close";
    if (o.outage.count() > 0)
        s += " outage " + std::to_string(o.outage.count()) + "ms";
    return s;
}

// Shorthands for the expected outcomes.
outcome respond(unsigned status = 0, std::string retry_after = {}) {
    return {act::respond, status, std::move(retry_after)};
}
outcome only(act a) {
    return {a};
}
outcome fault_close(outcome o) {
    o.close_after = o.fault_close = true;
    return o;
}
outcome client_close(outcome o) {
    o.close_after = true;
    return o;
}
outcome outage(outcome o, std::chrono::milliseconds d) {
    o.close_after = true;
    o.outage = d;
    return o;
}

}  // namespace

namespace Catch {
template <>
struct StringMaker<outcome> {
    static std::string convert(const outcome& o) { return describe(o); }
};
}  // namespace Catch

TEST_CASE("decide: each fault on each kind of request", "[unit][collector]") {
    struct row {
        const char* name;
        collector_faults faults;
        kind k;
        outcome expected;
    };
    const std::vector<row> rows = {
        // No fault: everything is answered normally; a batch's headers only say "read on".
        {"none", {}, kind::valid_batch, respond()},
        {"none", {}, kind::invalid_batch, respond()},
        {"none", {}, kind::other, respond()},
        {"none", {}, kind::batch_headers, only(act::read_body)},
        {"none", {}, kind::malformed, client_close(respond())},
        // script
        {"script", {.script = {500}}, kind::valid_batch, respond(500)},
        {"script", {.script = {500}}, kind::invalid_batch, respond()},
        {"script", {.script = {500}}, kind::other, respond()},
        {"script", {.script = {500}}, kind::batch_headers, only(act::read_body)},
        {"script with Retry-After",
         {.script = {503}, .script_retry_after = {"7"}},
         kind::valid_batch,
         respond(503, "7")},
        {"script 2xx", {.script = {202}}, kind::valid_batch, respond(202)},
        // retry_after_status
        {"retry_after_status",
         {.retry_after_status = 429, .retry_after = "2"},
         kind::valid_batch,
         respond(429, "2")},
        {"retry_after_status without a value",
         {.retry_after_status = 503},
         kind::valid_batch,
         respond(503)},
        {"retry_after_status",
         {.retry_after_status = 429, .retry_after = "2"},
         kind::invalid_batch,
         respond()},
        {"retry_after_status",
         {.retry_after_status = 429, .retry_after = "2"},
         kind::other,
         respond()},
        // fail_every 1: every valid batch
        {"fail_every 1", {.fail_every = 1}, kind::valid_batch, respond(503)},
        {"fail_every 1, fail_status 500",
         {.fail_every = 1, .fail_status = 500},
         kind::valid_batch,
         respond(500)},
        {"fail_every 1", {.fail_every = 1}, kind::invalid_batch, respond()},
        {"fail_every 1", {.fail_every = 1}, kind::other, respond()},
        // stall and reset: batches, valid or not; reset already at the headers
        {"stall", {.stall = true}, kind::valid_batch, only(act::stall)},
        {"stall", {.stall = true}, kind::invalid_batch, only(act::stall)},
        {"stall", {.stall = true}, kind::other, respond()},
        {"stall", {.stall = true}, kind::batch_headers, only(act::read_body)},
        {"stall", {.stall = true}, kind::malformed, client_close(respond())},
        {"reset", {.reset_mid_request = true}, kind::batch_headers, only(act::reset)},
        {"reset", {.reset_mid_request = true}, kind::valid_batch, only(act::reset)},
        {"reset", {.reset_mid_request = true}, kind::invalid_batch, only(act::reset)},
        {"reset", {.reset_mid_request = true}, kind::other, respond()},
        {"reset", {.reset_mid_request = true}, kind::malformed, client_close(respond())},
        // accept_then_drop_response: valid batches only
        {"drop", {.accept_then_drop_response = true}, kind::valid_batch, only(act::drop)},
        {"drop", {.accept_then_drop_response = true}, kind::invalid_batch, respond()},
        {"drop", {.accept_then_drop_response = true}, kind::other, respond()},
        // closing: every response, never a stall, reset or drop, never a malformed request
        {"close_after_response",
         {.close_after_response = true},
         kind::valid_batch,
         fault_close(respond())},
        {"close_after_response",
         {.close_after_response = true},
         kind::invalid_batch,
         fault_close(respond())},
        {"close_after_response",
         {.close_after_response = true},
         kind::other,
         fault_close(respond())},
        {"close_after_response",
         {.close_after_response = true},
         kind::malformed,
         client_close(respond())},
        {"close_after_response",
         {.close_after_response = true},
         kind::batch_headers,
         only(act::read_body)},
        {"max_requests_per_connection 1",
         {.max_requests_per_connection = 1},
         kind::other,
         fault_close(respond())},
        // Precedence when several are set.
        {"reset before everything",
         {.script = {500},
          .retry_after_status = 429,
          .stall = true,
          .reset_mid_request = true,
          .close_after_response = true,
          .accept_then_drop_response = true,
          .fail_every = 1},
         kind::valid_batch,
         only(act::reset)},
        {"stall before drop and statuses",
         {.script = {500}, .stall = true, .accept_then_drop_response = true, .fail_every = 1},
         kind::valid_batch,
         only(act::stall)},
        {"drop before the script",
         {.script = {500}, .accept_then_drop_response = true},
         kind::valid_batch,
         only(act::drop)},
        {"script before fail_every and retry_after_status",
         {.script = {500}, .retry_after_status = 429, .retry_after = "1", .fail_every = 1},
         kind::valid_batch,
         respond(500)},
        {"fail_every before retry_after_status",
         {.retry_after_status = 429, .retry_after = "1", .fail_every = 1, .fail_status = 502},
         kind::valid_batch,
         respond(502)},
        {"a status and closing together",
         {.retry_after_status = 429, .retry_after = "1", .close_after_response = true},
         kind::valid_batch,
         fault_close(respond(429, "1"))},
        {"closing does not apply to a stall",
         {.stall = true, .close_after_response = true},
         kind::valid_batch,
         only(act::stall)},
        {"closing does not apply to a drop",
         {.close_after_response = true, .accept_then_drop_response = true},
         kind::valid_batch,
         only(act::drop)},
        // down_after 1: the first request decided, whatever it is, begins the outage.
        {"down_after 1",
         {.down_after = 1, .down_for = 5s},
         kind::valid_batch,
         outage(respond(), 5s)},
        {"down_after 1",
         {.down_after = 1, .down_for = 5s},
         kind::invalid_batch,
         outage(respond(), 5s)},
        {"down_after 1", {.down_after = 1, .down_for = 5s}, kind::other, outage(respond(), 5s)},
        {"down_after 1", {.down_after = 1, .down_for = 5s}, kind::malformed, outage(respond(), 5s)},
        {"down_after 1, headers only",
         {.down_after = 1, .down_for = 5s},
         kind::batch_headers,
         only(act::read_body)},
        {"down_after 1 on a reset",
         {.reset_mid_request = true, .down_after = 1, .down_for = 5s},
         kind::batch_headers,
         {act::reset, 0, {}, true, false, 5s}},
        {"down_after 1 on a scripted status",
         {.script = {503}, .script_retry_after = {"3"}, .down_after = 1, .down_for = 2s},
         kind::valid_batch,
         outage(respond(503, "3"), 2s)},
        {"down_after 1 on a fault close: the close is the fault's",
         {.close_after_response = true, .down_after = 1, .down_for = 2s},
         kind::other,
         outage(fault_close(respond()), 2s)},
        // refuse_for: down from the start, every request lost.
        {"refuse_for", {.refuse_for = 1s}, kind::valid_batch, only(act::lose)},
        {"refuse_for", {.refuse_for = 1s}, kind::batch_headers, only(act::lose)},
        {"refuse_for", {.refuse_for = 1s}, kind::other, only(act::lose)},
        {"refuse_for", {.refuse_for = 1s}, kind::malformed, only(act::lose)},
        {"refuse_for before every other fault",
         {.script = {500}, .reset_mid_request = true, .refuse_for = 1s},
         kind::valid_batch,
         only(act::lose)},
    };
    const auto r = GENERATE_COPY(from_range(rows));
    INFO(r.name << " on " << name_of(r.k));
    fault_progress p = initial_progress(r.faults);
    const response_plan plan = decide(r.faults, p, {r.k, 1, true});
    CHECK(outcome_of(plan) == r.expected);
}

TEST_CASE("decide: the client's Connection: close is not a fault close", "[unit][collector]") {
    const collector_faults f{.close_after_response = true};
    fault_progress p;
    CHECK(outcome_of(decide(f, p, {kind::valid_batch, 1, false})) == client_close(respond()));
    const collector_faults none;
    CHECK(outcome_of(decide(none, p, {kind::other, 1, false})) == client_close(respond()));
}

TEST_CASE("decide: max_requests_per_connection closes at the Nth response of a connection",
          "[unit][collector]") {
    const collector_faults f{.max_requests_per_connection = 3};
    fault_progress p;
    for (std::uint64_t nth = 1; nth <= 5; ++nth) {
        INFO("response " << nth);
        const auto o = outcome_of(decide(f, p, {kind::valid_batch, nth, true}));
        CHECK(o == (nth >= 3 ? fault_close(respond()) : respond()));
    }
}

TEST_CASE("decide: the script runs in order over valid batches, then the fallback",
          "[unit][collector]") {
    struct step {
        kind k;
        outcome expected;
    };
    struct row {
        const char* name;
        collector_faults faults;
        std::vector<step> steps;
    };
    const std::vector<row> rows = {
        {"script, then normal answers",
         {.script = {500, 503, 204}, .script_retry_after = {"", "7"}},
         {{kind::valid_batch, respond(500)},
          {kind::invalid_batch, respond()},  // uses up no entry
          {kind::other, respond()},          // neither
          {kind::valid_batch, respond(503, "7")},
          {kind::valid_batch, respond(204)},
          {kind::valid_batch, respond()},
          {kind::valid_batch, respond()}}},
        {"script, then retry_after_status",
         {.script = {500}, .retry_after_status = 429, .retry_after = "2"},
         {{kind::valid_batch, respond(500)},
          {kind::valid_batch, respond(429, "2")},
          {kind::valid_batch, respond(429, "2")}}},
        {"fail_every 3: the 3rd, 6th... valid batch",
         {.fail_every = 3},
         {{kind::valid_batch, respond()},
          {kind::invalid_batch, respond()},  // not counted
          {kind::valid_batch, respond()},
          {kind::valid_batch, respond(503)},
          {kind::valid_batch, respond()},
          {kind::valid_batch, respond()},
          {kind::valid_batch, respond(503)}}},
        {"fail_every counts after the script",
         {.script = {500, 500}, .fail_every = 2, .fail_status = 502},
         {{kind::valid_batch, respond(500)},
          {kind::valid_batch, respond(500)},
          {kind::valid_batch, respond()},
          {kind::valid_batch, respond(502)},
          {kind::valid_batch, respond()},
          {kind::valid_batch, respond(502)}}},
        {"fail_every with retry_after_status for the others",
         {.retry_after_status = 429, .retry_after = "1", .fail_every = 2},
         {{kind::valid_batch, respond(429, "1")},
          {kind::valid_batch, respond(503)},
          {kind::valid_batch, respond(429, "1")}}},
        {"drop holds the script back",
         {.script = {500}, .accept_then_drop_response = true},
         {{kind::valid_batch, only(act::drop)}, {kind::valid_batch, only(act::drop)}}},
        {"down_after 3 counts every request, then loses until the outage ends",
         {.script = {500}, .down_after = 3, .down_for = 10s},
         {{kind::other, respond()},
          {kind::batch_headers, only(act::read_body)},  // not counted: decided with the body
          {kind::invalid_batch, respond()},
          {kind::valid_batch, outage(respond(500), 10s)},
          {kind::valid_batch, only(act::lose)},
          {kind::other, only(act::lose)},
          {kind::batch_headers, only(act::lose)}}},
    };
    const auto r = GENERATE_COPY(from_range(rows));
    INFO(r.name);
    fault_progress p = initial_progress(r.faults);
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
        INFO("request " << i + 1 << " (" << name_of(r.steps[i].k) << ")");
        CHECK(outcome_of(decide(r.faults, p, {r.steps[i].k, 1, true})) == r.steps[i].expected);
    }
}

TEST_CASE("decide: down_after goes down once; requests are decided again after the outage",
          "[unit][collector]") {
    const collector_faults f{.down_after = 2, .down_for = 500ms};
    fault_progress p = initial_progress(f);
    REQUIRE_FALSE(p.down);
    CHECK(injects_any(f, p));
    CHECK(outcome_of(decide(f, p, {kind::valid_batch, 1, true})) == respond());
    CHECK(outcome_of(decide(f, p, {kind::valid_batch, 2, true})) == outage(respond(), 500ms));
    CHECK(p.down);
    CHECK(injects_any(f, p));
    // Lost requests are not counted.
    const auto requests = p.requests;
    CHECK(decide(f, p, {kind::valid_batch, 1, true}).action == act::lose);
    CHECK(p.requests == requests);
    // The listener ends the outage (server_state::outage_ended): no second one.
    p.down = false;
    CHECK_FALSE(injects_any(f, p));
    for (int i = 0; i < 5; ++i)
        CHECK(outcome_of(decide(f, p, {kind::valid_batch, 1, true})) == respond());
}

TEST_CASE("injects_any: false only when no decision can differ from a plain response",
          "[unit][collector]") {
    struct row {
        const char* name;
        collector_faults faults;
        bool expected;
    };
    const std::vector<row> rows = {
        {"none", {}, false},
        {"script", {.script = {500}}, true},
        {"script_retry_after alone", {.script_retry_after = {}}, false},
        {"retry_after_status", {.retry_after_status = 429}, true},
        {"retry_after without a status", {.retry_after = "1"}, false},
        {"stall", {.stall = true}, true},
        {"reset", {.reset_mid_request = true}, true},
        {"close_after_response", {.close_after_response = true}, true},
        {"max_requests_per_connection", {.max_requests_per_connection = 2}, true},
        {"drop", {.accept_then_drop_response = true}, true},
        {"fail_every", {.fail_every = 2}, true},
        {"fail_status alone", {.fail_status = 500}, false},
        {"down_after", {.down_after = 1, .down_for = 1s}, true},
        {"refuse_for", {.refuse_for = 1s}, true},
    };
    const auto r = GENERATE_COPY(from_range(rows));
    INFO(r.name);
    CHECK(injects_any(r.faults, initial_progress(r.faults)) == r.expected);
}

TEST_CASE("injects_any turns off once the script has run out", "[unit][collector]") {
    const collector_faults f{.script = {500, 503}};
    fault_progress p;
    CHECK(injects_any(f, p));
    decide(f, p, {kind::valid_batch, 1, true});
    CHECK(injects_any(f, p));
    decide(f, p, {kind::valid_batch, 1, true});
    CHECK_FALSE(injects_any(f, p));
}

TEST_CASE("validate_faults: invalid_config naming the field", "[unit][collector]") {
    using evdispatch::detail::validate_faults;
    struct row {
        collector_faults faults;
        const char* field;  // nullptr: valid
    };
    const std::vector<row> rows = {
        {{}, nullptr},
        {{.script = {200, 599}, .script_retry_after = {"1"}}, nullptr},
        {{.retry_after_status = 429, .retry_after = "Wed, 21 Oct 2015 07:28:00 GMT"}, nullptr},
        {{.fail_status = 1}, nullptr},  // only checked with fail_every
        {{.down_after = 1, .down_for = 1ms}, nullptr},
        {{.refuse_for = 1ms}, nullptr},
        {{.script = {199}}, "collector_faults::script entry"},
        {{.script = {200, 600}}, "collector_faults::script entry"},
        {{.script = {503}, .script_retry_after = {"1", "2"}},
         "collector_faults::script_retry_after"},
        {{.script = {503}, .script_retry_after = {"1\r\nX: y"}},
         "collector_faults::script_retry_after entry"},
        {{.retry_after_status = 1000}, "collector_faults::retry_after_status"},
        {{.retry_after = "1\n"}, "collector_faults::retry_after"},
        {{.retry_after = std::string("\x7f")}, "collector_faults::retry_after"},
        {{.fail_every = 2, .fail_status = 99}, "collector_faults::fail_status"},
        {{.down_after = 3}, "collector_faults::down_for"},
        {{.down_for = 1s}, "collector_faults::down_for"},
        {{.down_after = 3, .down_for = -1ms}, "collector_faults::down_for"},
        {{.refuse_for = -1ms}, "collector_faults::refuse_for"},
    };
    const auto r = GENERATE_COPY(from_range(rows));
    INFO(r.field);
    if (r.field == nullptr) {
        CHECK_NOTHROW(validate_faults(r.faults));
        return;
    }
    try {
        validate_faults(r.faults);
        FAIL("accepted");
    } catch (const boost::system::system_error& e) {
        INFO(e.what());
        CHECK(e.code() == evdispatch::error::invalid_config);
        CHECK(std::string(e.what()).find(r.field) != std::string::npos);
    }
}
