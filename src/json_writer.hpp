#pragma once

// A minimal streaming JSON writer appending to a std::string. Used on the producer thread to
// serialise visitors once, and by the batcher for the envelope. No document tree.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace evdispatch::detail {

/// Appends `s` as a JSON string literal (with quotes). Control characters are escaped;
/// invalid UTF-8 sequences are replaced by U+FFFD so the output is always valid JSON text.
void append_json_string(std::string& out, std::string_view s);

/// Whether `s` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

inline void append_json_int(std::string& out, std::int64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

/// Appends a double; non-finite values become `null` (JSON has no NaN or infinity).
/// Integral values keep a fraction (`12.0`) so the number reads as floating point.
inline void append_json_double(std::string& out, double v) {
    if (!std::isfinite(v)) {
        out += "null";
        return;
    }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    std::string_view sv(buf, static_cast<std::size_t>(r.ptr - buf));
    out += sv;
    if (sv.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

inline void append_json_bool(std::string& out, bool v) { out += v ? "true" : "false"; }

}  // namespace evdispatch::detail
