// End to end: Optimizely events built from the vectors' inputs (fixed clock and uuid) go
// through the processor to the real collector, and the bodies it receives are byte for byte
// what `evdispatch payload` prints for the same inputs.

#include "support/fixtures.hpp"
#include "support/payload_input.hpp"
#include "support/vectors.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

// The inputs of the asserted vectors built by the current UserEventFactory rules.
std::string collect_inputs() {
    json::array all;
    for (const char* name :
         {"imp_basic_experiment.json", "imp_string_attribute.json", "imp_cmab_uuid.json",
          "imp_region_eu.json", "imp_user_agent_bot_filtering_true.json",
          "imp_attribute_not_in_datafile.json", "activate_attribute_types.json", "conv_basic.json",
          "conv_revenue_value_tags.json", "conv_invalid_revenue_value_tags.json",
          "conv_region_eu.json", "track_invalid_tags.json", "track_revenue_only.json",
          "rollout_impression_send_flag_decisions.json"}) {
        const auto v = test::read_vector(name);
        for (const auto& in : v.at("inputs").as_array())
            all.push_back(in);
    }
    return json::serialize(all);
}

}  // namespace

TEST_CASE("collector receives exactly what `payload` prints for the same inputs",
          "[integration][optimizely]") {
    collector col(collector_config{.keep_bodies = true});
    const std::string inputs = collect_inputs();

    test::payload_input_options opts;
    opts.endpoint = col.url();  // every context points at the loopback collector
    boost::system::error_code input_ec;
    const auto entries = test::build_payload_events(inputs, opts, input_ec);
    REQUIRE_FALSE(input_ec);
    REQUIRE(entries.size() >= 14);
    for (const auto& e : entries) {
        INFO("entry " << e.index << ": " << (e.error ? test::to_string(*e.error) : ""));
        REQUIRE(e.event);
    }

    // What `evdispatch payload` prints (one batch per context, in closing order).
    batch_config bc;
    bc.batch_size = 1000;
    bc.flush_interval = 60s;
    const auto expected = test::group_payload_events(entries, bc);
    REQUIRE(expected.size() >= 2);  // several contexts (regions, projects) in the inputs
    const json::value printed = json::parse(test::write_payload_json(expected));
    REQUIRE(printed.is_array());
    REQUIRE(printed.as_array().size() == expected.size());

    // The same events through the processor: one connection, so arrival order is send order.
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch = bc;
    cfg.http.max_connections = 1;
    batch_event_processor p(cfg);
    for (const auto& e : entries)
        REQUIRE(p.process(e.event) == process_result::accepted);
    auto [ec, report] = test::close_and_wait(p, 10s);
    CHECK(!ec);
    CHECK(report.delivered == entries.size());

    const auto bodies = col.bodies();
    REQUIRE(bodies.size() == expected.size());
    for (std::size_t i = 0; i < bodies.size(); ++i) {
        INFO("batch " << i);
        CHECK(bodies[i] == expected[i].body);
        // And the printed params are that body as JSON.
        CHECK(json::parse(bodies[i]) == printed.as_array()[i].at("params"));
        CHECK(printed.as_array()[i].at("url").as_string() == col.url());
        CHECK(printed.as_array()[i].at("http_verb") == "POST");
    }
    // Every body the collector took passed its schema check.
    CHECK(col.stats().rejected == 0);
    CHECK(col.stats().batches == expected.size());
}
