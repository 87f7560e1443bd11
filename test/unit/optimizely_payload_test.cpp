// The `evdispatch payload` pipeline: JSON entries -> events -> batches, grouped by the batcher.

#include "optimizely_test_support.hpp"

#include "support/payload_input.hpp"
// The command's payload support is part of the program (apps/), not of the library: the unit
// test binary compiles it here, once.

#include <catch2/catch.hpp>

namespace json = boost::json;
using namespace evdispatch;
using test::payload_entry;
using test::payload_input_options;

namespace {

json::object conversion_entry(std::string user, std::string project = "111001",
                              std::string revision = "42") {
    return {{"kind", "conversion"},
            {"user_id", user},
            {"context", {{"account_id", "12001"}, {"project_id", project}, {"revision", revision}}},
            {"event", {{"key", "test_event"}, {"id", "111095"}}},
            {"mocked_clock",
             {{"timestamp_ms", 42000}, {"uuid", "a68cf1ad-0393-4e18-af87-efe8f01a7c9c"}}}};
}

std::vector<std::string> visitor_ids(const log_event& le) {
    std::vector<std::string> out;
    const auto body = json::parse(le.body);
    for (const auto& v : body.at("visitors").as_array())
        out.emplace_back(v.at("visitor_id").as_string());
    return out;
}

std::vector<payload_entry> build_all(std::string_view text,
                                     const payload_input_options& opts = {}) {
    boost::system::error_code ec;
    auto out = test::build_payload_events(text, opts, ec);
    REQUIRE_FALSE(ec);
    return out;
}

std::string error_of(const payload_entry& pe) {
    return pe.error ? test::to_string(*pe.error) : std::string();
}

std::string lines(const json::array& entries) {
    std::string s;
    for (const auto& e : entries)
        s += json::serialize(e) + "\n";
    return s;
}

}  // namespace

TEST_CASE("payload input: a JSON array and JSON lines give the same events", "[unit][optimizely]") {
    const json::array entries = {conversion_entry("a"), conversion_entry("b")};
    const auto from_array = build_all(json::serialize(entries));
    const auto from_lines = build_all("\n" + lines(entries) + "\n  \n");
    REQUIRE(from_array.size() == 2);
    REQUIRE(from_lines.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        REQUIRE(from_array[i].event);
        REQUIRE(from_lines[i].event);
        CHECK(from_array[i].index == i);
        CHECK(from_lines[i].index == i);
        CHECK(from_array[i].event->visitor_json == from_lines[i].event->visitor_json);
    }
    CHECK(build_all("").empty());
    CHECK(build_all("[]").empty());
    // An array that is not JSON: nothing built, the parser's error reported.
    boost::system::error_code ec;
    CHECK(test::build_payload_events("[{\"kind\":", {}, ec).empty());
    CHECK(ec);
}

