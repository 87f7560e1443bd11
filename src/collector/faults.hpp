#pragma once

// The collector's fault logic without sockets: validation of collector_faults, and the
// decision of what to do with each request. decide() is a step of a state machine: no I/O, no
// clock, no lock; the same faults, progress and request give the same plan and the same new
// progress. server_state runs it under its fault mutex and the session carries the plan out.

#include <evdispatch/collector/faults.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace evdispatch::detail {

// Throws boost::system::system_error(error::invalid_config) naming the field if `f` is
// invalid.
void validate_faults(const collector_faults& f);

// What a request is, as far as the faults care.
enum class request_kind : std::uint8_t {
    batch_headers,  // a batch request (POST .../events) whose headers are read, not its body
    valid_batch,    // a batch request with a valid body
    invalid_batch,  // a batch request with an invalid body (answered 400)
    other,          // any other request: GET /stats, a 404
    malformed,      // not HTTP, or a body over max_body_bytes (answered 400 or 413)
};

enum class plan_action : std::uint8_t {
    respond,    // write the response (a valid batch: with `status`, or success_status if 0)
    read_body,  // batch_headers only: nothing decided yet, read the body and ask again
    stall,      // never answer (stalled)
    reset,      // reset the connection without answering (resets)
    drop,       // accept the batch, then close without answering (dropped_responses)
    lose,       // an outage is in progress: close without answering or counting anything
};

// What to do with one request.
struct response_plan {
    std::chrono::milliseconds delay{0};  // set by the session (collector_config::delay)
    plan_action action = plan_action::respond;
    bool close_after = false;  // close the connection once the response is written
    bool fault_close = false;  // ... because of close_after_response or max_requests_per_...
    unsigned status = 0;       // valid batch: 0 = success_status, else an injected status
    std::string retry_after;   // Retry-After header value; empty: none
    // More than 0: this request is the down_after-th; an outage this long begins now (every
    // connection but this one, which closes after its response, is closed).
    std::chrono::milliseconds outage{0};
};

// What the faults have used up since they were set.
struct fault_progress {
    std::size_t script_pos = 0;    // next script entry
    std::uint64_t fail_count = 0;  // valid batches counted for fail_every
    std::uint64_t requests = 0;    // requests decided, for down_after
    bool down = false;             // an outage (down_after or refuse_for) is in progress
};

// The progress of faults just set: with refuse_for, down from the start.
fault_progress initial_progress(const collector_faults& f) noexcept;

// One request read from a connection.
struct request_info {
    request_kind kind = request_kind::other;
    std::uint64_t nth = 1;   // its rank among the requests of its connection, from 1
    bool keep_alive = true;  // the client did not ask to close
};

// Decides the fate of request `r` under faults `f` and advances `p`. Precedence:
//   1. an outage in progress (p.down): lose, whatever the request; nothing is counted;
//   2. batch requests: reset_mid_request, stall, then for valid ones accept_then_drop_response,
//      script, fail_every, retry_after_status (a batch_headers request is only decided here
//      when reset_mid_request is set; otherwise it is read_body and uses nothing up);
//   3. on top, for every response (not a stall, reset or drop): close_after_response or
//      max_requests_per_connection (r.nth >= it) close after it (fault_close unless the
//      client asked to close);
//   4. the down_after-th request decided sets `outage` (and closes after its response).
// A malformed request gets no fault but counts toward down_after and closes.
response_plan decide(const collector_faults& f, fault_progress& p, const request_info& r);

// Whether decide() could give anything but a plain response: false lets the session skip the
// fault mutex (and read whole requests at once).
bool injects_any(const collector_faults& f, const fault_progress& p) noexcept;

}  // namespace evdispatch::detail
