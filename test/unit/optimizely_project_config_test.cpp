// project_config: datafile parsing, lookups, region, errors; the builder made from it.

#include "optimizely_test_support.hpp"

#include <catch2/catch.hpp>

namespace json = boost::json;
using namespace evdispatch;

namespace {

// A minimal valid datafile with `patch` merged over its top-level members.
std::string datafile_with(const json::object& patch, const std::vector<std::string>& drop = {}) {
    json::object df = {{"version", "4"},
                       {"accountId", "12001"},
                       {"projectId", "111001"},
                       {"revision", "42"},
                       {"attributes", json::array{}},
                       {"events", json::array{}},
                       {"experiments", json::array{}}};
    for (const auto& m : patch)
        df[m.key()] = m.value();
    for (const auto& k : drop)
        df.erase(k);
    return json::serialize(df);
}

// Parses and returns the error message (empty when it parsed).
std::string parse_error(const std::string& text) {
    try {
        project_config::parse(text);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == make_error_code(error::invalid_datafile));
        return e.what();
    }
    return {};
}

}  // namespace

TEST_CASE("project_config reads the test datafile", "[unit][optimizely]") {
    const auto cfg = project_config::parse(test::read_text("datafile_features.json"));
    CHECK(cfg->account_id() == "12001");
    CHECK(cfg->project_id() == "111111");
    CHECK(cfg->revision() == "1");
    CHECK(cfg->version() == "4");
    CHECK_FALSE(cfg->anonymize_ip());
    CHECK(cfg->bot_filtering() == std::optional<bool>(true));
    CHECK(cfg->send_flag_decisions());
    CHECK(cfg->region().empty());

    const auto& ctx = *cfg->context();
    CHECK(ctx.account_id == "12001");
    CHECK(ctx.project_id == "111111");
    CHECK(ctx.revision == "1");
    CHECK(ctx.client_name == "evdispatch-cpp");
    CHECK(ctx.client_version == evdispatch::version());
    CHECK(ctx.endpoint == us_endpoint);

    REQUIRE(cfg->attribute_id("test_attribute"));
    CHECK(*cfg->attribute_id("test_attribute") == "111094");
    CHECK_FALSE(cfg->attribute_id("nope"));
    REQUIRE(cfg->event_id("test_event"));
    CHECK(*cfg->event_id("test_event") == "111095");
    CHECK_FALSE(cfg->event_id("nope"));

    const experiment* e = cfg->experiment_by_key("test_experiment");
    REQUIRE(e);
    CHECK(e == cfg->experiment_by_id("111127"));
    CHECK(e->layer_id == "111182");
    CHECK(e->origin == rule_origin::experiment);
    REQUIRE(e->variation_by_key("variation"));
    CHECK(e->variation_by_key("variation")->id == "111129");
    CHECK(e->variation_by_key("variation")->feature_enabled);
    CHECK(e->variation_by_id("111128")->key == "control");
    CHECK_FALSE(e->variation_by_key("nope"));

    const experiment* g = cfg->experiment_by_key("group_exp_1");  // inside groups
    REQUIRE(g);
    CHECK(g->layer_id == "111183");

    const experiment* r = cfg->experiment_by_id("211127");  // a rollout rule
    REQUIRE(r);
    CHECK(r->origin == rule_origin::rollout);
    CHECK(r->layer_id == "211111");

    const feature_flag* f = cfg->flag_by_key("test_feature_in_rollout");
    REQUIRE(f);
    CHECK(f->rollout_id == "211111");
    const rollout* ro = cfg->rollout_by_id(f->rollout_id);
    REQUIRE(ro);
    CHECK(ro->rule_ids == std::vector<std::string>{"211127", "211137"});
    CHECK(cfg->flag_by_key("test_feature_in_experiment")->experiment_ids ==
          std::vector<std::string>{"111127"});
    CHECK_FALSE(cfg->flag_by_key("nope"));
}

TEST_CASE("project_config options override the client and the endpoint", "[unit][optimizely]") {
    project_config::options o;
    o.client_name = "my-service";
    o.client_version = "9.9.9";
    o.endpoint = "http://127.0.0.1:8080/v1/events";
    const auto cfg = project_config::parse(datafile_with({{"region", "EU"}}), o);
    CHECK(cfg->context()->client_name == "my-service");
    CHECK(cfg->context()->client_version == "9.9.9");
    CHECK(cfg->context()->endpoint == "http://127.0.0.1:8080/v1/events");
}

