// Each rule of the Optimizely v1 event format on its own, through the user-level builder.

#include "optimizely_test_support.hpp"

#include "core/json_writer.hpp"
#include "support/payload_input.hpp"
#include "support/workload.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <thread>

namespace json = boost::json;
using namespace evdispatch;
// Not `value`: GENERATE brings Catch::Generators::value into scope.
using V = evdispatch::value;

namespace {

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();
constexpr std::int64_t two53 = std::int64_t{1} << 53;

context_ptr ctx() {
    return test::make_context(std::string(us_endpoint));
}

std::shared_ptr<const attribute_id_map> ids() {
    return std::make_shared<attribute_id_map>(
        attribute_id_map{{"test_attribute", "111094"}, {"known", "222"}, {"$opt_known", "333"}});
}

event_builder fixed_builder(std::optional<bool> bot = std::nullopt) {
    event_builder b(ctx(), bot, ids());
    b.set_clock([] { return std::int64_t{42123}; });
    b.set_uuid_source([] { return std::string("a68cf1ad-0393-4e18-af87-efe8f01a7c9c"); });
    return b;
}

decision basic_decision() {
    decision d;
    d.layer_id = "111182";
    d.experiment_id = "111127";
    d.variation_id = "111129";
    d.variation_key = "variation";
    d.flag_key = "flag";
    d.rule_key = "rule";
    d.rule_type = "experiment";
    d.enabled = true;
    return d;
}

json::array attributes_of(const event_ptr& ev) {
    return test::parse_visitor(ev).at("attributes").as_array();
}

const json::object& event_of(const json::value& visitor) {
    return visitor.at("snapshots").at(0).at("events").at(0).as_object();
}

json::value conversion_visitor(const std::optional<event_tags>& tags) {
    auto b = fixed_builder();
    conversion c{"purchase", "111095", tags};
    return test::parse_visitor(b.make_conversion("u", {}, c));
}

}  // namespace

TEST_CASE("value converts from C++ types without surprises", "[unit][optimizely]") {
    CHECK(V().is_null());
    CHECK(V(nullptr).is_null());
    CHECK(V("text").is_string());  // not a bool
    CHECK(V(std::string_view("sv")).as_string() == "sv");
    CHECK(V(true).is_bool());
    CHECK(V(0).is_int64());
    CHECK(V(std::uint8_t{7}).as_int64() == 7);
    CHECK(V(-5L).as_int64() == -5);
    CHECK(V(std::numeric_limits<std::uint64_t>::max()).is_double());
    CHECK(V(std::uint64_t{1} << 62).as_int64() == (std::int64_t{1} << 62));
    CHECK(V(1.5f).as_double() == 1.5);
    CHECK(V(V::array{1, "a"}).as_array().size() == 2);
    CHECK(V(V::object{{"k", 1}}).as_object().at(0).first == "k");
    CHECK(V(1) != V(1.0));  // kinds differ
}

TEST_CASE("attribute types: which values are sent and how", "[unit][optimizely]") {
    struct row {
        const char* name;
        value v;
        const char* sent;  // the value's JSON text, or nullptr when the attribute is dropped
    };
    const auto r = GENERATE(
        row{"string", V("test_value"), "\"test_value\""},
        row{"empty string (falsy, kept)", V(""), "\"\""}, row{"true", V(true), "true"},
        row{"false (falsy, kept)", V(false), "false"}, row{"int 0 (falsy, kept)", V(0), "0"},
        row{"int", V(42), "42"}, row{"int 2^53", V(two53), "9007199254740992"},
        row{"int -2^53", V(-two53), "-9007199254740992"}, row{"int 2^53+1", V(two53 + 1), nullptr},
        row{"int -(2^53+1)", V(-two53 - 1), nullptr},
        row{"int64 min", V(std::numeric_limits<std::int64_t>::min()), nullptr},
        row{"double 0.0 (falsy, kept)", V(0.0), "0.0"}, row{"double", V(1.5), "1.5"},
        row{"double -2^53", V(-9007199254740992.0), "-9007199254740992.0"},
        row{"double above 2^53", V(9007199254740994.0), nullptr},
        row{"double 1e300", V(1e300), nullptr}, row{"NaN", V(nan_v), nullptr},
        row{"+inf", V(inf_v), nullptr}, row{"-inf", V(-inf_v), nullptr},
        row{"uint64 max", V(std::numeric_limits<std::uint64_t>::max()), nullptr},
        row{"null", V(), nullptr}, row{"array", V(V::array{1, 2}), nullptr},
        row{"object", V(V::object{{"a", 1}}), nullptr});
    INFO(r.name);
    CHECK(is_sendable_attribute(r.v) == (r.sent != nullptr));
    const auto ev = fixed_builder().make_impression("u", {{"known", r.v}}, basic_decision());
    const std::string text(ev->visitor_json);
    const auto attrs = attributes_of(ev);  // also proves the visitor is valid JSON
    if (!r.sent) {
        CHECK(attrs.empty());
        return;
    }
    REQUIRE(attrs.size() == 1);
    CHECK(attrs[0].at("entity_id").as_string() == "222");
    CHECK(attrs[0].at("key").as_string() == "known");
    CHECK(attrs[0].at("type").as_string() == "custom");
    // The kind is kept: an integer without a fraction, a double with one.
    CHECK(text.find(std::string("\"value\":") + r.sent + "}") != std::string::npos);
}

