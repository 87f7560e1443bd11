#pragma once

/// @file check.hpp
/// Validation of an event-batch body, as the loopback collector does it for every batch.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace evdispatch {

/// Outcome of validating one event-batch body.
struct batch_check {
    bool ok = false;                 ///< The body is a valid event batch.
    std::string error;               ///< Why not, when !ok.
    std::uint64_t visitors = 0;      ///< Visitors in the batch.
    std::vector<std::string> uuids;  ///< Event uuids, in order (one per snapshot event).
};

/// Validates an event-batch body against the Optimizely v1 envelope with a streaming (SAX)
/// parser: top-level object with string account_id, project_id, revision, client_name,
/// client_version, bool anonymize_ip, enrich_decisions and an array `visitors` whose items
/// have a string visitor_id, an array attributes and snapshots whose events each have a string
/// entity_id, key, uuid and an integer timestamp.
batch_check check_event_batch(std::string_view body);

}  // namespace evdispatch
