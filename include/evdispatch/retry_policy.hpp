#pragma once

/// @file retry_policy.hpp
/// The retry decision: a pure function of the attempt number, its outcome and the time spent.

#include <evdispatch/config.hpp>
#include <evdispatch/error.hpp>

#include <boost/system/error_code.hpp>

#include <chrono>
#include <optional>
#include <string_view>

namespace evdispatch {

/// What one delivery attempt of a batch produced.
struct attempt_outcome {
    boost::system::error_code ec;  ///< Empty when a response arrived (see status).
    unsigned status = 0;           ///< HTTP status (0: no response).
    /// The server's Retry-After, already converted to a wait, if it sent one.
    std::optional<std::chrono::milliseconds> retry_after;
};

/// What to do after an attempt.
struct retry_decision {
    enum class action { done, retry, give_up };
    action what = action::done;
    std::chrono::milliseconds delay{0};              ///< Wait before the retry (action::retry).
    drop_reason reason = drop_reason::server_error;  ///< Why the batch is given up.
};

/// Decides, for each failed attempt, whether to retry and after how long.
///
/// - Success (any 2xx, or status 0 without error from a custom dispatcher): done.
/// - Retried: connect/resolve errors and timeouts, connection resets or closes, malformed
///   responses, TLS handshake failures (not verification failures), request timeouts,
///   HTTP 408, 429 and 5xx, and failures reported by a custom dispatcher.
/// - Given up at once: other 4xx (`rejected_4xx`), other non-2xx statuses (`server_error`),
///   certificate or host name verification failures (`tls_verify_failed`), an oversized
///   response (`network_error`), a shut-down dispatcher (`close_deadline`).
/// - Backoff: full jitter, `jitter * min(max_backoff, base_backoff * 2^(attempt-1))`.
///   A Retry-After (seconds or HTTP-date) replaces it, capped at `max_retry_after`.
/// - Limits: at most `max_attempts` attempts; no retry that would start after
///   `max_retry_time` from the first attempt. Then the batch is given up with the reason of
///   its last failure.
class retry_policy {
public:
    explicit retry_policy(const retry_config& cfg) : cfg_(cfg) {}

    /// `attempt`: 1-based number of the attempt that just finished. `elapsed`: time since the
    /// batch's first attempt started. `jitter`: a uniform random number in [0, 1).
    retry_decision decide(unsigned attempt, const attempt_outcome& outcome,
                          std::chrono::milliseconds elapsed, double jitter) const noexcept;

    /// The drop reason for a failed attempt and whether it may be retried.
    static std::pair<drop_reason, bool> classify(const attempt_outcome& outcome) noexcept;

    const retry_config& config() const noexcept { return cfg_; }

private:
    retry_config cfg_;
};

/// Parses a Retry-After value: delta-seconds ("120") or an HTTP-date (IMF-fixdate
/// "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 or asctime forms). A date in the past gives 0.
/// Returns nullopt when the value is neither.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

}  // namespace evdispatch