TEST_CASE("attribute ids: datafile id, $opt_ keys, unknown keys dropped", "[unit][optimizely]") {
    const user_attributes attrs = {
        {"test_attribute", "a"},        // known: datafile id
        {"do_you_know_me", "b"},        // unknown: dropped
        {"$opt_user_agent", "Chrome"},  // reserved prefix: entity_id = key
        {"$opt_known", "c"},            // reserved prefix but known: the datafile id wins
        {"$opt", "d"},                  // not the prefix
        {"$OPT_case", "e"},             // the prefix is case-sensitive
        {"", "f"},                      // empty key: unknown
    };
    const auto a = attributes_of(fixed_builder().make_impression("u", attrs, basic_decision()));
    REQUIRE(a.size() == 3);
    CHECK(a[0].at("entity_id").as_string() == "111094");
    CHECK(a[0].at("key").as_string() == "test_attribute");
    CHECK(a[1].at("entity_id").as_string() == "$opt_user_agent");
    CHECK(a[1].at("key").as_string() == "$opt_user_agent");
    CHECK(a[2].at("entity_id").as_string() == "333");
    CHECK(a[2].at("key").as_string() == "$opt_known");

    // Without attribute ids only $opt_ keys are sent.
    event_builder bare(ctx());
    const auto b = attributes_of(bare.make_impression("u", attrs, basic_decision()));
    REQUIRE(b.size() == 2);
    CHECK(b[0].at("entity_id").as_string() == "$opt_user_agent");
    CHECK(b[1].at("entity_id").as_string() == "$opt_known");
}

TEST_CASE("attributes keep the caller's order; a repeated key counts once", "[unit][optimizely]") {
    const user_attributes attrs = {{"$opt_c", 1}, {"$opt_a", 2},   {"$opt_b", 3},
                                   {"$opt_a", 4}, {"$opt_d", V()}, {"$opt_d", 5}};
    const auto a = attributes_of(fixed_builder().make_impression("u", attrs, basic_decision()));
    REQUIRE(a.size() == 3);
    CHECK(a[0].at("key").as_string() == "$opt_c");
    CHECK(a[1].at("key").as_string() == "$opt_a");
    CHECK(a[1].at("value").as_int64() == 2);  // first occurrence
    CHECK(a[2].at("key").as_string() == "$opt_b");
    // "$opt_d" first appears as null (dropped): its later duplicate is not used either.

    // Many attributes (the builder switches to a set to find repeats).
    user_attributes many;
    for (int i = 0; i < 40; ++i)
        many.emplace_back("$opt_k" + std::to_string(i % 30), i);
    const auto m = attributes_of(fixed_builder().make_impression("u", many, basic_decision()));
    REQUIRE(m.size() == 30);
    CHECK(m[29].at("value").as_int64() == 29);
}

