#include "support/workload.hpp"

#include "core/batcher.hpp"

namespace evdispatch::test {

context_ptr make_context(const std::string& url, std::string project) {
    auto c = std::make_shared<event_context>();
    c->account_id = "12001";
    c->project_id = std::move(project);
    c->revision = "42";
    c->endpoint = url;
    return c;
}

impression_input sample_impression(std::uint64_t user) {
    impression_input in;
    in.user_id = "user-" + std::to_string(user);
    in.attributes = {{"device", "111094", std::string("iphone")},
                     {"is_premium", "111095", true},
                     {"age", "111096", std::int64_t(30 + user % 40)}};
    in.campaign_id = "111182";
    in.experiment_id = "111127";
    in.variation_id = "111129";
    in.variation_key = "variation";
    in.flag_key = "checkout_flow";
    in.rule_key = "test_experiment";
    in.rule_type = "experiment";
    in.enabled = true;
    return in;
}

conversion_input sample_conversion(std::uint64_t user) {
    conversion_input in;
    in.user_id = "user-" + std::to_string(user);
    in.attributes = {{"device", "111094", std::string("android")}, {"is_premium", "111095", false}};
    in.event_id = "111095";
    in.event_key = "purchase";
    in.revenue = 4200;
    in.value = 12.5;
    in.tags_json = R"({"revenue":4200,"value":12.5,"category":"shoes"})";
    return in;
}

event_ptr make_impression(const event_builder& b, std::uint64_t user) {
    return b.make_impression(sample_impression(user));
}

event_ptr workload::make(std::uint64_t n, impression_input& imp, conversion_input& conv) const {
    if (n % 5 == 4) {
        conv.user_id.assign("user-");
        conv.user_id += std::to_string(n % 1'000'003);
        conv.revenue = static_cast<std::int64_t>(n % 10'000);
        return builder_.make_conversion(conv);
    }
    imp.user_id.assign("user-");
    imp.user_id += std::to_string(n % 1'000'003);
    std::get<std::int64_t>(imp.attributes[2].value) = static_cast<std::int64_t>(n % 90);
    return builder_.make_impression(imp);
}

const context_ptr& visitors_context() {
    static const context_ptr ctx = make_context("http://127.0.0.1:9/v1/events");
    return ctx;
}

std::vector<event_ptr> make_visitors(std::size_t n, std::uint64_t first) {
    static const char* const devices[] = {"iphone", "android", "desktop-chrome", "ipad"};
    const event_builder b(visitors_context());
    std::vector<event_ptr> v;
    v.reserve(n);
    impression_input in;
    in.campaign_id = "111182";
    in.experiment_id = "111127";
    in.variation_id = "111129";
    in.variation_key = "variation";
    in.flag_key = "checkout_flow";
    in.rule_key = "checkout_flow_test";
    in.rule_type = "feature-test";
    in.enabled = true;
    for (std::size_t i = 0; i < n; ++i) {
        in.user_id = "user-" + std::to_string(1'000'000 + first + i);
        in.attributes = {{"device", "111094", std::string(devices[(first + i) % 4])}};
        v.push_back(b.make_impression(in));
    }
    return v;
}

std::string single_event_body(const user_event& ev) {
    std::string body;
    detail::write_envelope_prefix(body, *ev.context);
    body += ev.visitor_json;
    body += detail::envelope_suffix;
    return body;
}

}  // namespace evdispatch::test