TEST_CASE("payload input: a bad entry names the entry and the field; the others are built",
          "[unit][optimizely]") {
    struct row {
        std::string field;
        json::value v;  // replaces the field (null: removes it)
        std::string mentions;
    };
    const auto r = GENERATE(
        row{"kind", nullptr, "input[1].kind: missing"},
        row{"kind", "click", "input[1].kind: must be \"impression\" or \"conversion\""},
        row{"user_id", nullptr, "input[1].user_id: missing"},
        row{"user_id", 7, "input[1].user_id: must be a string"},
        row{"attributes", json::array{1}, "input[1].attributes: must be an object"},
        row{"attributes",
            {{"k", {{"$float", "NaN"}}}},
            "input[1].attributes.k.$float: must be \"nan\", \"inf\" or \"-inf\""},
        row{"event_tags", {{"t", json::array{{{"$float", 1}}}}}, "input[1].event_tags.t[0].$float"},
        row{"event_tags", "revenue", "input[1].event_tags: must be an object"},
        row{"context", nullptr, "input[1].context: missing"},
        row{"context",
            {{"account_id", "1"}, {"project_id", "2"}},
            "input[1].context.revision: missing"},
        row{"context",
            {{"account_id", "1"}, {"project_id", "2"}, {"revision", "3"}, {"bot_filtering", "yes"}},
            "input[1].context.bot_filtering: must be true, false or null"},
        row{"event", nullptr, "input[1].event: missing"},
        row{"event", {{"key", "k"}}, "input[1].event.id: missing"},
        row{"attribute_ids_in_datafile", {{"a", 1}}, "input[1].attribute_ids_in_datafile.a"},
        row{"mocked_clock", {{"timestamp_ms", "42"}}, "input[1].mocked_clock.timestamp_ms"},
        row{"mocked_clock", {{"timestamp_ms", 1.5}}, "input[1].mocked_clock.timestamp_ms"},
        row{"mocked_clock", {{"uuid", 1}}, "input[1].mocked_clock.uuid: must be a string"});
    json::object bad = conversion_entry("bad");
    if (r.v.is_null())
        bad.erase(r.field);
    else
        bad[r.field] = r.v;
    const json::array entries = {conversion_entry("a"), bad, conversion_entry("c")};
    INFO(json::serialize(bad));
    for (const auto& text : {json::serialize(entries), lines(entries)}) {
        const auto out = build_all(text);
        REQUIRE(out.size() == 3);
        CHECK(out[0].event);
        CHECK_FALSE(out[1].event);
        CHECK(out[2].event);
        REQUIRE(out[1].error);
        CHECK(out[1].error->index == 1);
        CHECK_THAT(error_of(out[1]), Catch::Contains(r.mentions));
        // The field is reported on its own too: the path between "input[1]." and ":".
        CHECK((r.mentions + ":").starts_with("input[1]." + out[1].error->field + ":"));
        // Nothing of the bad entry is printed.
        const auto batches = test::group_payload_events(out, batch_config{});
        REQUIRE(batches.size() == 1);
        CHECK(visitor_ids(batches[0]) == std::vector<std::string>{"a", "c"});
    }
    // JSON lines name the line as well, and a line that is not JSON is one bad entry.
    const auto out = build_all(lines(entries) + "{oops\n");
    REQUIRE(out.size() == 4);
    CHECK_THAT(error_of(out[1]), Catch::Contains("(line 2)"));
    CHECK(out[1].error->line == 2);
    CHECK_THAT(error_of(out[3]),
               Catch::Contains("input[3]: not valid JSON") && Catch::Contains("(line 4)"));
    CHECK(out[3].error->field.empty());
}

TEST_CASE("payload input: $float stands for NaN and infinities", "[unit][optimizely]") {
    auto from = [](std::string_view text) {
        const auto v = test::value_from_json(json::parse(text), "x");
        REQUIRE(v);
        return *v;
    };
    const auto nan = from(R"({"$float":"nan"})");
    REQUIRE(nan.is_double());
    CHECK(std::isnan(nan.as_double()));
    CHECK(from(R"({"$float":"inf"})").as_double() == std::numeric_limits<double>::infinity());
    CHECK(from(R"({"$float":"-inf"})").as_double() == -std::numeric_limits<double>::infinity());
    // Only an object with that single member is special.
    CHECK(from(R"({"$float":"nan","b":1})").is_object());
    // Kinds as JSON gives them.
    CHECK(from("0").is_int64());
    CHECK(from("0.0").is_double());
    CHECK(from("18446744073709551615").is_double());
    const auto o = from(R"({"z":1,"a":[true,null,"s"]})");
    REQUIRE(o.as_object().size() == 2);
    CHECK(o.as_object()[0].first == "z");  // order kept
    CHECK(o.as_object()[1].second.as_array()[1].is_null());
    // Another $float string: no value, and the error names the path down to it.
    test::payload_error err;
    CHECK_FALSE(test::value_from_json(json::parse(R"({"a":[1,{"$float":"NaN"}]})"), "x", &err));
    CHECK(err.field == "x.a[1].$float");
    CHECK(err.message == "must be \"nan\", \"inf\" or \"-inf\"");
}