TEST_CASE("bot filtering: true and false appended last, absent adds nothing",
          "[unit][optimizely]") {
    const user_attributes attrs = {{"test_attribute", "x"}, {"$opt_user_agent", "Edge"}};
    SECTION("true / false") {
        const bool flag = GENERATE(true, false);
        auto b = fixed_builder(flag);
        for (const auto& ev : {b.make_impression("u", attrs, basic_decision()),
                               b.make_conversion("u", attrs, conversion{"e", "1", std::nullopt})}) {
            const auto a = attributes_of(ev);
            REQUIRE(a.size() == 3);
            CHECK(a[2].at("entity_id").as_string() == "$opt_bot_filtering");
            CHECK(a[2].at("key").as_string() == "$opt_bot_filtering");
            CHECK(a[2].at("type").as_string() == "custom");
            CHECK(a[2].at("value").as_bool() == flag);
        }
        // Also with no user attributes at all.
        const auto only = attributes_of(b.make_impression("u", {}, basic_decision()));
        REQUIRE(only.size() == 1);
        CHECK(only[0].at("value").as_bool() == flag);
        // A caller's own $opt_bot_filtering would repeat it: only the builder's is sent.
        const auto dup = attributes_of(
            b.make_impression("u", {{"$opt_bot_filtering", !flag}}, basic_decision()));
        REQUIRE(dup.size() == 1);
        CHECK(dup[0].at("value").as_bool() == flag);
    }
    SECTION("absent") {
        auto b = fixed_builder(std::nullopt);
        const auto a = attributes_of(b.make_impression("u", attrs, basic_decision()));
        REQUIRE(a.size() == 2);
        for (const auto& x : a)
            CHECK(x.at("key").as_string() != "$opt_bot_filtering");
        CHECK(attributes_of(b.make_impression("u", {}, basic_decision())).empty());
        // Without the builder's attribute, a caller's $opt_bot_filtering is an ordinary
        // reserved attribute.
        CHECK(
            attributes_of(b.make_impression("u", {{"$opt_bot_filtering", true}}, basic_decision()))
                .size() == 1);
    }
}

TEST_CASE("id normalisation table (vectors/id_normalization_table.json)", "[unit][optimizely]") {
    const auto table = test::read_json("vectors/id_normalization_table.json");
    std::size_t n = 0;
    for (const auto& c : table.at("cases").as_array()) {
        decision d = basic_decision();
        d.layer_id = c.at("layer_id").as_string();
        d.experiment_id = c.at("experiment_id").as_string();
        d.variation_id = c.at("variation_id").as_string();
        d.rule_type = c.at("rule_type").as_string();
        INFO("case " << json::serialize(c));
        const auto v = test::parse_visitor(fixed_builder().make_impression("u", {}, d));
        const auto& dec = v.at("snapshots").at(0).at("decisions").at(0);
        const auto& ev = event_of(v);
        const auto& expect = c.at("expect").as_object();
        if (const auto* cid = expect.if_contains("campaign_id"))
            CHECK(dec.at("campaign_id") == *cid);
        if (const auto* eid = expect.if_contains("entity_id"))
            CHECK(ev.at("entity_id") == *eid);
        if (const auto* vid = expect.if_contains("variation_id"))
            CHECK(dec.at("variation_id") == *vid);
        // Always: the event's entity_id is the campaign id; the experiment id is sent as is.
        CHECK(ev.at("entity_id") == dec.at("campaign_id"));
        CHECK(dec.at("experiment_id").as_string() == d.experiment_id);
        CHECK(ev.at("key").as_string() == "campaign_activated");
        ++n;
    }
    CHECK(n == 15);

    const auto& preds = table.at("variation_id_predicate_cases");
    for (const auto& s : preds.at("valid").as_array()) {
        INFO(json::serialize(s));
        CHECK(is_valid_variation_id(s.as_string()));
    }
    // The invalid ones, also the non-strings, through the JSON input path (where an id can be
    // any JSON value): all sent as null.
    for (const auto& s : preds.at("invalid_to_null").as_array()) {
        INFO(json::serialize(s));
        if (s.is_string())
            CHECK_FALSE(is_valid_variation_id(s.as_string()));
        json::object entry = {
            {"kind", "impression"},
            {"user_id", "u"},
            {"context", {{"account_id", "1"}, {"project_id", "2"}, {"revision", "3"}}},
            {"experiment", {{"id", "111127"}, {"layer_id", "111182"}}},
            {"variation", {{"id", s}, {"key", "v"}}}};
        const auto ev = test::build_payload_event(entry, 0, {}).event;
        const auto v = test::parse_visitor(ev);
        CHECK(v.at("snapshots").at(0).at("decisions").at(0).at("variation_id").is_null());
    }
}