TEST_CASE("region picks the endpoint; absent or unknown falls back to US", "[unit][optimizely]") {
    struct row {
        json::value region;  // null: absent
        std::string_view endpoint;
    };
    const auto r = GENERATE(row{"US", us_endpoint}, row{"EU", eu_endpoint}, row{"eu", eu_endpoint},
                            row{"Eu", eu_endpoint}, row{"ZZ", us_endpoint}, row{"", us_endpoint},
                            row{"EUROPE", us_endpoint}, row{nullptr, us_endpoint});
    INFO(json::serialize(r.region));
    const auto text =
        r.region.is_null() ? datafile_with({}) : datafile_with({{"region", r.region}});
    CHECK(project_config::parse(text)->context()->endpoint == r.endpoint);
    if (r.region.is_string())
        CHECK(endpoint_for_region(r.region.as_string()) == r.endpoint);

    // The region fallback the reference vector legacy_conv_unknown_region_falls_back_to_us
    // shows: region "ZZ" is sent to the US endpoint.
    const auto legacy = test::read_json("vectors/legacy_conv_unknown_region_falls_back_to_us.json");
    const auto& region = legacy.at("inputs").at(0).at("context").at("region").as_string();
    CHECK(endpoint_for_region(region) ==
          std::string_view(legacy.at("expected").at("url").as_string()));
}

TEST_CASE("botFiltering and anonymizeIP: true, false, absent", "[unit][optimizely]") {
    CHECK(project_config::parse(datafile_with({{"botFiltering", true}}))->bot_filtering() ==
          std::optional<bool>(true));
    CHECK(project_config::parse(datafile_with({{"botFiltering", false}}))->bot_filtering() ==
          std::optional<bool>(false));
    CHECK_FALSE(project_config::parse(datafile_with({}))->bot_filtering().has_value());
    CHECK_FALSE(project_config::parse(datafile_with({{"botFiltering", nullptr}}))
                    ->bot_filtering()
                    .has_value());
    CHECK(project_config::parse(datafile_with({{"anonymizeIP", true}}))->anonymize_ip());
    CHECK_FALSE(project_config::parse(datafile_with({}))->anonymize_ip());

    // Through the builder: the attribute follows the datafile.
    for (const auto& [patch, expect] : std::vector<std::pair<json::object, std::optional<bool>>>{
             {{{"botFiltering", true}}, true}, {{{"botFiltering", false}}, false}, {{}, {}}}) {
        event_builder b(project_config::parse(datafile_with(patch)));
        const auto v = test::parse_visitor(b.make_conversion("u", {}, conversion{"e", "1", {}}));
        const auto& a = v.at("attributes").as_array();
        if (expect) {
            REQUIRE(a.size() == 1);
            CHECK(a[0].at("value").as_bool() == *expect);
        } else {
            CHECK(a.empty());
        }
    }
}

