#pragma once

/// @file event_dispatcher.hpp
/// The interface that sends one batch and reports the result.

#include <evdispatch/log_event.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace evdispatch {

/// What happened to one delivery attempt of a batch.
struct dispatch_result {
    unsigned status = 0;  ///< HTTP status, 0 when no response was received.
    std::string message;  ///< Human-readable detail (e.g. the server's reason or error text).
    std::size_t bytes_sent = 0;      ///< Request bytes written (0 if nothing was sent).
    bool connection_opened = false;  ///< A new connection was opened for this attempt.
    bool bytes_on_wire = false;      ///< Some part of the request reached the server.
    /// The server's Retry-After converted to a wait (HTTP dispatcher), if it sent one.
    std::optional<std::chrono::milliseconds> retry_after;
    /// The endpoint refused the gzipped body (415 or 400) and the result is that of the same
    /// batch sent again uncompressed (HTTP dispatcher, http_config::compression gzip).
    bool compression_refused = false;
};

/// Completion signature of event_dispatcher::async_dispatch.
/// `ec` is empty on success (any 2xx); otherwise it says why (see evdispatch::error).
using dispatch_signature = void(boost::system::error_code, dispatch_result);

/// Sends batches. Implement it to deliver batches somewhere other than HTTP (a message bus,
/// a file, a test double); the processor keeps batching, accounting, retries and lifecycle.
///
/// The processor calls every member from its strand, never concurrently, and never has more
/// than max_in_flight() dispatches outstanding.
class event_dispatcher {
public:
    virtual ~event_dispatcher() = default;

    /// Starts sending `ev`. The handler must be invoked exactly once, from any thread,
    /// at any time (also from inside this call); evdispatch moves the result onto its strand.
    /// `ev` stays alive until the handler runs.
    virtual void async_dispatch(
        std::shared_ptr<const log_event> ev,
        boost::asio::any_completion_handler<dispatch_signature> handler) = 0;

    /// How many dispatches may be outstanding at once (default 1).
    virtual std::size_t max_in_flight() const noexcept { return 1; }

    /// Abandon outstanding work: called once when async_close's deadline passes (or on
    /// destruction of the processor). Outstanding handlers may still run; their results are
    /// then ignored. The default does nothing.
    virtual void shutdown() noexcept {}
};

}  // namespace evdispatch
