#pragma once

// Typed reads of a parsed JSON document (Boost.JSON) that name a bad field by its path from
// the root ("experiments[2].variations[0].id"). Shared by the datafile parser, the SDK-batch
// splitter and the CLI's payload reader. A read that fails throws json_field_error; the
// reader of the document catches it where it reads and reports it in its own terms (error
// code, message prefix, entry index).

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace evdispatch::detail {

/// A field that is missing, of the wrong type, or otherwise unusable. what(): "'<path>' is
/// missing", "'<path>' must be a string", "'<path>' <problem>".
class json_field_error : public std::runtime_error {
public:
    enum class fault { missing, wrong_type, invalid };

    /// `text`: for wrong_type what the field must be ("a string"), for invalid the problem.
    json_field_error(std::string path, fault f, std::string text);

    /// From the root: "a.b[2].c". The root itself is named by its reader ("(top level)").
    const std::string& path() const noexcept { return path_; }
    fault kind() const noexcept { return fault_; }
    /// wrong_type: what the field must be ("true or false"); invalid: the problem; missing: "".
    const std::string& text() const noexcept { return text_; }

private:
    std::string path_;
    fault fault_;
    std::string text_;
};

/// How a member whose value is JSON null reads.
enum class json_null {
    value,     ///< A value like any other: of the wrong type wherever a type is expected.
    optional,  ///< As absent where the member is optional; of the wrong type where required.
    absent,    ///< As absent, optional or required (null means "none").
};

/// Reads members of JSON objects by type, naming each one by its path.
class json_reader {
public:
    struct options {
        json_null null = json_null::optional;
        /// Whether a wrong-type message on an optional member says that null is accepted too
        /// ("must be a string or null").
        bool say_or_null = false;
    };

    json_reader() = default;
    explicit json_reader(options o) : o_(o) {}

    /// "base.key" ("key" when `base` is empty).
    static std::string path(std::string_view base, std::string_view key);
    /// "base[index]".
    static std::string path(std::string_view base, std::size_t index);

    /// Throws json_field_error(invalid): `path` and what is wrong with it.
    [[noreturn]] static void fail(std::string path, std::string problem);

    /// `v` as an object ("must be an object").
    static const boost::json::object& object(const boost::json::value& v, std::string path);
    /// `v` as a string ("must be a string").
    static std::string string(const boost::json::value& v, std::string path);

    /// The member `key` of `o`, or null when absent (or null, under json_null::absent).
    const boost::json::value* find(const boost::json::object& o, std::string_view key) const;

    std::string required_string(const boost::json::object& o, std::string_view key,
                                std::string_view base = {}) const;
    const boost::json::array& required_array(const boost::json::object& o, std::string_view key,
                                             std::string_view base = {}) const;
    const boost::json::object& required_object(const boost::json::object& o, std::string_view key,
                                               std::string_view base = {}) const;

    std::optional<std::string> optional_string(const boost::json::object& o, std::string_view key,
                                               std::string_view base = {}) const;
    std::optional<bool> optional_bool(const boost::json::object& o, std::string_view key,
                                      std::string_view base = {}) const;
    /// Null when absent.
    const boost::json::array* optional_array(const boost::json::object& o, std::string_view key,
                                             std::string_view base = {}) const;
    /// Null when absent.
    const boost::json::object* optional_object(const boost::json::object& o, std::string_view key,
                                               std::string_view base = {}) const;

private:
    // The member for a required read: throws when it is missing.
    const boost::json::value& require(const boost::json::object& o, std::string_view key,
                                      std::string_view base) const;
    // The member for an optional read, or null.
    const boost::json::value* optional(const boost::json::object& o, std::string_view key) const;
    [[noreturn]] void wrong_optional(std::string_view base, std::string_view key,
                                     const char* must_be, const char* or_null) const;

    options o_;
};

}  // namespace evdispatch::detail
