#pragma once

/// @file value.hpp
/// A small JSON-like value for user attributes and event tags.

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace evdispatch {

/// A JSON-like value: null, bool, 64-bit integer, double (NaN and infinities included),
/// string, array or object. Objects keep their members in the order they were given.
///
/// It exists so that the builder can apply the per-type rules of the wire format (an integer
/// attribute is not a double attribute, `0` is not `false`, a NaN tag is not dropped silently)
/// without pulling a JSON library into the hot path. It is a plain value type: copyable,
/// movable, compared member by member.
///
/// Conversions are implicit from the obvious C++ types: `nullptr`, `bool`, every integer type
/// (an unsigned value above INT64_MAX is stored as a double), `float`/`double`, strings
/// (`const char*` is a string, never a bool), `value::array` and `value::object`.
///
/// Strings are bytes meant to be UTF-8. They are never rejected: when written, an invalid
/// UTF-8 sequence is replaced by U+FFFD (see docs/optimizely.md).
class value {
public:
    /// Array of values.
    using array = std::vector<value>;
    /// Object members in the caller's order. Keys should be unique; when a key repeats, the
    /// builder uses its first occurrence and ignores the others.
    using object = std::vector<std::pair<std::string, value>>;

    /// The kind of a value.
    enum class kind : std::uint8_t { null, boolean, integer, floating, string, array, object };

    /// Null.
    value() noexcept = default;
    /// Null.
    value(std::nullptr_t) noexcept {}
    /// Boolean.
    value(bool b) noexcept : v_(b) {}
    /// Integer. Unsigned values above INT64_MAX become doubles (JSON numbers either way).
    template <class T>
    requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) value(T i)
    noexcept {
        if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
            if (i > static_cast<T>(std::numeric_limits<std::int64_t>::max())) {
                v_ = static_cast<double>(i);
                return;
            }
        }
        v_ = static_cast<std::int64_t>(i);
    }
    /// Floating point (NaN and infinities allowed; the builder applies the wire rules).
    value(double d) noexcept : v_(d) {}
    /// Floating point.
    value(float f) noexcept : v_(static_cast<double>(f)) {}
    /// String.
    value(std::string s) noexcept : v_(std::move(s)) {}
    /// String.
    value(std::string_view s) : v_(std::string(s)) {}
    /// String (not a bool).
    value(const char* s) : v_(std::string(s)) {}
    /// Array.
    value(array a) noexcept : v_(std::move(a)) {}
    /// Object.
    value(object o) noexcept : v_(std::move(o)) {}

    /// The kind held.
    kind type() const noexcept { return static_cast<kind>(v_.index()); }

    bool is_null() const noexcept { return type() == kind::null; }
    bool is_bool() const noexcept { return type() == kind::boolean; }
    bool is_int64() const noexcept { return type() == kind::integer; }
    bool is_double() const noexcept { return type() == kind::floating; }
    /// An integer or a double.
    bool is_number() const noexcept { return is_int64() || is_double(); }
    bool is_string() const noexcept { return type() == kind::string; }
    bool is_array() const noexcept { return type() == kind::array; }
    bool is_object() const noexcept { return type() == kind::object; }

    /// Pointers to the held alternative, or null when it holds another kind.
    const bool* if_bool() const noexcept { return std::get_if<bool>(&v_); }
    const std::int64_t* if_int64() const noexcept { return std::get_if<std::int64_t>(&v_); }
    const double* if_double() const noexcept { return std::get_if<double>(&v_); }
    const std::string* if_string() const noexcept { return std::get_if<std::string>(&v_); }
    const array* if_array() const noexcept { return std::get_if<array>(&v_); }
    const object* if_object() const noexcept { return std::get_if<object>(&v_); }

    /// Checked accessors: throw std::bad_variant_access on another kind.
    bool as_bool() const { return std::get<bool>(v_); }
    std::int64_t as_int64() const { return std::get<std::int64_t>(v_); }
    double as_double() const { return std::get<double>(v_); }
    const std::string& as_string() const { return std::get<std::string>(v_); }
    const array& as_array() const { return std::get<array>(v_); }
    const object& as_object() const { return std::get<object>(v_); }

    /// Same kind and same content (NaN != NaN, as for double).
    friend bool operator==(const value& a, const value& b) noexcept { return a.v_ == b.v_; }

private:
    std::variant<std::monostate, bool, std::int64_t, double, std::string, array, object> v_;
};

}  // namespace evdispatch