TEST_CASE("payload grouping is the batcher's: by whole context, in order, by batch size",
          "[unit][optimizely]") {
    SECTION("contexts interleaved: one batch per context, events in input order") {
        json::array entries = {conversion_entry("a1", "P1"), conversion_entry("b1", "P2"),
                               conversion_entry("a2", "P1"), conversion_entry("b2", "P2"),
                               conversion_entry("a3", "P1")};
        const auto ev = build_all(json::serialize(entries));
        batch_config cfg;
        cfg.batch_size = 5;
        const auto batches = test::group_payload_events(ev, cfg);
        REQUIRE(batches.size() == 2);
        CHECK(visitor_ids(batches[0]) == std::vector<std::string>{"a1", "a2", "a3"});
        CHECK(visitor_ids(batches[1]) == std::vector<std::string>{"b1", "b2"});
        CHECK(json::parse(batches[0].body).at("project_id").as_string() == "P1");
        CHECK(batches[0].event_count == 3);
    }
    SECTION("any context field splits: revision, anonymize_ip, region") {
        json::object rev = conversion_entry("r", "111001", "43");
        json::object anon = conversion_entry("n");
        anon["context"].as_object()["anonymize_ip"] = true;
        json::object eu = conversion_entry("e");
        eu["context"].as_object()["region"] = "EU";
        json::object same = conversion_entry("s");  // equal by value to the first
        const json::array entries = {conversion_entry("f"), rev, anon, eu, same};
        const auto ev = build_all(json::serialize(entries));
        const auto batches = test::group_payload_events(ev, batch_config{});
        REQUIRE(batches.size() == 4);
        CHECK(visitor_ids(batches[0]) == std::vector<std::string>{"f", "s"});
        CHECK(batches[3].url == eu_endpoint);
        CHECK(json::parse(batches[2].body).at("anonymize_ip").as_bool());
    }
    SECTION("batch size closes batches; the rest is flushed") {
        json::array entries;
        for (int i = 0; i < 5; ++i)
            entries.push_back(conversion_entry("u" + std::to_string(i)));
        const auto ev = build_all(json::serialize(entries));
        batch_config cfg;
        cfg.batch_size = 2;
        const auto batches = test::group_payload_events(ev, cfg);
        REQUIRE(batches.size() == 3);
        CHECK(visitor_ids(batches[0]) == std::vector<std::string>{"u0", "u1"});
        CHECK(visitor_ids(batches[1]) == std::vector<std::string>{"u2", "u3"});
        CHECK(visitor_ids(batches[2]) == std::vector<std::string>{"u4"});
    }
    SECTION("an event larger than the byte cap is reported, not sent") {
        json::object big = conversion_entry("big");
        big["attributes"] = {{"$opt_big", std::string(2000, 'x')}};
        const json::array entries = {conversion_entry("small"), big};
        const auto ev = build_all(json::serialize(entries));
        batch_config cfg;
        cfg.max_batch_bytes = 1024;
        std::vector<std::size_t> too_large;
        const auto batches = test::group_payload_events(ev, cfg, &too_large);
        REQUIRE(batches.size() == 1);
        CHECK(visitor_ids(batches[0]) == std::vector<std::string>{"small"});
        CHECK(too_large == std::vector<std::size_t>{1});
    }
}

TEST_CASE("payload output: url, http_verb, headers, params per batch", "[unit][optimizely]") {
    json::object eu = conversion_entry("e");
    eu["context"].as_object()["region"] = "EU";
    const json::array entries = {conversion_entry("u"), eu};
    const auto ev = build_all(json::serialize(entries));
    const auto batches = test::group_payload_events(ev, batch_config{});
    const std::string text = test::write_payload_json(batches);
    const auto out = json::parse(text);
    REQUIRE(out.as_array().size() == 2);
    const auto& first = out.at(0);
    CHECK(first.at("url").as_string() == us_endpoint);
    CHECK(first.at("http_verb").as_string() == "POST");
    CHECK(first.at("headers") == json::parse(R"({"Content-Type":"application/json"})"));
    // params is the body, byte for byte.
    CHECK(text.find(batches[0].body) != std::string::npos);
    CHECK(out.at(1).at("url").as_string() == eu_endpoint);
    CHECK(json::parse(test::write_payload_json({})).as_array().empty());
}

TEST_CASE("payload options: client and endpoint are evdispatch's, configurable",
          "[unit][optimizely]") {
    json::object e = conversion_entry("u");
    e["context"].as_object()["client_name"] = "python-sdk";  // not used
    payload_input_options opts;
    auto ev = test::build_payload_event(e, 0, opts).event;
    CHECK(ev->context->client_name == "evdispatch-cpp");
    CHECK(ev->context->endpoint == us_endpoint);
    opts.client_name = "svc";
    opts.client_version = "1.2.3";
    opts.endpoint = "http://127.0.0.1:9/v1/events";
    ev = test::build_payload_event(e, 0, opts).event;
    CHECK(ev->context->client_name == "svc");
    CHECK(ev->context->client_version == "1.2.3");
    CHECK(ev->context->endpoint == "http://127.0.0.1:9/v1/events");
    // An entry may name its own endpoint.
    e["context"].as_object()["endpoint"] = "http://127.0.0.1:7/x";
    CHECK(test::build_payload_event(e, 0, {}).event->context->endpoint == "http://127.0.0.1:7/x");
}

