#include "json_writer.hpp"

#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

using namespace evdispatch::detail;

TEST_CASE("json strings round-trip through a real parser", "[unit][json]") {
    const std::string input = GENERATE(
        std::string("plain"), std::string("quote \" and backslash \\"),
        std::string("controls \n\r\t\b\f \x01 \x1f"), std::string("\xc3\xa9t\xc3\xa9 \xe2\x82\xac"),
        std::string("emoji \xf0\x9f\x98\x80"), std::string(""), std::string("nul \0 byte", 10));
    std::string out;
    append_json_string(out, input);
    auto v = boost::json::parse(out);
    CHECK(std::string(v.as_string()) == input);
}

TEST_CASE("invalid UTF-8 is replaced with U+FFFD, never sent raw", "[unit][json]") {
    struct row {
        std::string in;
        std::string expect;
    };
    auto row_ = GENERATE(row{"a\xff" "b", "a\xEF\xBF\xBD" "b"},
                         row{"\xc3", "\xEF\xBF\xBD"},                  // truncated
                         row{"\xc0\xaf", "\xEF\xBF\xBD\xEF\xBF\xBD"},  // overlong
                         row{"\xed\xa0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},  // surrogate
                         row{"\xf4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"});
    CHECK_FALSE(is_valid_utf8(row_.in));
    std::string out;
    append_json_string(out, row_.in);
    auto v = boost::json::parse(out);
    CHECK(std::string(v.as_string()) == row_.expect);
}

TEST_CASE("numbers keep their kind and non-finite doubles become null", "[unit][json]") {
    std::string out;
    append_json_double(out, 12345.0);
    CHECK(out == "12345.0");
    out.clear();
    append_json_double(out, 0.5);
    CHECK(out == "0.5");
    out.clear();
    append_json_double(out, std::numeric_limits<double>::quiet_NaN());
    CHECK(out == "null");
    out.clear();
    append_json_double(out, -std::numeric_limits<double>::infinity());
    CHECK(out == "null");
    out.clear();
    append_json_double(out, 1e300);
    CHECK(boost::json::parse(out).as_double() == 1e300);
    out.clear();
    append_json_int(out, std::numeric_limits<std::int64_t>::min());
    CHECK(boost::json::parse(out).as_int64() == std::numeric_limits<std::int64_t>::min());
}
