// check_event_batch (the collector's SAX validator) and the uuid de-duplication set.

#include <evdispatch/collector/check.hpp>

#include "collector/check.hpp"
#include "collector/uuid_set.hpp"

#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace json = boost::json;
using evdispatch::check_event_batch;

namespace {

std::string uuid_n(unsigned n) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012x", n);
    return buf;
}

// A valid batch with every optional part present: 2 visitors, each with 2 attributes and one
// snapshot of 2 events (uuids 1..4) and one decision.
json::value sample_batch() {
    json::array visitors;
    unsigned next_uuid = 1;
    for (int v = 0; v < 2; ++v) {
        json::array events;
        for (int e = 0; e < 2; ++e) {
            events.push_back(json::object{
                {"entity_id", "7"},
                {"key", "purchase"},
                {"uuid", uuid_n(next_uuid++)},
                {"timestamp", 1700000000000 + e},
                {"revenue", 1200},
                {"value", 3.5},
                {"tags", json::object{{"colour", "red"}, {"nested", json::array{1, {{"a", 2}}}}}},
            });
        }
        visitors.push_back(json::object{
            {"visitor_id", "user-" + std::to_string(v)},
            {"session_id", 99},  // unknown key: allowed
            {"attributes",
             json::array{
                 json::object{
                     {"entity_id", "1"}, {"key", "plan"}, {"type", "custom"}, {"value", "gold"}},
                 json::object{
                     {"entity_id", "2"}, {"key", "age"}, {"type", "custom"}, {"value", 42}},
             }},
            {"snapshots",
             json::array{json::object{
                 {"decisions", json::array{json::object{{"campaign_id", "c"},
                                                        {"experiment_id", "e"},
                                                        {"variation_id", "v"},
                                                        {"is_campaign_holdback", false}}}},
                 {"events", std::move(events)},
             }}},
        });
    }
    return json::object{
        {"account_id", "123"},       {"project_id", "456"},
        {"revision", "7"},           {"client_name", "evdispatch"},
        {"client_version", "0.1.0"}, {"anonymize_ip", true},
        {"enrich_decisions", true},  {"visitors", std::move(visitors)},
    };
}

std::vector<std::string> sample_uuids() {
    return {uuid_n(1), uuid_n(2), uuid_n(3), uuid_n(4)};
}

// Parent pointer and key of a JSON pointer ("/visitors/1/uuid" -> "/visitors/1", "uuid").
std::pair<std::string, std::string> split_pointer(const std::string& ptr) {
    auto slash = ptr.rfind('/');
    return {ptr.substr(0, slash), ptr.substr(slash + 1)};
}

json::value& at(json::value& doc, const std::string& ptr) {
    return ptr.empty() ? doc : doc.at_pointer(ptr);
}

std::string without(const std::string& ptr) {
    json::value doc = sample_batch();
    auto [parent, key] = split_pointer(ptr);
    json::value& p = at(doc, parent);
    if (p.is_object()) {
        REQUIRE(p.as_object().erase(key) == 1);
    } else {
        auto& a = p.as_array();
        a.erase(a.begin() + std::stoi(key));
    }
    return json::serialize(doc);
}

std::string with(const std::string& ptr, json::value v) {
    json::value doc = sample_batch();
    at(doc, ptr) = std::move(v);
    return json::serialize(doc);
}

}  // namespace

TEST_CASE("check_event_batch accepts a complete batch and reports its uuids", "[unit][collector]") {
    std::string body = json::serialize(sample_batch());
    auto r = check_event_batch(body);
    INFO(r.error);
    REQUIRE(r.ok);
    CHECK(r.error.empty());
    CHECK(r.visitors == 2);
    CHECK(r.uuids == sample_uuids());
}