TEST_CASE("impression shape: decision metadata, cmab_uuid only when set", "[unit][optimizely]") {
    decision d = basic_decision();
    auto v = test::parse_visitor(fixed_builder().make_impression("u", {}, d));
    const auto& snap = v.at("snapshots").as_array();
    REQUIRE(snap.size() == 1);
    const auto& decs = snap[0].at("decisions").as_array();
    REQUIRE(decs.size() == 1);
    const auto& md = decs[0].at("metadata").as_object();
    CHECK(md.size() == 5);
    CHECK(md.at("flag_key").as_string() == "flag");
    CHECK(md.at("rule_key").as_string() == "rule");
    CHECK(md.at("rule_type").as_string() == "experiment");
    CHECK(md.at("variation_key").as_string() == "variation");
    CHECK(md.at("enabled").as_bool());
    CHECK_FALSE(md.contains("cmab_uuid"));
    CHECK(snap[0].at("events").as_array().size() == 1);
    const auto& ev = event_of(v);
    CHECK(ev.size() == 4);  // entity_id, key, timestamp, uuid: no conversion fields
    CHECK(ev.at("timestamp").as_int64() == 42123);

    d.cmab_uuid = "test-cmab-uuid-123";
    v = test::parse_visitor(fixed_builder().make_impression("u", {}, d));
    CHECK(v.at("snapshots").at(0).at("decisions").at(0).at("metadata").at("cmab_uuid") ==
          "test-cmab-uuid-123");
}

TEST_CASE("conversion shape: no decisions key, entity_id is the event id", "[unit][optimizely]") {
    const auto v = conversion_visitor(std::nullopt);
    const auto& snap = v.at("snapshots").at(0).as_object();
    CHECK_FALSE(snap.contains("decisions"));
    const auto& ev = event_of(v);
    CHECK(ev.at("entity_id").as_string() == "111095");
    CHECK(ev.at("key").as_string() == "purchase");
    CHECK(ev.size() == 4);  // no revenue, value or tags
}

TEST_CASE("tags: revenue lifted only from an integer", "[unit][optimizely]") {
    struct row {
        const char* name;
        value v;
        std::optional<std::int64_t> revenue;
    };
    const auto r =
        GENERATE(row{"int", V(4200), 4200}, row{"int 0", V(0), 0}, row{"negative int", V(-5), -5},
                 row{"int64 max", V(std::numeric_limits<std::int64_t>::max()),
                     std::numeric_limits<std::int64_t>::max()},
                 row{"int64 min", V(std::numeric_limits<std::int64_t>::min()),
                     std::numeric_limits<std::int64_t>::min()},
                 row{"numeric string", V("4200"), std::nullopt},
                 row{"integral double", V(4200.0), std::nullopt},
                 row{"double", V(42.5), std::nullopt}, row{"true", V(true), std::nullopt},
                 row{"false", V(false), std::nullopt}, row{"null", V(), std::nullopt},
                 row{"NaN", V(nan_v), std::nullopt}, row{"array", V(V::array{1}), std::nullopt},
                 row{"object", V(V::object{{"a", 1}}), std::nullopt});
    INFO(r.name);
    const event_tags tags = {{"revenue", r.v}};
    CHECK(lift_revenue(tags) == r.revenue);
    const auto v = conversion_visitor(tags);
    const auto& ev = event_of(v);
    if (r.revenue) {
        REQUIRE(ev.contains("revenue"));
        REQUIRE(ev.at("revenue").is_int64());
        CHECK(ev.at("revenue").as_int64() == *r.revenue);
    } else {
        CHECK_FALSE(ev.contains("revenue"));
    }
    CHECK(ev.contains("tags"));  // kept as given either way
    CHECK_FALSE(ev.contains("value"));
}

