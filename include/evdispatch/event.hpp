#pragma once

/// @file event.hpp
/// Immutable user events and the batch context they carry.

#include <evdispatch/version.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace evdispatch {

/// Everything that must be equal for two events to share one batch (one POST).
/// Built once per datafile revision and shared by pointer between the events built from it.
struct event_context {
    std::string account_id;                      ///< Datafile accountId.
    std::string project_id;                      ///< Datafile projectId.
    std::string revision;                        ///< Datafile revision.
    std::string client_name = "evdispatch-cpp";  ///< Sent as client_name.
    std::string client_version{
        version()};             ///< Sent as client_version (default: the library version).
    bool anonymize_ip = false;  ///< Datafile anonymizeIP.
    std::string endpoint;       ///< Full URL the batch is POSTed to.

    friend bool operator==(const event_context&, const event_context&) = default;
};

/// Shared, immutable batch context.
using context_ptr = std::shared_ptr<const event_context>;

/// One impression or conversion, immutable once built.
///
/// `visitor_json` is the complete visitor object (`{"visitor_id":...,"snapshots":[...]}`),
/// serialised once on the producer thread; the batcher only concatenates it. Made by
/// make_event(), the bytes live in the same allocation as the event (one allocation per event,
/// and one release); a user_event built by hand must keep the bytes its view points to alive.
struct user_event {
    context_ptr context;                              ///< Batch context; never null.
    std::string_view visitor_json;                    ///< Serialised visitor object (valid JSON).
    std::chrono::steady_clock::time_point created{};  ///< When it was built (for latency).
};

/// How events travel through the pipeline: shared and immutable.
using event_ptr = std::shared_ptr<const user_event>;

/// Makes an event in one allocation (the shared_ptr's control block, the event and a copy of
/// `visitor_json`), from the building thread's cache of event memory: when the event is
/// released, on the processor's thread or any other, the block goes back to that cache
/// instead of to the system allocator. `visitor_json` must be a complete visitor object
/// (what the event builder writes); it is not checked here. Throws std::bad_alloc.
event_ptr make_event(
    context_ptr context, std::string_view visitor_json,
    std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now());

}  // namespace evdispatch