TEST_CASE("check_event_batch accepts the documented variants", "[unit][collector]") {
    struct valid_case {
        const char* what;
        std::string body;
        std::uint64_t visitors;
        std::size_t uuids;
    };
    const std::string env = R"("account_id":"1","project_id":"2","revision":"3","client_name":"n",)"
                            R"("client_version":"v","anonymize_ip":false,"enrich_decisions":true)";
    auto visitor = [](const std::string& attr_value, const std::string& event_extra) {
        return R"({"visitor_id":"v","attributes":[{"entity_id":"1","key":"k","type":"custom",)"
               R"("value":)" +
               attr_value +
               R"(}],"snapshots":[{"events":[{"entity_id":"e",)"
               R"("key":"k","uuid":"u-1","timestamp":1)" +
               event_extra + "}]}]}";
    };
    std::vector<valid_case> cases = {
        {"no visitors", "{" + env + R"(,"visitors":[]})", 0, 0},
        {"only required fields", "{" + env + R"(,"visitors":[)" + visitor("\"x\"", "") + "]}", 1,
         1},
        {"attribute value true", "{" + env + R"(,"visitors":[)" + visitor("true", "") + "]}", 1, 1},
        {"attribute value double", "{" + env + R"(,"visitors":[)" + visitor("-1.5e3", "") + "]}", 1,
         1},
        {"attribute value big unsigned",
         "{" + env + R"(,"visitors":[)" + visitor("18446744073709551615", "") + "]}", 1, 1},
        {"event value integer",
         "{" + env + R"(,"visitors":[)" + visitor("1", R"(,"value":2,"revenue":-3)") + "]}", 1, 1},
        {"unknown keys everywhere",
         "{" + env + R"(,"x":[[{"uuid":1}]],"visitors":[)" +
             visitor("1", R"(,"extra":{"timestamp":"no","uuid":null})") + R"(],"y":null})",
         1, 1},
        {"whitespace around",
         " \n\t{" + env +
             R"(, "visitors" : [ ] } )"
             "\r\n",
         0, 0},
        {"snapshot with empty events and decisions",
         "{" + env +
             R"(,"visitors":[{"visitor_id":"v","attributes":[],"snapshots":[)"
             R"({"events":[],"decisions":[]}]}]})",
         1, 0},
        {"two visitors, two snapshots",
         "{" + env + R"(,"visitors":[)" + visitor("1", "") + "," + visitor("2", "") + "]}", 2, 2},
    };
    auto c = GENERATE_COPY(from_range(cases));
    INFO(c.what << ": " << c.body);
    auto r = check_event_batch(c.body);
    INFO(r.error);
    REQUIRE(r.ok);
    CHECK(r.visitors == c.visitors);
    CHECK(r.uuids.size() == c.uuids);
}

TEST_CASE("check_event_batch names each missing required field", "[unit][collector]") {
    struct missing_case {
        std::string pointer;  // JSON pointer of the member removed from sample_batch()
        std::string error;
    };
    const std::string ev = "visitors[1].snapshots[0].events[1]";
    std::vector<missing_case> cases = {
        {"/account_id", R"(top level: missing "account_id")"},
        {"/project_id", R"(top level: missing "project_id")"},
        {"/revision", R"(top level: missing "revision")"},
        {"/client_name", R"(top level: missing "client_name")"},
        {"/client_version", R"(top level: missing "client_version")"},
        {"/anonymize_ip", R"(top level: missing "anonymize_ip")"},
        {"/enrich_decisions", R"(top level: missing "enrich_decisions")"},
        {"/visitors", R"(top level: missing "visitors")"},
        {"/visitors/1/visitor_id", R"(visitors[1]: missing "visitor_id")"},
        {"/visitors/1/attributes", R"(visitors[1]: missing "attributes")"},
        {"/visitors/1/snapshots", R"(visitors[1]: missing "snapshots")"},
        {"/visitors/1/attributes/1/entity_id", R"(visitors[1].attributes[1]: missing "entity_id")"},
        {"/visitors/1/attributes/1/key", R"(visitors[1].attributes[1]: missing "key")"},
        {"/visitors/1/attributes/1/type", R"(visitors[1].attributes[1]: missing "type")"},
        {"/visitors/1/attributes/1/value", R"(visitors[1].attributes[1]: missing "value")"},
        {"/visitors/1/snapshots/0/events", R"(visitors[1].snapshots[0]: missing "events")"},
        {"/visitors/1/snapshots/0/events/1/entity_id", ev + R"(: missing "entity_id")"},
        {"/visitors/1/snapshots/0/events/1/key", ev + R"(: missing "key")"},
        {"/visitors/1/snapshots/0/events/1/uuid", ev + R"(: missing "uuid")"},
        {"/visitors/1/snapshots/0/events/1/timestamp", ev + R"(: missing "timestamp")"},
    };
    auto c = GENERATE_COPY(from_range(cases));
    INFO(c.pointer);
    auto r = check_event_batch(without(c.pointer));
    CHECK_FALSE(r.ok);
    CHECK(r.error == c.error);
    CHECK(r.uuids.empty());
    CHECK(r.visitors == 0);
}