TEST_CASE("tags: value lifted from a number or a numeric string, sent as a double",
          "[unit][optimizely]") {
    struct row {
        const char* name;
        value v;
        const char* sent;  // the JSON text of the lifted value, or nullptr
    };
    const auto r = GENERATE(
        row{"double", V(1.234), "1.234"}, row{"int 0", V(0), "0.0"},
        row{"int", V(12345), "12345.0"}, row{"negative", V(-2.5), "-2.5"},
        row{"numeric string", V("12345"), "12345.0"}, row{"decimal string", V("12.5"), "12.5"},
        row{"string with spaces", V(" 12.5\n"), "12.5"}, row{"signed string", V("+1"), "1.0"},
        row{"negative string", V("-1e3"), "-1000.0"}, row{"exponent string", V("1E5"), "1e+05"},
        row{"leading dot", V(".5"), "0.5"}, row{"empty string", V(""), nullptr},
        row{"text", V("abc"), nullptr}, row{"trailing text", V("12abc"), nullptr},
        row{"hex", V("0x1A"), nullptr}, row{"two signs", V("+-1"), nullptr},
        row{"nan string", V("nan"), nullptr}, row{"inf string", V("inf"), nullptr},
        row{"overflow string", V("1e400"), nullptr}, row{"true", V(true), nullptr},
        row{"false", V(false), nullptr}, row{"NaN", V(nan_v), nullptr},
        row{"inf", V(inf_v), nullptr}, row{"-inf", V(-inf_v), nullptr}, row{"null", V(), nullptr},
        row{"array", V(V::array{1.0}), nullptr}, row{"object", V(V::object{{"v", 1.0}}), nullptr});
    INFO(r.name);
    const event_tags tags = {{"value", r.v}};
    CHECK(lift_value(tags).has_value() == (r.sent != nullptr));
    auto b = fixed_builder();
    const auto ev = b.make_conversion("u", {}, conversion{"e", "1", tags});
    const std::string text(ev->visitor_json);
    const auto parsed = test::parse_visitor(ev);
    if (r.sent) {
        CHECK(text.find(std::string(",\"value\":") + r.sent + ",\"tags\"") != std::string::npos);
        CHECK(event_of(parsed).at("value").is_double());
    } else {
        CHECK_FALSE(event_of(parsed).contains("value"));
    }
}

TEST_CASE("doubles are written as the shared JSON writer writes them", "[unit][optimizely]") {
    const double d = GENERATE(0.0, -0.0, 1.5, -2.5e-7, 12345.0, 1e15, 1e16, 1e21, 1e300, 5e-324,
                              123456789012345680.0, std::numeric_limits<double>::max(),
                              std::numeric_limits<double>::lowest(), nan_v, inf_v, -inf_v);
    std::string reference;
    detail::append_json_double(reference, d);
    INFO(reference);
    auto b = fixed_builder();
    const auto ev =
        b.make_conversion("u", {{"$opt_d", d}}, conversion{"e", "1", event_tags{{"d", d}}});
    CHECK(ev->visitor_json.find("\"tags\":{\"d\":" + reference + "}") != std::string::npos);
    if (is_sendable_attribute(V(d)))
        CHECK(ev->visitor_json.find("\"value\":" + reference + "}") != std::string::npos);
    const auto v = test::parse_visitor(ev);  // valid JSON whatever the value
    if (std::isfinite(d))
        CHECK(event_of(v).at("tags").at("d").as_double() == d);
}

