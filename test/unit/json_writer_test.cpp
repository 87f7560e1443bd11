#include "core/json_writer.hpp"

#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
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
    auto row_ =
        GENERATE(row{"a\xff"
                     "b",
                     "a\xEF\xBF\xBD"
                     "b"},
                 row{"\xc3", "\xEF\xBF\xBD"},                                  // truncated
                 row{"\xc0\xaf", "\xEF\xBF\xBD\xEF\xBF\xBD"},                  // overlong
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

TEST_CASE("doubles: the shortest form that reads back, .0 only without fraction or exponent",
          "[unit][json]") {
    struct row {
        double in;
        const char* out;
    };
    const auto r =
        GENERATE(row{0.0, "0.0"}, row{-0.0, "-0.0"}, row{1.5, "1.5"}, row{12345.0, "12345.0"},
                 row{1e21, "1e+21"}, row{5e-324, "5e-324"}, row{-2.5e-7, "-2.5e-07"},
                 row{0.1, "0.1"}, row{std::numeric_limits<double>::infinity(), "null"});
    char buf[json_double_max_chars];
    CHECK(std::string(buf, write_json_double(buf, r.in)) == r.out);
    std::string out;
    append_json_double(out, r.in);
    CHECK(out == r.out);
}

TEST_CASE("is_plain_ascii agrees with the byte table at every position", "[unit][json]") {
    // Every byte value at every position of strings of 0..24 bytes: the 8-byte (SWAR) path,
    // its overlapping tail and the short path must all flag exactly the bytes of the table.
    std::size_t mismatches = 0;
    for (std::size_t n = 1; n <= 24; ++n) {
        for (std::size_t at = 0; at < n; ++at) {
            for (int b = 0; b < 256; ++b) {
                std::string s(n, 'a');
                s[at] = static_cast<char>(b);
                if (is_plain_ascii(s) != (json_needs_care[static_cast<unsigned char>(b)] == 0))
                    ++mismatches;
            }
        }
    }
    CHECK(mismatches == 0);
    CHECK(is_plain_ascii(""));
    CHECK_FALSE(is_plain_ascii(std::string("0123456789\x7f\"", 12)));
}

TEST_CASE("json_sink writes what the std::string writers write", "[unit][json]") {
    const std::string s = GENERATE(
        std::string(""), std::string("plain"), std::string("plain and longer than eight bytes"),
        std::string("quote \" and backslash \\"), std::string("controls \n\x01"),
        std::string("\xc3\xa9t\xc3\xa9"), std::string("bad \xff byte"), std::string(300, 'x'));
    const double d = GENERATE(0.0, 12345.0, 0.1, -1e300, std::numeric_limits<double>::quiet_NaN());
    std::string want = "{";
    append_json_string(want, s);
    want += ':';
    want += '[';
    append_json_double(want, d);
    want += ',';
    append_json_int(want, std::numeric_limits<std::int64_t>::min());
    want += ',';
    append_json_bool(want, false);
    want += ",null,\"fixed\"]}";

    // Starting after existing text, with no room reserved: every piece makes the sink grow.
    std::string got = "prefix";
    {
        json_sink w(got, 0);
        w.ch('{');
        w.str(s);
        w.ch(':');
        w.lit("[");
        w.dbl(d);
        w.ch(',');
        w.i64(std::numeric_limits<std::int64_t>::min());
        w.ch(',');
        w.boolean(false);
        w.raw(",null,");
        w.fill(7, [](char* p) { std::memcpy(p, "\"fixed\"", 7); });
        w.lit("]}");
        w.finish();
    }
    CHECK(got == "prefix" + want);
    CHECK_NOTHROW(boost::json::parse(want));
}