TEST_CASE("check_event_batch accepts missing optional fields", "[unit][collector]") {
    auto pointer = GENERATE(as<std::string>{}, "/visitors/0/snapshots/0/decisions",
                            "/visitors/1/snapshots/0/events/0/revenue",
                            "/visitors/1/snapshots/0/events/0/value",
                            "/visitors/1/snapshots/0/events/0/tags", "/visitors/0/session_id");
    INFO(pointer);
    auto r = check_event_batch(without(pointer));
    INFO(r.error);
    CHECK(r.ok);
    CHECK(r.uuids == sample_uuids());
}

TEST_CASE("check_event_batch names each field of the wrong type", "[unit][collector]") {
    struct type_case {
        std::string pointer;
        json::value value;
        std::string error;
    };
    const std::string ev = "visitors[1].snapshots[0].events[1]";
    const std::string evp = "/visitors/1/snapshots/0/events/1";
    std::vector<type_case> cases = {
        {"", json::array{}, "top level: expected object, got array"},
        {"", "batch", "top level: expected object, got string"},
        {"/account_id", 123, "account_id: expected string, got integer"},
        {"/project_id", nullptr, "project_id: expected string, got null"},
        {"/revision", 7.5, "revision: expected string, got non-integer number"},
        {"/client_name", json::array{}, "client_name: expected string, got array"},
        {"/client_version", true, "client_version: expected string, got boolean"},
        {"/anonymize_ip", "true", "anonymize_ip: expected boolean, got string"},
        {"/enrich_decisions", 1, "enrich_decisions: expected boolean, got integer"},
        {"/visitors", json::object{}, "visitors: expected array, got object"},
        {"/visitors", nullptr, "visitors: expected array, got null"},
        {"/visitors/1", "v", "visitors[1]: expected object, got string"},
        {"/visitors/1/visitor_id", 5, "visitors[1].visitor_id: expected string, got integer"},
        {"/visitors/1/attributes", json::object{},
         "visitors[1].attributes: expected array, got object"},
        {"/visitors/1/attributes/1", json::array{},
         "visitors[1].attributes[1]: expected object, got array"},
        {"/visitors/1/attributes/1/entity_id", 1,
         "visitors[1].attributes[1].entity_id: expected string, got integer"},
        {"/visitors/1/attributes/1/key", false,
         "visitors[1].attributes[1].key: expected string, got boolean"},
        {"/visitors/1/attributes/1/type", nullptr,
         "visitors[1].attributes[1].type: expected string, got null"},
        {"/visitors/1/attributes/1/value", nullptr,
         "visitors[1].attributes[1].value: expected string, boolean or number, got null"},
        {"/visitors/1/attributes/1/value", json::object{},
         "visitors[1].attributes[1].value: expected string, boolean or number, got object"},
        {"/visitors/1/snapshots", "s", "visitors[1].snapshots: expected array, got string"},
        {"/visitors/1/snapshots/0", 0, "visitors[1].snapshots[0]: expected object, got integer"},
        {"/visitors/1/snapshots/0/events", json::object{},
         "visitors[1].snapshots[0].events: expected array, got object"},
        {"/visitors/1/snapshots/0/decisions", json::object{},
         "visitors[1].snapshots[0].decisions: expected array, got object"},
        {"/visitors/1/snapshots/0/decisions/0", "d",
         "visitors[1].snapshots[0].decisions[0]: expected object, got string"},
        {evp, json::array{}, ev + ": expected object, got array"},
        {evp + "/entity_id", 7, ev + ".entity_id: expected string, got integer"},
        {evp + "/key", nullptr, ev + ".key: expected string, got null"},
        {evp + "/uuid", 12345, ev + ".uuid: expected string, got integer"},
        {evp + "/uuid", "", ev + ".uuid: empty uuid"},
        {evp + "/timestamp", "1700000000000", ev + ".timestamp: expected integer, got string"},
        {evp + "/timestamp", 1.7e12, ev + ".timestamp: expected integer, got non-integer number"},
        {evp + "/revenue", 12.5, ev + ".revenue: expected integer, got non-integer number"},
        {evp + "/value", "3.5", ev + ".value: expected number, got string"},
        {evp + "/tags", json::array{}, ev + ".tags: expected object, got array"},
    };
    auto c = GENERATE_COPY(from_range(cases));
    std::string body = with(c.pointer, c.value);
    INFO(body);
    auto r = check_event_batch(body);
    CHECK_FALSE(r.ok);
    CHECK(r.error == c.error);
}

