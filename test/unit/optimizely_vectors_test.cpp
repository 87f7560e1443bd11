// Every asserted Optimizely vector (test/data/vectors, copied from the shared contract) built
// by evdispatch and compared with the expected request, ignoring the vector's ignore_paths and
// the order of attributes.
//
// Vectors listed in _asserted_index.json that are NOT run, as the contract says (reference only):
//   legacy_imp_no_metadata.json                      inputs[].api is the legacy EventBuilder
//                                                    (no decision metadata); evdispatch follows
//                                                    the current UserEventFactory.
//   legacy_conv_unknown_region_falls_back_to_us.json legacy EventBuilder too; its rule (unknown
//                                                    region -> US endpoint) is tested on its own
//                                                    in optimizely_project_config_test.cpp.
//   payload_classes_impression.json                  serialisation of the SDK's payload classes;
//   payload_classes_conversion_two_attributes.json   their `inputs` is a description, not events.
// The test fails if the index gains a vector that is neither run nor in this list.

#include "optimizely_test_support.hpp"

#include "support/payload_input.hpp"

#include <catch2/catch.hpp>

#include <set>

namespace json = boost::json;
using namespace evdispatch;

namespace {

const std::set<std::string> skipped_vectors = {
    "legacy_imp_no_metadata.json",
    "legacy_conv_unknown_region_falls_back_to_us.json",
    "payload_classes_impression.json",
    "payload_classes_conversion_two_attributes.json",
};

std::vector<std::string> asserted_vectors() {
    std::vector<std::string> files;
    const auto index = test::read_json("vectors/_asserted_index.json");
    for (const auto& e : index.as_array())
        files.emplace_back(e.at("file").as_string());
    return files;
}

// The batches evdispatch prints for a vector's inputs (one batch per context).
std::vector<log_event> build_vector(const json::value& vec,
                                    const test::payload_input_options& opts) {
    const auto& inputs = vec.at("inputs").as_array();
    std::vector<test::payload_entry> entries;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        entries.push_back(test::build_payload_event(inputs[i], i, opts));
        INFO((entries.back().error ? test::to_string(*entries.back().error) : ""));
        REQUIRE(entries.back().event);
    }
    batch_config cfg;
    cfg.batch_size = inputs.size();
    return test::group_payload_events(entries, cfg);
}

void compare_with_expected(const json::value& vec, const std::vector<log_event>& batches) {
    const auto& expected = vec.at("expected");
    REQUIRE(batches.size() == 1);
    const auto& le = batches[0];
    CHECK(le.url == std::string_view(expected.at("url").as_string()));
    CHECK(le.http_verb == std::string_view(expected.at("http_verb").as_string()));
    const auto& headers = expected.at("headers").as_object();
    REQUIRE(le.headers.size() == headers.size());
    for (const auto& [name, val] : le.headers) {
        INFO("header " << name);
        REQUIRE(headers.if_contains(name));
        CHECK(val == std::string_view(headers.at(name).as_string()));
    }

    json::value want = expected.at("payload");
    json::value got = json::parse(le.body);  // the body must be valid JSON
    for (const auto& p : vec.at("comparison").at("ignore_paths").as_array()) {
        test::remove_path(want, p.as_string());
        test::remove_path(got, p.as_string());
    }
    test::sort_attributes(want);
    test::sort_attributes(got);
    INFO("expected: " << json::serialize(want));
    INFO("built:    " << json::serialize(got));
    CHECK(test::json_equal(want, got));
}

