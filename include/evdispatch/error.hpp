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
/// Value 0 is never used: an empty error_code means success.
enum class error {
    invalid_config = 1,    ///< A configuration field is out of range.
    invalid_url,           ///< The endpoint URL cannot be parsed or has an unsupported scheme.
    closed,                ///< The processor is closed (or closing).
    backlog_full,          ///< The backlog of unsent batches reached `backlog_max_bytes`.
    resolve_failed,        ///< The endpoint host name could not be resolved.
    connect_failed,        ///< TCP connect failed (refused, unreachable).
    connect_timeout,       ///< TCP connect (or TLS handshake) did not finish in time.
    request_timeout,       ///< The request/response exchange did not finish in time.
    connection_lost,       ///< The connection was reset or closed mid-exchange.
    response_too_large,    ///< The response exceeded the response size cap.
    bad_response,          ///< The response was not valid HTTP.
    http_status,           ///< The server answered with a non-2xx status.
    tls_handshake_failed,  ///< The TLS handshake failed for a reason other than verification.
    tls_verify_failed,     ///< The server certificate or host name failed verification.
    close_deadline,        ///< The close deadline passed before the batch was delivered.
    dispatcher_failed,     ///< A custom dispatcher reported a failure.
    unknown_event_key,     ///< The event key is not in the datafile.
    invalid_datafile,      ///< The datafile is malformed or unsupported.
    invalid_input,         ///< A builder input is malformed.
    expired,               ///< The batch was not delivered within health.max_age.
    spool_full,            ///< The disk spool reached spool.max_bytes.
    spool_write_failed,    ///< The disk refused a spool write (ENOSPC, EIO, a failing fsync).
    spool_corrupt,         ///< A spooled record failed its checksum.
    spool_version,         ///< The spool directory was written by a newer format version.
    /// A dispatcher's destination refused the batch for good (e.g. a Kafka producer's fatal
    /// error, a message too large for the topic): counted as dispatcher_failed, never retried.
    dispatcher_rejected,
};

/// The category of evdispatch error codes (name "evdispatch").
const boost::system::error_category& error_category() noexcept;

/// Makes an error_code from an evdispatch::error.
inline boost::system::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// Why an event was not delivered. Every dropped event is counted under exactly one reason.
enum class drop_reason : std::uint8_t {
    queue_full = 0,     ///< process(): the ring was full (event not accepted).
    closed,             ///< process(): the processor was closed (event not accepted).
    too_large,          ///< The event alone exceeds `batch.max_batch_bytes`.
    backlog_full,       ///< The backlog of unsent batches was full when its batch closed.
    connect_failed,     ///< Resolve or connect failed (refused, unreachable, DNS).
    timeout,            ///< Connect or request timed out.
    network_error,      ///< Connection reset/closed mid-exchange, malformed or oversized response.
    rejected_4xx,       ///< The server refused the batch with a 4xx status.
    server_error,       ///< The server answered 5xx (or another non-2xx status).
    tls_failed,         ///< TLS handshake failed (not a verification failure).
    tls_verify_failed,  ///< The server certificate or its host name failed verification.
    close_deadline,     ///< async_close's deadline passed before the batch was delivered.
    dispatcher_failed,  ///< A custom event_dispatcher reported a failure.
    expired,            ///< Not delivered within health.max_age of its batch's closing.
    spool_full,         ///< The memory room and the disk spool (spool.max_bytes) were full.
    spool_corrupt,      ///< Spooled, then read back with a bad checksum (events of the header).
};

/// Stable snake_case name of a drop reason, as used in metrics and JSON output.
/// Every enumerator has a case: with -Wswitch (and -Werror in CI) a new reason without a name
/// does not compile, and drop_reason_count and all_drop_reasons follow from this function.
constexpr std::string_view to_string(drop_reason r) noexcept {
    switch (r) {
        case drop_reason::queue_full:
            return "queue_full";
        case drop_reason::closed:
            return "closed";
        case drop_reason::too_large:
            return "too_large";
        case drop_reason::backlog_full:
            return "backlog_full";
        case drop_reason::connect_failed:
            return "connect_failed";
        case drop_reason::timeout:
            return "timeout";
        case drop_reason::network_error:
            return "network_error";
        case drop_reason::rejected_4xx:
            return "rejected_4xx";
        case drop_reason::server_error:
            return "server_error";
        case drop_reason::tls_failed:
            return "tls_failed";
        case drop_reason::tls_verify_failed:
            return "tls_verify_failed";
        case drop_reason::close_deadline:
            return "close_deadline";
        case drop_reason::dispatcher_failed:
            return "dispatcher_failed";
        case drop_reason::expired:
            return "expired";
        case drop_reason::spool_full:
            return "spool_full";
        case drop_reason::spool_corrupt:
            return "spool_corrupt";
    }
    return {};
}

namespace detail {
constexpr std::size_t count_drop_reasons() noexcept {
    std::size_t n = 0;
    while (n < 256 && !to_string(static_cast<drop_reason>(n)).empty())
        ++n;
    return n;
}
}  // namespace detail

/// Number of drop reasons (size of per-reason arrays); reasons are numbered 0..count-1.
inline constexpr std::size_t drop_reason_count = detail::count_drop_reasons();

/// All drop reasons, in enum order.
inline constexpr std::array<drop_reason, drop_reason_count> all_drop_reasons = [] {
    std::array<drop_reason, drop_reason_count> a{};
    for (std::size_t i = 0; i < a.size(); ++i)
        a[i] = static_cast<drop_reason>(i);
    return a;
}();

static_assert(drop_reason_count == std::size_t(drop_reason::spool_corrupt) + 1,
              "drop reasons are numbered without gaps, each with a name in to_string");

/// Maps a failed delivery's error code to the reason its events are counted under.
drop_reason classify_failure(const boost::system::error_code& ec) noexcept;

}  // namespace evdispatch

namespace boost::system {
template <>
struct is_error_code_enum<evdispatch::error> : std::true_type {};
}  // namespace boost::system
