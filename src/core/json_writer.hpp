#pragma once

// Streaming JSON writing, no document tree. Two front ends over the same rules:
// - the append_json_* functions append to a std::string (the batcher's envelope, the CLI);
// - json_sink writes through a raw cursor (the builder's visitor JSON, the hot path).
// Each rule (which bytes a string can hold as they are, how a double is written) is written
// once below; both front ends call it.

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace evdispatch::detail {

// ---- rules ---------------------------------------------------------------------------------

// 1 for the bytes a JSON string cannot hold as they are (or that need UTF-8 validation):
// controls, '"', '\\' and every byte >= 0x80.
constexpr std::array<unsigned char, 256> make_json_needs_care() {
    std::array<unsigned char, 256> t{};
    for (std::size_t c = 0; c < 256; ++c)
        t[c] = (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') ? 1 : 0;
    return t;
}
inline constexpr auto json_needs_care = make_json_needs_care();

/// Whether `s` can be written between quotes as is: printable ASCII without '"' or '\\'.
/// Eight bytes at a time (SWAR): a byte is flagged when its high bit is set, when it is below
/// 0x20, or when it equals '"' or '\\' (the "has zero byte" trick applied to w ^ pattern).
inline bool is_plain_ascii(std::string_view s) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    auto flagged = [](std::uint64_t w) {
        const std::uint64_t q = w ^ (ones * '"');
        const std::uint64_t b = w ^ (ones * '\\');
        return (w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
    };
    const char* p = s.data();
    const std::size_t n = s.size();
    if (n < 8) {
        unsigned bad = 0;
        for (std::size_t i = 0; i < n; ++i)
            bad |= json_needs_care[static_cast<unsigned char>(p[i])];
        return bad == 0;
    }
    std::uint64_t acc = 0;
    std::uint64_t w;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::memcpy(&w, p + i, 8);
        acc |= flagged(w);
    }
    if (i < n) {  // the last 8 bytes, overlapping bytes already checked (no partial load)
        std::memcpy(&w, p + n - 8, 8);
        acc |= flagged(w);
    }
    return acc == 0;
}

/// Whether `s` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

/// Room write_json_int needs.
inline constexpr std::size_t json_int_max_chars = 20;  // "-9223372036854775808"
/// Room write_json_double needs: the longest shortest form (24 chars) and ".0".
inline constexpr std::size_t json_double_max_chars = 32;

/// Writes an integer at `p` (room for json_int_max_chars); returns the end.
inline char* write_json_int(char* p, std::int64_t v) noexcept {
    return std::to_chars(p, p + json_int_max_chars, v).ptr;
}

/// Writes a double at `p` (room for json_double_max_chars); returns the end. Non-finite ->
/// `null` (JSON has no NaN or infinity); otherwise the shortest form that reads back exactly,
/// with `.0` added when it has no fraction or exponent, so that it reads as floating point.
inline char* write_json_double(char* p, double v) noexcept {
    if (!std::isfinite(v)) {
        std::memcpy(p, "null", 4);
        return p + 4;
    }
    char* const start = p;
    p = std::to_chars(p, p + json_double_max_chars - 2, v).ptr;
    if (std::string_view(start, static_cast<std::size_t>(p - start)).find_first_of(".eE") ==
        std::string_view::npos) {
        *p++ = '.';
        *p++ = '0';
    }
    return p;
}

// ---- std::string front end -----------------------------------------------------------------

/// Appends `s` as a JSON string literal (with quotes). Control characters are escaped;
/// invalid UTF-8 sequences are replaced by U+FFFD so the output is always valid JSON text.
void append_json_string(std::string& out, std::string_view s);

/// Appends an integer.
inline void append_json_int(std::string& out, std::int64_t v) {
    char buf[json_int_max_chars];
    out.append(buf, write_json_int(buf, v));
}

/// Appends a double by write_json_double's rule.
inline void append_json_double(std::string& out, double v) {
    char buf[json_double_max_chars];
    out.append(buf, write_json_double(buf, v));
}

inline void append_json_bool(std::string& out, bool v) {
    out += v ? "true" : "false";
}

// ---- raw-cursor front end ------------------------------------------------------------------

/// Writes JSON into a std::string through a raw cursor: one capacity check per piece and
/// literals copied with compile-time sizes, instead of std::string's bookkeeping on every
/// append. The string is sized to its capacity while writing; finish() trims it.
class json_sink {
public:
    /// Appends to `s`, with room for `expected` bytes to start with (it grows as needed).
    json_sink(std::string& s, std::size_t expected) : s_(s) {
        const std::size_t used = s_.size();
        s_.resize(used + expected);
        p_ = s_.data() + used;
        end_ = s_.data() + s_.size();
    }
    json_sink(const json_sink&) = delete;
    json_sink& operator=(const json_sink&) = delete;

    /// A literal (JSON text) without its terminating NUL.
    template <std::size_t N>
    void lit(const char (&x)[N]) {
        need(N - 1);
        std::memcpy(p_, x, N - 1);
        p_ += N - 1;
    }
    void ch(char c) {
        need(1);
        *p_++ = c;
    }
    /// A JSON string: plain ASCII copied; anything else as append_json_string writes it.
    void str(std::string_view v) {
        if (!is_plain_ascii(v)) [[unlikely]] {
            str_escaped(v);
            return;
        }
        need(v.size() + 2);
        *p_++ = '"';
        if (!v.empty())
            std::memcpy(p_, v.data(), v.size());
        p_ += v.size();
        *p_++ = '"';
    }
    void boolean(bool b) {
        if (b)
            lit("true");
        else
            lit("false");
    }
    void i64(std::int64_t v) {
        need(json_int_max_chars);
        p_ = write_json_int(p_, v);
    }
    /// A double by write_json_double's rule.
    void dbl(double v) {
        need(json_double_max_chars);
        p_ = write_json_double(p_, v);
    }
    /// Text copied as is (the caller vouches that it is valid JSON).
    void raw(std::string_view v) {
        need(v.size());
        if (!v.empty())
            std::memcpy(p_, v.data(), v.size());
        p_ += v.size();
    }
    /// Exactly `n` bytes written in place by `fill(char* at)` (the caller vouches that they
    /// are valid JSON): for fixed-size text made without an intermediate copy.
    template <class Fill>
    void fill(std::size_t n, Fill&& f) {
        need(n);
        f(p_);
        p_ += n;
    }

    /// Trims the string to what was written. Call once, at the end.
    void finish() { s_.resize(static_cast<std::size_t>(p_ - s_.data())); }

private:
    [[gnu::noinline]] void str_escaped(std::string_view v) {
        s_.resize(static_cast<std::size_t>(p_ - s_.data()));
        append_json_string(s_, v);
        const std::size_t used = s_.size();
        s_.resize(std::max(s_.capacity(), used + 256));
        p_ = s_.data() + used;
        end_ = s_.data() + s_.size();
    }
    void need(std::size_t n) {
        if (static_cast<std::size_t>(end_ - p_) < n)
            grow(n);
    }
    void grow(std::size_t n) {
        const auto used = static_cast<std::size_t>(p_ - s_.data());
        s_.resize(std::max(2 * s_.size(), used + n + 256));
        p_ = s_.data() + used;
        end_ = s_.data() + s_.size();
    }

    std::string& s_;
    char* p_;
    char* end_;
};

}  // namespace evdispatch::detail
