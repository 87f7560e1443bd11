// The typed JSON reader shared by the datafile parser, the SDK-batch splitter and the payload
// command: each failure names the field by its path from the root.

#include "optimizely/json_read.hpp"

#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <string>

namespace json = boost::json;
using evdispatch::detail::json_field_error;
using evdispatch::detail::json_null;
using evdispatch::detail::json_reader;

namespace {

// The error a read throws (fails the test when it does not throw).
template <class Read>
json_field_error error_of(Read&& read) {
    try {
        read();
    } catch (const json_field_error& e) {
        return e;
    }
    FAIL("expected a json_field_error");
    return json_field_error("", json_field_error::fault::invalid, "");
}

}  // namespace

TEST_CASE("json paths: members joined by dots, elements by index", "[unit][optimizely][json]") {
    CHECK(json_reader::path("", "a") == "a");
    CHECK(json_reader::path("a", "b") == "a.b");
    CHECK(json_reader::path("a.b", 3) == "a.b[3]");
    CHECK(json_reader::path(json_reader::path("experiments", 2), "variations") ==
          "experiments[2].variations");
}

TEST_CASE("json reads name the field, its path and what it must be", "[unit][optimizely][json]") {
    const json::object doc =
        json::parse(R"({"s":"x","n":1,"z":null,"b":true,"o":{"k":[]}})").as_object();
    const json_reader r;  // json_null::optional, no "or null"
    const auto& o = doc.at("o").as_object();

    CHECK(r.required_string(doc, "s") == "x");
    CHECK(r.optional_bool(doc, "b") == true);
    CHECK(r.required_array(o, "k", "o").empty());
    CHECK_FALSE(r.optional_string(doc, "absent"));
    CHECK_FALSE(r.optional_string(doc, "z"));  // null reads as absent when optional

    // Each read by name (GENERATE rows outlive the locals, so they hold no lambdas).
    auto read = [&](const std::string& name) {
        if (name == "required_string absent")
            r.required_string(doc, "absent");
        else if (name == "required_string number")
            r.required_string(doc, "n");
        else if (name == "required_string null")
            r.required_string(doc, "z");
        else if (name == "required_array nested")
            r.required_array(o, "absent", "o");
        else if (name == "required_object string")
            r.required_object(doc, "s");
        else if (name == "optional_bool string")
            r.optional_bool(doc, "s");
        else if (name == "optional_array object")
            r.optional_array(doc, "o");
        else if (name == "optional_object nested array")
            r.optional_object(o, "k", "o");
        else if (name == "object element")
            json_reader::object(doc.at("s"), "list[4]");
        else if (name == "string element")
            json_reader::string(doc.at("n"), "ids[0]");
        else if (name == "fail")
            json_reader::fail("version", "is not supported");
    };
    using fault = json_field_error::fault;
    struct row {
        std::string read;
        std::string path;
        fault kind;
        std::string what;
    };
    const auto x = GENERATE(
        row{"required_string absent", "absent", fault::missing, "'absent' is missing"},
        row{"required_string number", "n", fault::wrong_type, "'n' must be a string"},
        row{"required_string null", "z", fault::wrong_type, "'z' must be a string"},
        row{"required_array nested", "o.absent", fault::missing, "'o.absent' is missing"},
        row{"required_object string", "s", fault::wrong_type, "'s' must be an object"},
        row{"optional_bool string", "s", fault::wrong_type, "'s' must be true or false"},
        row{"optional_array object", "o", fault::wrong_type, "'o' must be an array"},
        row{"optional_object nested array", "o.k", fault::wrong_type, "'o.k' must be an object"},
        row{"object element", "list[4]", fault::wrong_type, "'list[4]' must be an object"},
        row{"string element", "ids[0]", fault::wrong_type, "'ids[0]' must be a string"},
        row{"fail", "version", fault::invalid, "'version' is not supported"});
    INFO(x.read);
    const auto e = error_of([&] { read(x.read); });
    CHECK(e.path() == x.path);
    CHECK(e.kind() == x.kind);
    CHECK(std::string(e.what()) == x.what);
}

TEST_CASE("json null: a value, absent where optional, or absent everywhere",
          "[unit][optimizely][json]") {
    const json::object doc = json::parse(R"({"z":null})").as_object();
    using fault = json_field_error::fault;

    const json_reader as_value({.null = json_null::value});
    CHECK(error_of([&] { as_value.optional_bool(doc, "z"); }).kind() == fault::wrong_type);
    CHECK(error_of([&] { as_value.required_string(doc, "z"); }).kind() == fault::wrong_type);
    CHECK(as_value.find(doc, "z") != nullptr);

    const json_reader optional({.null = json_null::optional});
    CHECK_FALSE(optional.optional_bool(doc, "z"));
    CHECK(error_of([&] { optional.required_string(doc, "z"); }).kind() == fault::wrong_type);

    const json_reader absent({.null = json_null::absent, .say_or_null = true});
    CHECK_FALSE(absent.optional_bool(doc, "z"));
    CHECK(absent.optional_object(doc, "z") == nullptr);
    CHECK(absent.find(doc, "z") == nullptr);
    CHECK(error_of([&] { absent.required_string(doc, "z"); }).kind() == fault::missing);

    // say_or_null: a wrong-type message on an optional member says that null is fine too.
    const json::object bad = json::parse(R"({"s":1,"b":1,"o":1,"a":1})").as_object();
    CHECK(error_of([&] { absent.optional_string(bad, "s"); }).text() == "a string or null");
    CHECK(error_of([&] { absent.optional_bool(bad, "b"); }).text() == "true, false or null");
    CHECK(error_of([&] { absent.optional_object(bad, "o"); }).text() == "an object or null");
    CHECK(error_of([&] { absent.optional_array(bad, "a"); }).text() == "an array or null");
    // ... but not on a required one.
    CHECK(error_of([&] { absent.required_string(bad, "s"); }).text() == "a string");
}