TEST_CASE("tags: kept as given, absent without tags, {} when empty, non-finite as null",
          "[unit][optimizely]") {
    SECTION("absent") {
        CHECK_FALSE(event_of(conversion_visitor(std::nullopt)).contains("tags"));
    }
    SECTION("empty") {
        const auto v = conversion_visitor(event_tags{});
        CHECK(event_of(v).at("tags").as_object().empty());
        CHECK_FALSE(event_of(v).contains("revenue"));
        CHECK_FALSE(event_of(v).contains("value"));
    }
    SECTION("as given, including invalid revenue and value, in order") {
        const event_tags tags = {{"revenue", "4200"},
                                 {"value", true},
                                 {"non-revenue", "abc"},
                                 {"nested", V::object{{"a", V::array{1, 2.5, "x"}}}}};
        auto b = fixed_builder();
        const auto ev = b.make_conversion("u", {}, conversion{"e", "1", tags});
        CHECK(
            ev->visitor_json.find(
                R"("tags":{"revenue":"4200","value":true,"non-revenue":"abc","nested":{"a":[1,2.5,"x"]}})") !=
            std::string::npos);
        const auto parsed = test::parse_visitor(ev);
        const auto& e = event_of(parsed);
        CHECK_FALSE(e.contains("revenue"));
        CHECK_FALSE(e.contains("value"));
    }
    SECTION("non-finite numbers anywhere inside are sent as null") {
        const event_tags tags = {{"value", nan_v},
                                 {"revenue", 10},
                                 {"deep", V::object{{"x", inf_v}, {"y", V::array{-inf_v, 1.0}}}}};
        const auto v = conversion_visitor(tags);
        const auto& e = event_of(v);
        CHECK(e.at("revenue").as_int64() == 10);
        CHECK_FALSE(e.contains("value"));
        const auto& t = e.at("tags");
        CHECK(t.at("value").is_null());
        CHECK(t.at("deep").at("x").is_null());
        CHECK(t.at("deep").at("y").at(0).is_null());
        CHECK(t.at("deep").at("y").at(1).as_double() == 1.0);
    }
    SECTION("a repeated tag key counts once (the first), also for lifting") {
        const event_tags tags = {{"revenue", 1}, {"revenue", 2}, {"k", "a"}, {"k", "b"}};
        const auto v = conversion_visitor(tags);
        const auto& e = event_of(v);
        CHECK(e.at("revenue").as_int64() == 1);
        CHECK(e.at("tags").as_object().size() == 2);
        CHECK(e.at("tags").at("k").as_string() == "a");
    }
    SECTION("very deep values are cut to null, never overflow the stack") {
        V deep = 1;
        for (int i = 0; i < 200; ++i)
            deep = V(V::array{deep});
        auto b = fixed_builder();
        const auto ev =
            b.make_conversion("u", {}, conversion{"e", "1", event_tags{{"deep", deep}}});
        // The whole batch stays within Boost.JSON's default nesting limit (32).
        std::vector<test::payload_entry> entries = {{0, ev, {}}};
        const auto batches = test::group_payload_events(entries, batch_config{});
        REQUIRE(batches.size() == 1);
        const auto body = json::parse(batches[0].body);
        json::value const* p = &event_of(body.at("visitors").at(0)).at("tags").at("deep");
        int depth = 0;
        while (p->is_array()) {
            p = &p->as_array().at(0);
            ++depth;
        }
        CHECK(p->is_null());
        CHECK(depth == 19);  // tags is level 0; containers from level 20 on are sent as null
    }
}

TEST_CASE("strings are escaped and parse back; invalid UTF-8 becomes U+FFFD",
          "[unit][optimizely]") {
    struct row {
        std::string in;
        std::string back;  // what a JSON parser reads back
    };
    const auto r =
        GENERATE(row{"plain", "plain"},
                 row{"quote \" backslash \\ slash /", "quote \" backslash \\ slash /"},
                 row{"controls \n\r\t\b\f \x01\x1f", "controls \n\r\t\b\f \x01\x1f"},
                 row{std::string("nul \0 byte", 10), std::string("nul \0 byte", 10)},
                 row{"\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad",
                     "\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad"},
                 row{"bad \xff byte", "bad \xEF\xBF\xBD byte"},
                 row{"truncated \xe2\x82", "truncated \xEF\xBF\xBD\xEF\xBF\xBD"},
                 row{"overlong \xc0\xaf", "overlong \xEF\xBF\xBD\xEF\xBF\xBD"},
                 row{"surrogate \xed\xa0\x80", "surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"});
    INFO(r.back);
    auto b = fixed_builder();
    // In the user id, an attribute key and value, the metadata and the tags.
    decision d = basic_decision();
    d.flag_key = r.in;
    d.cmab_uuid = r.in;
    const auto imp = b.make_impression(r.in, {{"$opt_" + r.in, r.in}}, d);
    const auto conv = b.make_conversion(r.in, {{"test_attribute", r.in}},
                                        conversion{r.in, "1", event_tags{{r.in, V::array{r.in}}}});
    // Through the batcher too: the whole body must be valid JSON.
    std::vector<test::payload_entry> entries = {{0, imp, {}}, {1, conv, {}}};
    const auto batches = test::group_payload_events(entries, batch_config{});
    REQUIRE(batches.size() == 1);
    const auto body = json::parse(batches[0].body);
    const auto& vi = body.at("visitors").at(0);
    const auto& vc = body.at("visitors").at(1);
    CHECK(vi.at("visitor_id").as_string() == r.back);
    CHECK(vi.at("attributes").at(0).at("key").as_string() == "$opt_" + r.back);
    CHECK(vi.at("attributes").at(0).at("entity_id").as_string() == "$opt_" + r.back);
    CHECK(vi.at("attributes").at(0).at("value").as_string() == r.back);
    const auto& md = vi.at("snapshots").at(0).at("decisions").at(0).at("metadata");
    CHECK(md.at("flag_key").as_string() == r.back);
    CHECK(md.at("cmab_uuid").as_string() == r.back);
    CHECK(vc.at("visitor_id").as_string() == r.back);
    CHECK(vc.at("attributes").at(0).at("value").as_string() == r.back);
    const auto& ce = event_of(vc);
    CHECK(ce.at("key").as_string() == r.back);
    CHECK(ce.at("tags").at(r.back).at(0).as_string() == r.back);
}

