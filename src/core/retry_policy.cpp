#include <evdispatch/retry_policy.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <ctime>
#include <string>
#include <vector>

namespace evdispatch {

std::pair<drop_reason, bool> retry_policy::classify(const attempt_outcome& o) noexcept {
    if (!o.ec || o.ec == error::http_status) {
        const unsigned s = o.status;
        if (s == 408 || s == 429)
            return {drop_reason::server_error, true};
        if (s >= 500 && s < 600)
            return {drop_reason::server_error, true};
        if (s >= 400 && s < 500)
            return {drop_reason::rejected_4xx, false};
        return {drop_reason::server_error, false};  // 1xx/3xx or other unexpected status
    }
    const drop_reason r = classify_failure(o.ec);
    switch (r) {
        case drop_reason::tls_verify_failed:
        case drop_reason::close_deadline:
        case drop_reason::too_large:
        case drop_reason::backlog_full:
            return {r, false};
        default:
            break;
    }
    if (o.ec == error::response_too_large)
        return {drop_reason::network_error, false};
    if (o.ec == error::dispatcher_rejected)
        return {drop_reason::dispatcher_failed, false};
    return {r, true};
}

retry_decision retry_policy::decide(unsigned attempt, const attempt_outcome& o,
                                    std::chrono::milliseconds elapsed,
                                    double jitter) const noexcept {
    retry_decision d;
    const bool ok_status = o.status == 0 || (o.status >= 200 && o.status < 300);
    if (!o.ec && ok_status)
        return d;  // done
    const auto [reason, retryable] = classify(o);
    d.reason = reason;
    d.what = retry_decision::action::give_up;
    if (!retryable || attempt >= cfg_.max_attempts)
        return d;

    std::chrono::milliseconds delay;
    if (o.retry_after) {
        delay = std::min(*o.retry_after, cfg_.max_retry_after);
    } else {
        const double base = static_cast<double>(cfg_.base_backoff.count());
        const double cap = static_cast<double>(cfg_.max_backoff.count());
        const double exp =
            std::min(cap, base * std::ldexp(1.0, static_cast<int>(std::min(attempt - 1, 60u))));
        const double j = std::clamp(jitter, 0.0, 1.0);
        delay = std::chrono::milliseconds(static_cast<std::int64_t>(j * exp));
    }
    if (cfg_.max_retry_time.count() > 0 && elapsed + delay > cfg_.max_retry_time)
        return d;
    d.what = retry_decision::action::retry;
    d.delay = delay;
    return d;
}

namespace {

int month_index(std::string_view m) {
    static constexpr std::array<std::string_view, 12> names = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; ++i)
        if (names[i] == m)
            return i;
    return -1;
}

bool parse_int(std::string_view s, int& out) {
    if (s.empty())
        return false;
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

bool parse_hms(std::string_view s, int& h, int& m, int& sec) {
    if (s.size() != 8 || s[2] != ':' || s[5] != ':')
        return false;
    return parse_int(s.substr(0, 2), h) && parse_int(s.substr(3, 2), m) &&
           parse_int(s.substr(6, 2), sec) && h < 24 && m < 60 && sec < 61;
}

std::vector<std::string_view> split_ws(std::string_view s) {
    std::vector<std::string_view> parts;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && s[i] == ' ')
            ++i;
        std::size_t j = i;
        while (j < s.size() && s[j] != ' ')
            ++j;
        if (j > i)
            parts.push_back(s.substr(i, j - i));
        i = j;
    }
    return parts;
}

// Days from 1970-01-01 to y-m-d (proleptic Gregorian; m 1..12).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view v, std::chrono::system_clock::time_point now) {
    while (!v.empty() && v.front() == ' ')
        v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ')
        v.remove_suffix(1);
    if (v.empty())
        return std::nullopt;
    if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        std::uint64_t secs = 0;
        auto r = std::from_chars(v.data(), v.data() + v.size(), secs);
        if (r.ec != std::errc{})
            secs = UINT32_MAX;  // absurdly large: capped by the policy
        return std::chrono::milliseconds(std::min<std::uint64_t>(secs, UINT32_MAX) * 1000);
    }
    auto parts = split_ws(v);
    int day = 0, year = 0, h = 0, m = 0, s = 0, mon = -1;
    if (parts.size() == 6 && parts[0].size() == 4 && parts[0][3] == ',' && parts[5] == "GMT") {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        if (!parse_int(parts[1], day) || (mon = month_index(parts[2])) < 0 ||
            !parse_int(parts[3], year) || !parse_hms(parts[4], h, m, s))
            return std::nullopt;
    } else if (parts.size() == 4 && parts[0].back() == ',' && parts[3] == "GMT") {
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        auto dmy = parts[1];
        if (dmy.size() != 9 || dmy[2] != '-' || dmy[6] != '-')
            return std::nullopt;
        if (!parse_int(dmy.substr(0, 2), day) || (mon = month_index(dmy.substr(3, 3))) < 0 ||
            !parse_int(dmy.substr(7, 2), year) || !parse_hms(parts[2], h, m, s))
            return std::nullopt;
        year += year < 70 ? 2000 : 1900;
    } else if (parts.size() == 5) {
        // asctime: Sun Nov  6 08:49:37 1994
        if ((mon = month_index(parts[1])) < 0 || !parse_int(parts[2], day) ||
            !parse_hms(parts[3], h, m, s) || !parse_int(parts[4], year))
            return std::nullopt;
    } else {
        return std::nullopt;
    }
    if (day < 1 || day > 31 || year < 1970)
        return std::nullopt;
    const std::int64_t epoch_s =
        days_from_civil(year, static_cast<unsigned>(mon + 1), static_cast<unsigned>(day)) * 86400 +
        h * 3600 + m * 60 + s;
    const auto when = std::chrono::system_clock::time_point(std::chrono::seconds(epoch_s));
    if (when <= now)
        return std::chrono::milliseconds(0);
    return std::chrono::duration_cast<std::chrono::milliseconds>(when - now);
}

}  // namespace evdispatch