TEST_CASE("check_event_batch rejects a repeated known key", "[unit][collector]") {
    std::string body = json::serialize(sample_batch());
    // Repeat the first event's uuid key inside the same object.
    auto pos = body.find(R"("uuid":)");
    REQUIRE(pos != std::string::npos);
    body.insert(pos, R"("uuid":"00000000-0000-4000-8000-0000000000ff",)");
    auto r = check_event_batch(body);
    CHECK_FALSE(r.ok);
    CHECK(r.error == R"(visitors[0].snapshots[0].events[0]: duplicate "uuid")");
}

TEST_CASE("check_event_batch reports malformed JSON with its offset", "[unit][collector]") {
    struct bad_case {
        std::string body;
        std::string error_prefix;  // the whole message unless it ends with ": "
    };
    std::string valid = json::serialize(sample_batch());
    std::vector<bad_case> cases = {
        {"", "malformed JSON at byte 0: "},
        {"   ", "malformed JSON at byte 3: "},
        {"{", "malformed JSON at byte 1: "},
        {R"({"account_id":})", "malformed JSON at byte 14: "},
        {R"({"account_id":"1",})", "malformed JSON at byte 18: "},
        {R"({"anonymize_ip":tru})", "malformed JSON at byte 16: "},
        {R"({'account_id':'1'})", "malformed JSON at byte 1: "},
        {valid + " x", "malformed JSON at byte " + std::to_string(valid.size() + 1) +
                           ": unexpected data after the batch"},
        {valid + "{}", "malformed JSON at byte " + std::to_string(valid.size()) +
                           ": unexpected data after the batch"},
        {valid.substr(0, valid.size() - 1),
         "malformed JSON at byte " + std::to_string(valid.size() - 1) + ": "},
        {"{\"account_id\":\"\xff\xfe\"}", "malformed JSON at byte 15: "},  // invalid UTF-8
        {"{\"account_id\":\"a\x01\"}", "malformed JSON at byte 16: "},     // raw control character
    };
    auto c = GENERATE_COPY(from_range(cases));
    INFO(c.body);
    auto r = check_event_batch(c.body);
    INFO(r.error);
    CHECK_FALSE(r.ok);
    CHECK(r.error.rfind(c.error_prefix, 0) == 0);
    if (c.error_prefix.ends_with(": ")) {
        CHECK(r.error.size() > c.error_prefix.size());  // the parser's reason follows
    } else {
        CHECK(r.error == c.error_prefix);
    }
}