TEST_CASE("every special byte at every position of short and long strings is escaped",
          "[unit][optimizely]") {
    // The builder copies plain ASCII strings in 8-byte steps: check each boundary byte at each
    // offset, in the 8-byte body and in the tail, against what a JSON parser reads back.
    const char specials[] = {'"', '\\', '\x00', '\x1f', '\x7f', '\x80', '\xff', '\n', ' ', '~'};
    auto b = fixed_builder();
    for (std::size_t len = 1; len <= 19; ++len) {
        for (std::size_t pos = 0; pos < len; ++pos) {
            for (const char c : specials) {
                std::string s(len, 'x');
                s[pos] = c;
                INFO("len " << len << " pos " << pos << " byte "
                            << int(static_cast<unsigned char>(c)));
                const auto ev = b.make_impression(s, {}, basic_decision());
                json::value v;
                REQUIRE_NOTHROW(v = test::parse_visitor(ev));
                std::string expect = s;
                if (static_cast<unsigned char>(c) >= 0x80)
                    expect.replace(pos, 1, "\xEF\xBF\xBD");
                CHECK(v.at("visitor_id").as_string() == expect);
            }
        }
    }
}

TEST_CASE("large events are written completely (the buffer grows past its estimate)",
          "[unit][optimizely]") {
    auto b = fixed_builder(true);
    user_attributes attrs;
    event_tags tags;
    for (int i = 0; i < 60; ++i) {
        // Escaped and multi-byte text takes the slow path, plain text the fast one.
        attrs.emplace_back("$opt_k" + std::to_string(i),
                           std::string(40, i % 2 ? 'x' : '\n') + "\xc3\xa9");
        tags.emplace_back("tag_" + std::to_string(i),
                          V::array{std::string(100, 'v'), i, 0.25, V::object{{"q\"", "\\"}}});
    }
    const std::string user(3000, '\t');
    const auto ev = b.make_conversion(user, attrs, conversion{"e", "1", tags});
    const auto v = test::parse_visitor(ev);
    CHECK(v.at("visitor_id").as_string() == user);
    const auto& a = v.at("attributes").as_array();
    REQUIRE(a.size() == 61);
    CHECK(a[59].at("value").as_string() == std::string(40, 'x') + "\xc3\xa9");
    CHECK(a[60].at("key").as_string() == "$opt_bot_filtering");
    const auto& t = event_of(v).at("tags").as_object();
    REQUIRE(t.size() == 60);
    CHECK(t.at("tag_59").at(0).as_string() == std::string(100, 'v'));
    CHECK(t.at("tag_59").at(3).at("q\"").as_string() == "\\");
    CHECK(ev->visitor_json.back() == '}');
    CHECK(ev->visitor_json.find('\0') == std::string::npos);  // nothing left unwritten
}

