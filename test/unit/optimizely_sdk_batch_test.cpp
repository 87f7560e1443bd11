// split_event_batch: an SDK-built batch taken over and re-batched by evdispatch.

#include "optimizely_test_support.hpp"

#include "support/payload_input.hpp"

#include <evdispatch/optimizely/sdk_batch.hpp>

#include <catch2/catch.hpp>

namespace json = boost::json;
using namespace evdispatch;

namespace {

std::vector<log_event> regroup(const std::vector<event_ptr>& events) {
    std::vector<test::payload_entry> entries;
    for (std::size_t i = 0; i < events.size(); ++i)
        entries.push_back({i, events[i], {}});
    return test::group_payload_events(entries, batch_config{});
}

}  // namespace

TEST_CASE("an SDK's batch is split per visitor and re-batched to the same payload",
          "[unit][optimizely]") {
    // The payload the SDK itself built in a vector (tags, value, attributes), as its custom
    // event dispatcher would receive it.
    const auto vec = test::read_json("vectors/conv_revenue_value_tags.json");
    const auto& expected = vec.at("expected");
    const std::string url(expected.at("url").as_string());
    // Two visitors in one SDK batch.
    json::value sdk_body = expected.at("payload");
    auto& visitors = sdk_body.at("visitors").as_array();
    visitors.push_back(visitors.at(0));
    visitors.at(1).as_object()["visitor_id"] = "second";

    const auto events = split_event_batch(url, json::serialize(sdk_body));
    REQUIRE(events.size() == 2);
    CHECK(events[0]->context == events[1]->context);  // one shared context
    const auto& ctx = *events[0]->context;
    CHECK(ctx.account_id == "12001");
    CHECK(ctx.project_id == "111001");
    CHECK(ctx.revision == "42");
    CHECK(ctx.client_name == "python-sdk");  // the batch's own client by default
    CHECK(ctx.client_version == "5.5.0");
    CHECK_FALSE(ctx.anonymize_ip);
    CHECK(ctx.endpoint == url);

    const auto batches = regroup(events);
    REQUIRE(batches.size() == 1);
    CHECK(batches[0].url == url);
    CHECK(test::json_equal(json::parse(batches[0].body), sdk_body));
    CHECK(test::first_visitor(json::parse(batches[0].body)).at("visitor_id") == "test_user");

    split_options o;
    o.endpoint = "http://127.0.0.1:8080/v1/events";
    o.client_name = "gateway";
    o.client_version = "2.0";
    const auto redirected = split_event_batch(url, json::serialize(sdk_body), o);
    CHECK(redirected[0]->context->endpoint == o.endpoint);
    CHECK(redirected[0]->context->client_name == "gateway");
    CHECK(redirected[0]->context->client_version == "2.0");
}

TEST_CASE("split_event_batch refuses what is not an event batch, naming the field",
          "[unit][optimizely]") {
    const std::string good = R"({"account_id":"1","project_id":"2","revision":"3",
        "client_name":"c","client_version":"v","anonymize_ip":false,"enrich_decisions":true,
        "visitors":[{"visitor_id":"u","attributes":[],"snapshots":[]}]})";
    CHECK(split_event_batch("https://logx.optimizely.com/v1/events", good).size() == 1);

    struct row {
        std::string from, to, mentions;
    };
    const auto r =
        GENERATE(row{R"("visitors":[)", R"("tags":{"value":NaN},"visitors":[)", "not valid JSON"},
                 row{R"("project_id":"2",)", "", "'project_id' is missing"},
                 row{R"("revision":"3")", R"("revision":3)", "'revision' must be a string"},
                 row{R"("anonymize_ip":false)", R"("anonymize_ip":"no")", "'anonymize_ip' must be"},
                 row{R"("visitors":[{"visitor_id":"u","attributes":[],"snapshots":[]}])",
                     R"("visitors":{})", "'visitors' must be an array"},
                 row{R"({"visitor_id":"u",)", R"({"visitor_id":7,)", "'visitors[0].visitor_id'"},
                 row{R"("snapshots":[])", R"("snapshots":{})", "'visitors[0].snapshots'"});
    std::string bad = good;
    const auto at = bad.find(r.from);
    REQUIRE(at != std::string::npos);
    bad.replace(at, r.from.size(), r.to);
    INFO(bad);
    try {
        split_event_batch("https://logx.optimizely.com/v1/events", bad);
        FAIL("expected an error");
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == make_error_code(error::invalid_input));
        CHECK_THAT(std::string(e.what()), Catch::Contains(r.mentions));
    }
    CHECK_THROWS_AS(split_event_batch("", good), boost::system::system_error);
}

TEST_CASE("split_event_batch strict refuses what evdispatch would not forward as given",
          "[unit][optimizely]") {
    const std::string base =
        R"({"account_id":"1","project_id":"2","revision":"3","client_name":"c",)"
        R"("client_version":"1","anonymize_ip":false,)";
    const std::string visitors = R"("visitors":[{"visitor_id":"v","snapshots":[]}]})";
    const std::string url = "https://logx.optimizely.com/v1/events";
    const split_options strict{.strict = true};
    // Accepted either way.
    CHECK(split_event_batch(url, base + R"("enrich_decisions":true,)" + visitors, strict).size() ==
          1);
    CHECK(split_event_batch(url, base + visitors, strict).size() == 1);
    const auto refused = [&](const std::string& body, const char* says) {
        INFO(body);
        CHECK(split_event_batch(url, body).size() == 1);  // not strict: ignored
        try {
            (void)split_event_batch(url, body, strict);
            FAIL("accepted");
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == error::invalid_input);
            CHECK(std::string(e.what()).find(says) != std::string::npos);
        }
    };
    refused(base + R"("enrich_decisions":false,)" + visitors, "enrich_decisions must be true");
    refused(base + R"("source":"x",)" + visitors, "unknown envelope field \"source\"");
}
