#include "optimizely/json_read.hpp"

namespace evdispatch::detail {

namespace json = boost::json;

namespace {

std::string describe(const std::string& path, json_field_error::fault f, const std::string& text) {
    std::string s = "'" + path + "' ";
    switch (f) {
        case json_field_error::fault::missing:
            return s + "is missing";
        case json_field_error::fault::wrong_type:
            return s + "must be " + text;
        case json_field_error::fault::invalid:
            break;
    }
    return s + text;
}

[[noreturn]] void wrong(std::string path, const char* must_be) {
    throw json_field_error(std::move(path), json_field_error::fault::wrong_type, must_be);
}

}  // namespace

json_field_error::json_field_error(std::string path, fault f, std::string text)
    : std::runtime_error(describe(path, f, text))
    , path_(std::move(path))
    , fault_(f)
    , text_(std::move(text)) {}

std::string json_reader::path(std::string_view base, std::string_view key) {
    std::string p;
    p.reserve(base.size() + 1 + key.size());
    p += base;
    if (!base.empty())
        p += '.';
    p += key;
    return p;
}

std::string json_reader::path(std::string_view base, std::size_t index) {
    return std::string(base) + "[" + std::to_string(index) + "]";
}

void json_reader::fail(std::string path, std::string problem) {
    throw json_field_error(std::move(path), json_field_error::fault::invalid, std::move(problem));
}

const json::object& json_reader::object(const json::value& v, std::string path) {
    if (!v.is_object())
        wrong(std::move(path), "an object");
    return v.get_object();
}

std::string json_reader::string(const json::value& v, std::string path) {
    if (!v.is_string())
        wrong(std::move(path), "a string");
    return std::string(v.get_string());
}

const json::value* json_reader::find(const json::object& o, std::string_view key) const {
    const json::value* v = o.if_contains(key);
    if (v && v->is_null() && o_.null == json_null::absent)
        return nullptr;
    return v;
}

const json::value& json_reader::require(const json::object& o, std::string_view key,
                                        std::string_view base) const {
    const json::value* v = find(o, key);
    if (!v)
        throw json_field_error(path(base, key), json_field_error::fault::missing, {});
    return *v;
}

const json::value* json_reader::optional(const json::object& o, std::string_view key) const {
    const json::value* v = o.if_contains(key);
    if (v && v->is_null() && o_.null != json_null::value)
        return nullptr;
    return v;
}

void json_reader::wrong_optional(std::string_view base, std::string_view key, const char* must_be,
                                 const char* or_null) const {
    wrong(path(base, key), o_.say_or_null && o_.null != json_null::value ? or_null : must_be);
}

std::string json_reader::required_string(const json::object& o, std::string_view key,
                                         std::string_view base) const {
    const json::value& v = require(o, key, base);
    if (!v.is_string())
        wrong(path(base, key), "a string");
    return std::string(v.get_string());
}

const json::array& json_reader::required_array(const json::object& o, std::string_view key,
                                               std::string_view base) const {
    const json::value& v = require(o, key, base);
    if (!v.is_array())
        wrong(path(base, key), "an array");
    return v.get_array();
}

const json::object& json_reader::required_object(const json::object& o, std::string_view key,
                                                 std::string_view base) const {
    const json::value& v = require(o, key, base);
    if (!v.is_object())
        wrong(path(base, key), "an object");
    return v.get_object();
}

std::optional<std::string> json_reader::optional_string(const json::object& o, std::string_view key,
                                                        std::string_view base) const {
    const json::value* v = optional(o, key);
    if (!v)
        return std::nullopt;
    if (!v->is_string())
        wrong_optional(base, key, "a string", "a string or null");
    return std::string(v->get_string());
}

std::optional<bool> json_reader::optional_bool(const json::object& o, std::string_view key,
                                               std::string_view base) const {
    const json::value* v = optional(o, key);
    if (!v)
        return std::nullopt;
    if (!v->is_bool())
        wrong_optional(base, key, "true or false", "true, false or null");
    return v->get_bool();
}

const json::array* json_reader::optional_array(const json::object& o, std::string_view key,
                                               std::string_view base) const {
    const json::value* v = optional(o, key);
    if (!v)
        return nullptr;
    if (!v->is_array())
        wrong_optional(base, key, "an array", "an array or null");
    return &v->get_array();
}

const json::object* json_reader::optional_object(const json::object& o, std::string_view key,
                                                 std::string_view base) const {
    const json::value* v = optional(o, key);
    if (!v)
        return nullptr;
    if (!v->is_object())
        wrong_optional(base, key, "an object", "an object or null");
    return &v->get_object();
}

}  // namespace evdispatch::detail
