#pragma once

/// @file log_event.hpp
/// One batch request, as handed to an event_dispatcher.

#include <evdispatch/event.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace evdispatch {

/// One event-batch request: the contract of Optimizely's custom event dispatchers
/// (`dispatchEvent(httpVerb, url, params)`), with the body already serialised.
struct log_event {
    std::string url;                 ///< Endpoint URL (from the batch context).
    std::string http_verb = "POST";  ///< Always "POST" for event batches.
    std::vector<std::pair<std::string, std::string>> headers{
        {"Content-Type", "application/json"}};  ///< Request headers.
    std::string body;                           ///< The event batch JSON (Optimizely v1 envelope).
    /// `body` gzip-compressed, when http_config::compression is gzip (else empty). The
    /// built-in HTTP dispatcher sends it with `Content-Encoding: gzip`.
    std::string gzip_body;
    std::size_t event_count = 0;  ///< Number of visitors (events) in the body.
    context_ptr context;          ///< The batch context shared by all its events.
};

}  // namespace evdispatch