TEST_CASE("timestamp is the system clock in epoch ms; uuid is a random v4", "[unit][optimizely]") {
    event_builder b(ctx(), std::nullopt, ids());
    auto now_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
    const auto before = now_ms();
    const auto ev = b.make_impression("u", {}, basic_decision());
    const auto after = now_ms();
    const auto v = test::parse_visitor(ev);
    const auto ts = event_of(v).at("timestamp").as_int64();
    CHECK(ts >= before);
    CHECK(ts <= after);

    auto is_v4 = [](std::string_view u) {
        if (u.size() != 36)
            return false;
        for (std::size_t i = 0; i < 36; ++i) {
            const char c = u[i];
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (c != '-')
                    return false;
            } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
                return false;
            }
        }
        return u[14] == '4' && (u[19] == '8' || u[19] == '9' || u[19] == 'a' || u[19] == 'b');
    };
    CHECK(is_v4(std::string(event_of(v).at("uuid").as_string())));

    // Unique across events and threads (per-thread generators, no shared state).
    std::mutex m;
    std::set<std::string> seen;
    std::vector<std::thread> threads;
    std::atomic<bool> all_v4{true};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            std::vector<std::string> mine;
            for (int i = 0; i < 5000; ++i) {
                const auto e = b.make_conversion("u", {}, conversion{"e", "1", std::nullopt});
                const auto p = test::parse_visitor(e);
                mine.emplace_back(event_of(p).at("uuid").as_string());
                if (!is_v4(mine.back()))
                    all_v4 = false;
            }
            std::lock_guard<std::mutex> lk(m);
            seen.insert(mine.begin(), mine.end());
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(all_v4);
    CHECK(seen.size() == 20000);
}

TEST_CASE("random_uuid and append_random_uuid: v4 text from the per-thread generator",
          "[unit][optimizely]") {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        std::string s = "x";
        append_random_uuid(s);
        REQUIRE(s.size() == 37);
        seen.insert(s.substr(1));
        const std::string u = random_uuid();
        REQUIRE(u.size() == 36);
        CHECK(u[8] == '-');
        CHECK(u[13] == '-');
        CHECK(u[14] == '4');
        CHECK(u[18] == '-');
        CHECK(std::string_view("89ab").find(u[19]) != std::string_view::npos);
        CHECK(u[23] == '-');
        CHECK(u.find_first_not_of("0123456789abcdef-") == std::string::npos);
        seen.insert(u);
    }
    CHECK(seen.size() == 2000);
}

TEST_CASE("the low level keeps working and applies the same attribute and id rules",
          "[unit][optimizely]") {
    auto b = fixed_builder(true);
    impression_input in;
    in.user_id = "u";
    in.attributes = {{"device", "1", std::string("iphone")},
                     {"is_premium", "2", true},
                     {"age", "3", std::int64_t(30)},
                     {"big", "4", std::int64_t(two53 + 1)},
                     {"nan", "5", nan_v},
                     {"ratio", "6", 0.5}};
    in.campaign_id = "111182";
    in.experiment_id = "111127";
    in.variation_id = "abc";
    in.variation_key = "variation";
    in.flag_key = "flag";
    in.rule_key = "rule";
    in.rule_type = "experiment";
    in.enabled = true;
    const auto v = test::parse_visitor(b.make_impression(in));
    const auto& a = v.at("attributes").as_array();
    REQUIRE(a.size() == 5);  // device, is_premium, age, ratio, $opt_bot_filtering
    CHECK(a[3].at("key").as_string() == "ratio");
    CHECK(a[4].at("key").as_string() == "$opt_bot_filtering");
    CHECK(v.at("snapshots").at(0).at("decisions").at(0).at("variation_id").is_null());

    // Same output as the user level for the same inputs.
    decision d = basic_decision();
    d.variation_id = "111129";
    in.variation_id = "111129";
    in.attributes = {{"test_attribute", "111094", std::string("x")}};
    const auto low = b.make_impression(in);
    const auto high = b.make_impression("u", {{"test_attribute", "x"}}, d);
    CHECK(low->visitor_json == high->visitor_json);

    conversion_input ci;
    ci.user_id = "u";
    ci.event_id = "111095";
    ci.event_key = "purchase";
    ci.revenue = 4200;
    ci.value = 12.5;
    ci.tags_json = R"({"revenue":4200,"value":12.5})";
    const auto clow = b.make_conversion(ci);
    const auto chigh = b.make_conversion(
        "u", {}, conversion{"purchase", "111095", event_tags{{"revenue", 4200}, {"value", 12.5}}});
    CHECK(clow->visitor_json == chigh->visitor_json);
}

TEST_CASE("events carry the builder's context", "[unit][optimizely]") {
    const auto c = ctx();
    event_builder b(c);
    CHECK(b.make_impression("u", {}, basic_decision())->context == c);
    CHECK(b.make_conversion("u", {}, conversion{"e", "1", std::nullopt})->context == c);
}