TEST_CASE("malformed datafiles give invalid_datafile naming the field", "[unit][optimizely]") {
    struct row {
        std::string text;
        std::string mentions;
    };
    const auto r = GENERATE(
        row{"{not json", "not valid JSON"}, row{"[]", "(top level)"},
        row{datafile_with({}, {"version"}), "'version' is missing"},
        row{datafile_with({{"version", 4}}), "'version' must be a string"},
        row{datafile_with({{"version", "5"}}), "unsupported version '5'"},
        row{datafile_with({}, {"accountId"}), "'accountId' is missing"},
        row{datafile_with({{"projectId", 111001}}), "'projectId' must be a string"},
        row{datafile_with({}, {"revision"}), "'revision' is missing"},
        row{datafile_with({{"anonymizeIP", "yes"}}), "'anonymizeIP' must be true or false"},
        row{datafile_with({{"botFiltering", 1}}), "'botFiltering' must be true or false"},
        row{datafile_with({{"region", 1}}), "'region' must be a string"},
        row{datafile_with({{"attributes", {{"key", "a"}}}}), "'attributes' must be an array"},
        row{datafile_with({{"attributes", json::array{json::object{{"key", "a"}}}}}),
            "'attributes[0].id' is missing"},
        row{datafile_with({{"events", json::array{json::object{{"id", "1"}, {"key", 2}}}}}),
            "'events[0].key' must be a string"},
        row{datafile_with({{"experiments", json::array{1}}}), "'experiments[0]' must be an object"},
        row{datafile_with({{"experiments", json::array{json::object{
                                               {"id", "1"},
                                               {"key", "e"},
                                               {"layerId", "2"},
                                               {"variations", json::array{json::object{
                                                                  {"id", "3"}, {"key", 4}}}}}}}}),
            "'experiments[0].variations[0].key' must be a string"},
        row{datafile_with(
                {{"groups", json::array{json::object{
                                {"experiments", json::array{json::object{{"key", "e"}}}}}}}}),
            "'groups[0].experiments[0].id' is missing"},
        row{datafile_with({{"featureFlags",
                            json::array{json::object{
                                {"id", "1"}, {"key", "f"}, {"experimentIds", json::array{1}}}}}}),
            "'featureFlags[0].experimentIds[0]' must be a string"},
        row{datafile_with(
                {{"rollouts", json::array{json::object{{"experiments", json::array{}}}}}}),
            "'rollouts[0].id' is missing"});
    INFO(r.text);
    const auto what = parse_error(r.text);
    CHECK_THAT(what, Catch::Contains("datafile: ") && Catch::Contains(r.mentions));
}

TEST_CASE("make_decision resolves flags, rules and variations by key", "[unit][optimizely]") {
    const auto cfg = project_config::parse(test::read_text("datafile_features.json"));

    auto d = cfg->make_decision("", "test_experiment", "variation", true);
    CHECK(d.layer_id == "111182");
    CHECK(d.experiment_id == "111127");
    CHECK(d.variation_id == "111129");
    CHECK(d.variation_key == "variation");
    CHECK(d.flag_key.empty());
    CHECK(d.rule_key == "test_experiment");
    CHECK(d.rule_type == "experiment");
    CHECK(d.enabled);

    d = cfg->make_decision("test_feature_in_experiment", "test_experiment", "control", false);
    CHECK(d.rule_type == "feature-test");
    CHECK(d.variation_id == "111128");
    CHECK(d.flag_key == "test_feature_in_experiment");

    d = cfg->make_decision("test_feature_in_rollout", "211137", "211139", false);
    CHECK(d.rule_type == "rollout");
    CHECK(d.layer_id == "211111");
    CHECK(d.experiment_id == "211137");
    CHECK(d.variation_id == "211139");

    // A flag decision without a rule (sent when sendFlagDecisions is on): empty ids.
    d = cfg->make_decision("test_feature_in_rollout", "", "", false);
    CHECK(d.experiment_id.empty());
    CHECK(d.layer_id.empty());
    CHECK(d.variation_id.empty());
    CHECK(d.rule_type == "rollout");
    event_builder b(cfg);
    const auto v = test::parse_visitor(b.make_impression("u", {}, d));
    const auto& dec = v.at("snapshots").at(0).at("decisions").at(0);
    CHECK(dec.at("campaign_id").as_string().empty());
    CHECK(dec.at("variation_id").is_null());

    struct bad {
        std::string flag, rule, variation, mentions;
    };
    const auto x = GENERATE(bad{"nope", "test_experiment", "", "flag key 'nope'"},
                            bad{"", "nope", "", "experiment key 'nope'"},
                            bad{"test_feature_in_rollout", "test_experiment", "",
                                "not a rule of flag 'test_feature_in_rollout'"},
                            bad{"", "test_experiment", "nope", "variation key 'nope'"},
                            bad{"", "211127", "", "rollout rule"});
    INFO(x.mentions);
    boost::system::error_code ec;
    cfg->make_decision(x.flag, x.rule, x.variation, true, ec);
    CHECK(ec == make_error_code(error::invalid_input));
    try {
        cfg->make_decision(x.flag, x.rule, x.variation, true);
        FAIL("expected an error");
    } catch (const boost::system::system_error& e) {
        CHECK_THAT(std::string(e.what()), Catch::Contains(x.mentions));
    }
}

