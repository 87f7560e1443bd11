#include <evdispatch/optimizely/sdk_batch.hpp>

#include "optimizely/json_read.hpp"

#include <evdispatch/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <memory>

namespace evdispatch {

namespace json = boost::json;

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw boost::system::system_error(error::invalid_input, "event batch: " + what);
}

std::vector<event_ptr> split(const json::object& o, std::string_view url,
                             const split_options& opts) {
    // A null is a value of the wrong type here: SDKs never write one in a batch.
    const detail::json_reader r({.null = detail::json_null::value});
    if (opts.strict) {
        static constexpr std::string_view known[] = {
            "account_id",     "project_id",   "revision",         "client_name",
            "client_version", "anonymize_ip", "enrich_decisions", "visitors"};
        for (const auto& kv : o) {
            if (std::find(std::begin(known), std::end(known), kv.key()) == std::end(known))
                fail("unknown envelope field \"" + std::string(kv.key()) +
                     "\" (evdispatch would not forward it)");
        }
        if (r.optional_bool(o, "enrich_decisions").value_or(true) != true)
            fail(
                "enrich_decisions must be true (evdispatch sends every batch with "
                "enrich_decisions true)");
    }
    auto ctx = std::make_shared<event_context>();
    ctx->account_id = r.required_string(o, "account_id");
    ctx->project_id = r.required_string(o, "project_id");
    ctx->revision = r.required_string(o, "revision");
    ctx->client_name =
        opts.client_name.empty() ? r.required_string(o, "client_name") : opts.client_name;
    ctx->client_version =
        opts.client_version.empty() ? r.required_string(o, "client_version") : opts.client_version;
    ctx->anonymize_ip = r.optional_bool(o, "anonymize_ip").value_or(false);
    ctx->endpoint = opts.endpoint.empty() ? std::string(url) : opts.endpoint;
    if (ctx->endpoint.empty())
        fail("no endpoint: give the url the batch was meant for");

    const auto& visitors = r.required_array(o, "visitors");
    const context_ptr shared = std::move(ctx);
    const auto created = std::chrono::steady_clock::now();
    std::vector<event_ptr> out;
    out.reserve(visitors.size());
    for (std::size_t i = 0; i < visitors.size(); ++i) {
        const std::string where = detail::json_reader::path("visitors", i);
        const auto& v = detail::json_reader::object(visitors[i], where);
        r.required_string(v, "visitor_id", where);
        r.required_array(v, "snapshots", where);
        out.push_back(make_event(shared, json::serialize(visitors[i]), created));
    }
    return out;
}

}  // namespace

std::vector<event_ptr> split_event_batch(std::string_view url, std::string_view body,
                                         const split_options& opts) {
    boost::system::error_code ec;
    const json::value root = json::parse(body, ec);
    if (ec)
        fail("not valid JSON: " + ec.message());
    if (!root.is_object())
        fail("the body must be a JSON object");
    try {
        return split(root.get_object(), url, opts);
    } catch (const detail::json_field_error& e) {
        fail(e.what());
    }
}

}  // namespace evdispatch