TEST_CASE("payload with a datafile: keys resolve, ids are checked, unknown keys refused",
          "[unit][optimizely]") {
    payload_input_options opts;
    opts.datafile = project_config::parse(test::read_text("datafile_features.json"));

    const json::object imp = {{"kind", "impression"},
                              {"user_id", "u"},
                              {"flag_key", "test_feature_in_rollout"},
                              {"rule_key", "211127"},
                              {"variation", {{"key", "211129"}}},
                              {"enabled", true},
                              {"attributes", {{"test_attribute", "x"}, {"other", 1}}}};
    const auto ev = test::build_payload_event(imp, 0, opts).event;
    CHECK(ev->context == opts.datafile->context());
    const auto v = test::parse_visitor(ev);
    const auto& dec = v.at("snapshots").at(0).at("decisions").at(0);
    CHECK(dec.at("campaign_id").as_string() == "211111");
    CHECK(dec.at("experiment_id").as_string() == "211127");
    CHECK(dec.at("variation_id").as_string() == "211129");
    CHECK(dec.at("metadata").at("rule_type").as_string() == "rollout");
    const auto& attrs = v.at("attributes").as_array();
    REQUIRE(attrs.size() == 2);  // test_attribute, $opt_bot_filtering (datafile: true)
    CHECK(attrs[0].at("entity_id").as_string() == "111094");
    CHECK(attrs[1].at("key").as_string() == "$opt_bot_filtering");

    struct bad {
        json::object patch;
        std::string mentions;
    };
    const json::object conv = {
        {"kind", "conversion"}, {"user_id", "u"}, {"event", {{"key", "test_event"}}}};
    const auto r = GENERATE_COPY(
        bad{{{"event", {{"key", "nope"}}}}, "input[0].event.key: 'nope' is not in the datafile"},
        bad{{{"event", {{"key", "test_event"}, {"id", "1"}}}},
            "input[0].event.id: does not match the datafile"},
        bad{{{"kind", "impression"}, {"experiment", {{"key", "nope"}}}},
            "input[0].experiment.key: 'nope' is not in the datafile"},
        bad{{{"kind", "impression"},
             {"experiment", {{"key", "test_experiment"}, {"layer_id", "9"}}}},
            "input[0].experiment.layer_id: does not match"},
        bad{{{"kind", "impression"},
             {"experiment", {{"key", "test_experiment"}}},
             {"variation", {{"key", "nope"}}}},
            "input[0].variation.key: 'nope' is not a variation"},
        bad{{{"kind", "impression"}}, "input[0].experiment: missing"},
        // By keys through project_config::resolve_decision: the field is the key at fault.
        bad{{{"kind", "impression"}, {"flag_key", "nope"}, {"rule_key", "r"}},
            "input[0].flag_key: flag key 'nope'"},
        bad{{{"kind", "impression"}, {"rule_key", "nope"}},
            "input[0].rule_key: experiment key 'nope' is not in the datafile"},
        bad{{{"kind", "impression"}, {"flag_key", "test_feature_in_rollout"}, {"rule_key", "r"}},
            "input[0].rule_key: rule key 'r' is not a rule of flag"},
        bad{{{"kind", "impression"},
             {"flag_key", "test_feature_in_rollout"},
             {"rule_key", "211127"},
             {"variation", {{"key", "nope"}}}},
            "input[0].variation.key: variation key 'nope' is not a variation of rule '211127'"},
        bad{{{"kind", "impression"},
             {"flag_key", "test_feature_in_rollout"},
             {"variation", {{"key", "211129"}}}},
            "input[0].variation.key: variation key '211129' given without a rule key"});
    json::object entry = conv;
    for (const auto& m : r.patch)
        entry[m.key()] = m.value();
    INFO(json::serialize(entry));
    const auto pe = test::build_payload_event(entry, 0, opts);
    CHECK_FALSE(pe.event);
    REQUIRE(pe.error);
    CHECK(pe.error->index == 0);
    CHECK_THAT(test::to_string(*pe.error), Catch::Contains(r.mentions));
}