// The datafile a vector's context came from (see _datafile_context.json), with the region,
// bot filtering and anonymizeIP of that context.
std::shared_ptr<const project_config> datafile_for(const json::object& ctx) {
    const std::string project(ctx.at("project_id").as_string());
    json::value df = test::read_json(project == "111111" ? "datafile_features.json"
                                                         : "datafile_multiple_experiments.json");
    auto& o = df.as_object();
    REQUIRE(std::string_view(o.at("projectId").as_string()) == project);
    REQUIRE(o.at("revision") == ctx.at("revision"));
    REQUIRE(o.at("accountId") == ctx.at("account_id"));
    o["region"] = ctx.at("region");
    o["anonymizeIP"] = ctx.at("anonymize_ip");
    if (ctx.at("bot_filtering").is_null())
        o.erase("botFiltering");
    else
        o["botFiltering"] = ctx.at("bot_filtering");
    return project_config::parse(json::serialize(df));
}

}  // namespace

TEST_CASE("the vector index is fully accounted for", "[unit][optimizely]") {
    const auto files = asserted_vectors();
    std::size_t run = 0;
    for (const auto& f : files) {
        if (!skipped_vectors.count(f)) {
            ++run;
            continue;
        }
        // A skipped vector must be one of the two kinds the contract calls reference only.
        INFO(f);
        const auto vec = test::read_json("vectors/" + f);
        const auto& inputs = vec.at("inputs");
        if (inputs.is_string()) {
            CHECK(f.starts_with("payload_classes_"));
        } else {
            const std::string api(inputs.at(0).at("api").as_string());
            CHECK(api.find("EventBuilder") == 0);
        }
    }
    for (const auto& s : skipped_vectors)
        CHECK(std::find(files.begin(), files.end(), s) != files.end());
    CHECK(files.size() == 25);
    CHECK(run == 21);
}

TEST_CASE("every asserted vector: inputs with resolved ids", "[unit][optimizely]") {
    std::size_t ran = 0;
    for (const auto& f : asserted_vectors()) {
        if (skipped_vectors.count(f))
            continue;
        INFO("vector " << f);
        const auto vec = test::read_json("vectors/" + f);
        const auto batches = build_vector(vec, {});
        compare_with_expected(vec, batches);

        // Beyond the ignored paths: the fixed clock and uuid are honoured, and the client is
        // evdispatch's own.
        const auto body = json::parse(batches.at(0).body);
        const auto& clock = vec.at("inputs").at(0).at("mocked_clock");
        const auto& ev = test::first_visitor(body).at("snapshots").at(0).at("events").at(0);
        CHECK(ev.at("uuid") == clock.at("uuid"));
        CHECK(ev.at("timestamp").as_int64() == clock.at("timestamp_ms").to_number<std::int64_t>());
        CHECK(body.at("client_name").as_string() == "evdispatch-cpp");
        CHECK(body.at("client_version").as_string() == evdispatch::version());
        ++ran;
    }
    CHECK(ran == 21);
}

TEST_CASE("every asserted vector: the same events resolved from a datafile by key",
          "[unit][optimizely]") {
    std::size_t ran = 0;
    for (const auto& f : asserted_vectors()) {
        if (skipped_vectors.count(f))
            continue;
        INFO("vector " << f);
        const auto vec = test::read_json("vectors/" + f);
        test::payload_input_options opts;
        opts.datafile = datafile_for(vec.at("inputs").at(0).at("context").as_object());

        // Keep only what a caller with a datafile gives: keys, metadata, user data.
        json::value stripped = vec;
        for (auto& in : stripped.at("inputs").as_array()) {
            auto& o = in.as_object();
            o.erase("context");
            o.erase("attribute_ids_in_datafile");
            if (auto* x = o.if_contains("experiment")) {
                x->as_object().erase("id");
                x->as_object().erase("layer_id");
            }
            if (auto* v = o.if_contains("variation"))
                v->as_object().erase("id");
            if (auto* e = o.if_contains("event"))
                e->as_object().erase("id");
        }
        compare_with_expected(vec, build_vector(stripped, opts));
        // And with the ids left in: they agree with the datafile, so the result is the same.
        compare_with_expected(vec, build_vector(vec, opts));
        ++ran;
    }
    CHECK(ran == 21);
}
