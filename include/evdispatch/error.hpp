#pragma once

/// @file error.hpp
/// Error codes of evdispatch and the reasons an event can be dropped.

#include <boost/system/error_code.hpp>

#include <array>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace evdispatch {

/// Errors reported by evdispatch through `boost::system::error_code`.
enum class error {
    ok = 0,
    invalid_config,         ///< A configuration field is out of range.
    invalid_url,            ///< The endpoint URL cannot be parsed or has an unsupported scheme.
    queue_full,             ///< The hand-off ring was full; the event was not accepted.
    closed,                 ///< The processor is closed (or closing); the event was not accepted.
    event_too_large,        ///< One event alone exceeds `batch.max_batch_bytes`.
    backlog_full,           ///< The backlog of unsent batches reached `backlog_max_bytes`.
    resolve_failed,         ///< The endpoint host name could not be resolved.
    connect_failed,         ///< TCP connect failed (refused, unreachable).
    connect_timeout,        ///< TCP connect (or TLS handshake) did not finish in time.
    request_timeout,        ///< The request/response exchange did not finish in time.
    connection_lost,        ///< The connection was reset or closed mid-exchange.
    response_too_large,     ///< The response exceeded the response size cap.
    bad_response,           ///< The response was not valid HTTP.
    http_status,            ///< The server answered with a non-2xx status.
    tls_handshake_failed,   ///< The TLS handshake failed for a reason other than verification.
    tls_verify_failed,      ///< The server certificate or host name failed verification.
    close_deadline,         ///< The close deadline passed before the batch was delivered.
    dispatcher_failed,      ///< A custom dispatcher reported a failure.
    unknown_event_key,      ///< The event key is not in the datafile.
    invalid_datafile,       ///< The datafile is malformed or unsupported.
    invalid_input,          ///< A builder input is malformed.
};

/// The category of evdispatch error codes (name "evdispatch").
const boost::system::error_category& error_category() noexcept;

/// Makes an error_code from an evdispatch::error.
inline boost::system::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// Why an event was not delivered. Every dropped event is counted under exactly one reason.
enum class drop_reason : std::uint8_t {
    queue_full = 0,      ///< process(): the ring was full (event not accepted).
    closed,              ///< process(): the processor was closed (event not accepted).
    too_large,           ///< The event alone exceeds `batch.max_batch_bytes`.
    backlog_full,        ///< The backlog of unsent batches was full when its batch closed.
    connect_failed,      ///< Resolve or connect failed (refused, unreachable, DNS).
    timeout,             ///< Connect or request timed out.
    network_error,       ///< Connection reset/closed mid-exchange, malformed or oversized response.
    rejected_4xx,        ///< The server refused the batch with a 4xx status.
    server_error,        ///< The server answered 5xx (or another non-2xx status).
    tls_failed,          ///< TLS handshake failed (not a verification failure).
    tls_verify_failed,   ///< The server certificate or its host name failed verification.
    close_deadline,      ///< async_close's deadline passed before the batch was delivered.
    dispatcher_failed,   ///< A custom event_dispatcher reported a failure.
};

/// Number of drop reasons (size of per-reason arrays).
inline constexpr std::size_t drop_reason_count = 13;

/// Stable snake_case name of a drop reason, as used in metrics and JSON output.
std::string_view to_string(drop_reason r) noexcept;

/// All drop reasons, in enum order.
inline constexpr std::array<drop_reason, drop_reason_count> all_drop_reasons = {
    drop_reason::queue_full,     drop_reason::closed,        drop_reason::too_large,
    drop_reason::backlog_full,   drop_reason::connect_failed, drop_reason::timeout,
    drop_reason::network_error,  drop_reason::rejected_4xx,  drop_reason::server_error,
    drop_reason::tls_failed,     drop_reason::tls_verify_failed, drop_reason::close_deadline,
    drop_reason::dispatcher_failed,
};

/// Maps a failed delivery's error code to the reason its events are counted under.
drop_reason classify_failure(const boost::system::error_code& ec) noexcept;

}  // namespace evdispatch

namespace boost::system {
template <>
struct is_error_code_enum<evdispatch::error> : std::true_type {};
}  // namespace boost::system
