#include "collector/faults.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <string>

namespace evdispatch::detail {

namespace {

[[noreturn]] void throw_invalid(const std::string& what) {
    throw boost::system::system_error(make_error_code(error::invalid_config),
                                      "evdispatch::collector: " + what);
}

void check_status(unsigned s, const char* name) {
    if (s < 200 || s > 599)
        throw_invalid(std::string(name) + " must be a status in 200..599, got " +
                      std::to_string(s));
}

void check_header(const std::string& v, const char* name) {
    for (unsigned char c : v)
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            throw_invalid(std::string(name) +
                          " must be printable ASCII (it is sent as the Retry-After header)");
}

}  // namespace

void validate_faults(const collector_faults& f) {
    for (unsigned s : f.script)
        check_status(s, "collector_faults::script entry");
    if (f.script_retry_after.size() > f.script.size())
        throw_invalid("collector_faults::script_retry_after has " +
                      std::to_string(f.script_retry_after.size()) + " entries but script only " +
                      std::to_string(f.script.size()));
    for (const auto& v : f.script_retry_after)
        check_header(v, "collector_faults::script_retry_after entry");
    if (f.retry_after_status != 0)
        check_status(f.retry_after_status, "collector_faults::retry_after_status");
    if (f.fail_every != 0)
        check_status(f.fail_status, "collector_faults::fail_status");
    check_header(f.retry_after, "collector_faults::retry_after");
    if (f.down_for.count() < 0)
        throw_invalid("collector_faults::down_for must not be negative, got " +
                      std::to_string(f.down_for.count()) + " ms");
    if (f.down_after != 0 && f.down_for.count() == 0)
        throw_invalid("collector_faults::down_for must be more than 0 when down_after is set");
    if (f.down_after == 0 && f.down_for.count() != 0)
        throw_invalid("collector_faults::down_for is set but down_after is 0 (set both)");
    if (f.refuse_for.count() < 0)
        throw_invalid("collector_faults::refuse_for must not be negative, got " +
                      std::to_string(f.refuse_for.count()) + " ms");
}

fault_progress initial_progress(const collector_faults& f) noexcept {
    fault_progress p;
    p.down = f.refuse_for.count() > 0;
    return p;
}

response_plan decide(const collector_faults& f, fault_progress& p, const request_info& r) {
    response_plan plan;
    if (p.down) {
        plan.action = plan_action::lose;
        return plan;
    }
    plan.close_after = !r.keep_alive;
    switch (r.kind) {
        case request_kind::batch_headers:
            if (!f.reset_mid_request) {
                plan.action = plan_action::read_body;
                return plan;
            }
            plan.action = plan_action::reset;
            break;
        case request_kind::valid_batch:
        case request_kind::invalid_batch:
            if (f.reset_mid_request) {
                plan.action = plan_action::reset;
            } else if (f.stall) {
                plan.action = plan_action::stall;
            } else if (r.kind == request_kind::invalid_batch) {
                // Answered 400; uses up no script entry.
            } else if (f.accept_then_drop_response) {
                plan.action = plan_action::drop;
            } else if (p.script_pos < f.script.size()) {
                plan.status = f.script[p.script_pos];
                if (p.script_pos < f.script_retry_after.size())
                    plan.retry_after = f.script_retry_after[p.script_pos];
                ++p.script_pos;
            } else if (f.fail_every != 0 && ++p.fail_count % f.fail_every == 0) {
                plan.status = f.fail_status;
            } else if (f.retry_after_status != 0) {
                plan.status = f.retry_after_status;
                plan.retry_after = f.retry_after;
            }
            break;
        case request_kind::other:
            break;
        case request_kind::malformed:
            plan.close_after = true;
            break;
    }
    // Closing after the response concerns responses only (a malformed request closes anyway).
    if (plan.action == plan_action::respond && r.kind != request_kind::malformed &&
        (f.close_after_response ||
         (f.max_requests_per_connection != 0 && r.nth >= f.max_requests_per_connection))) {
        plan.fault_close = !plan.close_after;
        plan.close_after = true;
    }
    if (f.down_after != 0 && ++p.requests == f.down_after) {
        p.down = true;
        plan.outage = f.down_for;
        plan.close_after = true;
    }
    return plan;
}

bool injects_any(const collector_faults& f, const fault_progress& p) noexcept {
    return p.down || p.script_pos < f.script.size() || f.retry_after_status != 0 ||
           f.fail_every != 0 || f.stall || f.reset_mid_request || f.close_after_response ||
           f.max_requests_per_connection != 0 || f.accept_then_drop_response ||
           (f.down_after != 0 && p.requests < f.down_after);
}

}  // namespace evdispatch::detail