TEST_CASE("check_event_batch handles unicode and escapes", "[unit][collector]") {
    json::value doc = sample_batch();
    auto& ev = doc.at_pointer("/visitors/0/snapshots/0/events/0").as_object();
    ev["uuid"] = "\xe2\x9c\x93-\xf0\x9f\x98\x80-\xc3\xa9";  // non-canonical, multi-byte
    ev["key"] = "caf\xc3\xa9";
    std::string body = json::serialize(doc);
    auto r = check_event_batch(body);
    INFO(r.error);
    REQUIRE(r.ok);
    CHECK(r.uuids[0] == "\xe2\x9c\x93-\xf0\x9f\x98\x80-\xc3\xa9");

    // The same uuid written with \u escapes (including a surrogate pair), and an escaped key.
    std::string escaped = body;
    auto pos = escaped.find("\"uuid\":\"\xe2\x9c\x93");
    REQUIRE(pos != std::string::npos);
    escaped.replace(pos, std::string("\"uuid\":\"\xe2\x9c\x93-\xf0\x9f\x98\x80-\xc3\xa9\"").size(),
                    R"("u\u0075id":"\u2713-\ud83d\ude00-\u00e9")");
    auto e = check_event_batch(escaped);
    INFO(escaped);
    INFO(e.error);
    REQUIRE(e.ok);
    CHECK(e.uuids == r.uuids);
}

TEST_CASE("check_event_batch handles strings the parser delivers in parts", "[unit][collector]") {
    // Escapes make Boost.JSON deliver a long string through on_string_part in chunks.
    std::string long_uuid(3000, 'a');
    long_uuid += '"';
    long_uuid += std::string(6000, 'b');
    std::string long_key = std::string(5000, 'k') + "\n";

    json::value doc = sample_batch();
    auto& ev = doc.at_pointer("/visitors/1/snapshots/0/events/1").as_object();
    ev["uuid"] = long_uuid;
    ev[long_key] = "unknown key, ignored";
    auto r = check_event_batch(json::serialize(doc));
    INFO(r.error);
    REQUIRE(r.ok);
    REQUIRE(r.uuids.size() == 4);
    CHECK(r.uuids[3] == long_uuid);

    // A long wrong-typed value still gets a precise path.
    ev.erase(long_key);
    ev["timestamp"] = long_uuid;
    auto bad = check_event_batch(json::serialize(doc));
    CHECK_FALSE(bad.ok);
    CHECK(bad.error ==
          "visitors[1].snapshots[0].events[1].timestamp: expected integer, got string");
}

namespace {

struct vector_sink final : evdispatch::detail::uuid_sink {
    std::vector<std::string> uuids;
    void on_uuid(std::string_view s) override { uuids.emplace_back(s); }
};

// Feeds `body` to a checker in pieces of `step` bytes.
std::pair<bool, std::string> check_in_pieces(const std::string& body, std::size_t step,
                                             vector_sink& sink) {
    evdispatch::detail::batch_checker checker(sink);
    for (std::size_t i = 0; i < body.size(); i += step) {
        std::string_view piece = std::string_view(body).substr(i, step);
        bool last = i + step >= body.size();
        if (!checker.write(piece, !last))
            return {false, checker.error()};
    }
    if (body.empty() && !checker.write({}, false))
        return {false, checker.error()};
    return {true, {}};
}

}  // namespace

TEST_CASE("the checker gives the same answer whatever the pieces", "[unit][collector]") {
    json::value doc = sample_batch();
    doc.at_pointer("/visitors/0/snapshots/0/events/0").as_object()["uuid"] = "x\\y\u00e9z";
    std::string valid = json::serialize(doc);
    std::string invalid = without("/visitors/1/snapshots/0/events/1/uuid");
    auto step = GENERATE(std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7},
                         std::size_t{64}, std::size_t{100000});
    INFO("step " << step);

    vector_sink ok_sink;
    auto whole = check_event_batch(valid);
    REQUIRE(whole.ok);
    auto [ok, error] = check_in_pieces(valid, step, ok_sink);
    INFO(error);
    CHECK(ok);
    CHECK(ok_sink.uuids == whole.uuids);

    vector_sink bad_sink;
    auto [bad_ok, bad_error] = check_in_pieces(invalid, step, bad_sink);
    CHECK_FALSE(bad_ok);
    CHECK(bad_error == R"(visitors[1].snapshots[0].events[1]: missing "uuid")");

    vector_sink trailing_sink;
    auto [t_ok, t_error] = check_in_pieces(valid + "  x", step, trailing_sink);
    CHECK_FALSE(t_ok);
    CHECK(t_error == "malformed JSON at byte " + std::to_string(valid.size() + 2) +
                         ": unexpected data after the batch");
}