TEST_CASE("resolve_decision names the key at fault and leaves the decision as it was",
          "[unit][optimizely]") {
    const auto cfg = project_config::parse(test::read_text("datafile_features.json"));

    decision d;
    REQUIRE_FALSE(cfg->resolve_decision("test_feature_in_rollout", "211137", "211139", true, d));
    const decision same = cfg->make_decision("test_feature_in_rollout", "211137", "211139", true);
    CHECK(d.experiment_id == same.experiment_id);
    CHECK(d.variation_id == same.variation_id);
    CHECK(d.rule_type == same.rule_type);

    struct bad {
        std::string flag, rule, variation;
        decision_field field;
        std::string message;
    };
    const auto x =
        GENERATE(bad{"nope", "test_experiment", "", decision_field::flag_key,
                     "flag key 'nope' is not in the datafile"},
                 bad{"", "nope", "", decision_field::rule_key,
                     "experiment key 'nope' is not in the datafile"},
                 bad{"", "211127", "", decision_field::rule_key,
                     "rule key '211127' is a rollout rule: give the key of its flag"},
                 bad{"test_feature_in_rollout", "test_experiment", "", decision_field::rule_key,
                     "rule key 'test_experiment' is not a rule of flag 'test_feature_in_rollout'"},
                 bad{"", "test_experiment", "nope", decision_field::variation_key,
                     "variation key 'nope' is not a variation of rule 'test_experiment'"},
                 bad{"test_feature_in_rollout", "", "211139", decision_field::variation_key,
                     "variation key '211139' given without a rule key: give the rule key too"});
    INFO(x.message);
    decision out;
    out.flag_key = "untouched";
    const auto err = cfg->resolve_decision(x.flag, x.rule, x.variation, true, out);
    REQUIRE(err);
    CHECK(err->field == x.field);
    CHECK(err->message == x.message);
    CHECK(out.flag_key == "untouched");
    // The throwing form says the same.
    CHECK_THROWS_WITH(cfg->make_decision(x.flag, x.rule, x.variation, true),
                      Catch::Contains(x.message));
}

TEST_CASE("a builder from a datafile: ids by key, unknown event key refused",
          "[unit][optimizely]") {
    const auto cfg = project_config::parse(test::read_text("datafile_multiple_experiments.json"));
    event_builder b(cfg);
    CHECK(b.context() == cfg->context());
    CHECK(b.config() == cfg);

    const event_tags tags = {{"revenue", 4200}};
    const auto ev =
        b.make_conversion("u", {{"test_attribute", "v"}, {"unknown", "w"}}, "Total Revenue", &tags);
    REQUIRE(ev);
    CHECK(ev->context == cfg->context());
    const auto v = test::parse_visitor(ev);
    CHECK(v.at("snapshots").at(0).at("events").at(0).at("entity_id").as_string() == "111096");
    CHECK(v.at("snapshots").at(0).at("events").at(0).at("revenue").as_int64() == 4200);
    REQUIRE(v.at("attributes").as_array().size() == 1);
    CHECK(v.at("attributes").at(0).at("entity_id").as_string() == "111094");

    CHECK_THROWS_WITH(b.make_conversion("u", {}, "no_such_event"),
                      Catch::Contains("'no_such_event'") && Catch::Contains("not in the datafile"));
    try {
        b.make_conversion("u", {}, "no_such_event");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == make_error_code(error::unknown_event_key));
    }
    boost::system::error_code ec;
    CHECK(b.make_conversion("u", {}, "no_such_event", nullptr, ec) == nullptr);
    CHECK(ec == make_error_code(error::unknown_event_key));
    CHECK(b.make_conversion("u", {}, "test_event", nullptr, ec) != nullptr);
    CHECK_FALSE(ec);

    // Without a datafile no key can be resolved.
    event_builder bare(cfg->context());
    CHECK(bare.make_conversion("u", {}, "test_event", nullptr, ec) == nullptr);
    CHECK(ec == make_error_code(error::unknown_event_key));

    try {
        event_builder{std::shared_ptr<const project_config>()};
        FAIL("expected an error");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == make_error_code(error::invalid_config));
        CHECK_THAT(std::string(e.what()), Catch::Contains("project_config is null"));
    }
    try {
        event_builder{context_ptr()};
        FAIL("expected an error");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == make_error_code(error::invalid_config));
        CHECK_THAT(std::string(e.what()), Catch::Contains("context is null"));
    }
}
