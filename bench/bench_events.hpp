#pragma once

// Realistic pre-built impressions shared by the micro-benchmarks (a header, not a benchmark:
// bench/CMakeLists.txt builds one executable per *.cpp only).
//
// Each visitor is a feature-test impression with one custom attribute, a uuid and a timestamp
// (no bot-filtering attribute): about 500 bytes of visitor JSON. Each further attribute adds
// about 70 bytes.

#include <evdispatch/event.hpp>
#include <evdispatch/event_builder.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace evdispatch::bench {

inline constexpr const char* bench_endpoint = "http://127.0.0.1:9/v1/events";

/// The one batch context of every bench event (shared by pointer, as events built from one
/// datafile are).
inline const context_ptr& bench_context() {
    static const context_ptr ctx = [] {
        auto c = std::make_shared<event_context>();
        c->account_id = "12001";
        c->project_id = "111001";
        c->revision = "42";
        c->endpoint = bench_endpoint;
        return context_ptr(std::move(c));
    }();
    return ctx;
}

/// One impression for visitor number `i`; attribute values vary with `i`.
inline event_ptr make_visitor(const event_builder& b, std::uint64_t i) {
    static const char* const devices[] = {"iphone", "android", "desktop-chrome", "ipad"};
    impression_input in;
    in.user_id = "user-" + std::to_string(1'000'000 + i);
    in.attributes = {{"device", "111094", std::string(devices[i % 4])}};
    in.campaign_id = "111182";
    in.experiment_id = "111127";
    in.variation_id = "111129";
    in.variation_key = "variation";
    in.flag_key = "checkout_flow";
    in.rule_key = "checkout_flow_test";
    in.rule_type = "feature-test";
    in.enabled = true;
    return b.make_impression(in);
}

/// `n` distinct visitors of one context.
inline std::vector<event_ptr> make_visitors(std::size_t n, std::uint64_t first = 0) {
    const event_builder b(bench_context());
    std::vector<event_ptr> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        v.push_back(make_visitor(b, first + i));
    return v;
}

}  // namespace evdispatch::bench