TEST_CASE("the checker can be reset and reused", "[unit][collector]") {
    vector_sink sink;
    evdispatch::detail::batch_checker checker(sink);
    REQUIRE_FALSE(checker.write("{\"account_id\":1}", false));
    CHECK(checker.error() == "account_id: expected string, got integer");
    checker.reset();
    CHECK(checker.error().empty());
    REQUIRE(checker.write(json::serialize(sample_batch()), false));
    CHECK(checker.visitors() == 2);
    CHECK(sink.uuids == sample_uuids());
}

TEST_CASE("uuid keys: canonical uuids parse, other strings hash", "[unit][collector]") {
    using evdispatch::detail::make_uuid_key;
    using evdispatch::detail::parse_canonical_uuid;
    using evdispatch::detail::uuid_key;

    uuid_key k;
    REQUIRE(parse_canonical_uuid("0123abcd-4567-89ef-0123-456789ABCDEF", k));
    CHECK(k.hi == 0x0123abcd456789efULL);
    CHECK(k.lo == 0x0123456789abcdefULL);
    CHECK(make_uuid_key("0123ABCD-4567-89EF-0123-456789abcdef") == k);  // case-insensitive

    for (const char* s : {"0123abcd-4567-89ef-0123-456789abcde",      // short
                          "0123abcd-4567-89ef-0123-456789abcdeff",    // long
                          "0123abcd-4567-89ef-0123_456789abcdef",     // bad separator
                          "0123abcg-4567-89ef-0123-456789abcdef"}) {  // not hex
        INFO(s);
        CHECK_FALSE(parse_canonical_uuid(s, k));
    }
    CHECK(make_uuid_key("abc") == make_uuid_key(std::string("abc")));
    CHECK_FALSE(make_uuid_key("abc") == make_uuid_key("abd"));
    CHECK_FALSE(make_uuid_key("abc") == make_uuid_key("ABC"));  // only canonical ones fold case
    CHECK_FALSE(make_uuid_key("") == uuid_key{});
    // The two halves come from different hashes.
    auto h = make_uuid_key("some-event-id");
    CHECK(h.hi != h.lo);
}

TEST_CASE("uuid_set stores each key once and grows before 5/8 load", "[unit][collector]") {
    using evdispatch::detail::make_uuid_key;
    using evdispatch::detail::uuid_key;
    evdispatch::detail::uuid_set set(16);
    REQUIRE(set.capacity() == 16);

    CHECK(set.insert(uuid_key{}));  // the nil uuid
    CHECK_FALSE(set.insert(make_uuid_key("00000000-0000-0000-0000-000000000000")));
    CHECK(set.contains(uuid_key{}));

    constexpr unsigned n = 50000;
    for (unsigned i = 1; i <= n; ++i) {
        INFO(i);
        REQUIRE(set.insert(make_uuid_key(uuid_n(i))));
        REQUIRE(set.size() * 8 <= set.capacity() * 5 + 8);
    }
    CHECK(set.size() == n + 1);
    for (unsigned i = 1; i <= n; i += 97)
        CHECK_FALSE(set.insert(make_uuid_key(uuid_n(i))));
    for (unsigned i = 1; i <= n; i += 101)
        CHECK(set.contains(make_uuid_key(uuid_n(i))));
    CHECK_FALSE(set.contains(make_uuid_key(uuid_n(n + 1))));
    CHECK_FALSE(set.contains(make_uuid_key("not-a-uuid")));
    CHECK(set.insert(make_uuid_key("not-a-uuid")));
    CHECK(set.size() == n + 2);
    // 16 bytes per slot, at most ~3.2 slots per key after the last doubling.
    CHECK(set.capacity() <= 4 * set.size());
}
