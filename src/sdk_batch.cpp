#include <evdispatch/sdk_batch.hpp>

#include <evdispatch/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <memory>

namespace evdispatch {

namespace json = boost::json;

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw boost::system::system_error(error::invalid_input, "event batch: " + what);
}

std::string header_string(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (!v)
        fail("'" + std::string(key) + "' is missing");
    if (!v->is_string())
        fail("'" + std::string(key) + "' must be a string");
    return std::string(v->get_string());
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
    const auto& o = root.get_object();

    auto ctx = std::make_shared<event_context>();
    ctx->account_id = header_string(o, "account_id");
    ctx->project_id = header_string(o, "project_id");
    ctx->revision = header_string(o, "revision");
    ctx->client_name =
        opts.client_name.empty() ? header_string(o, "client_name") : opts.client_name;
    ctx->client_version =
        opts.client_version.empty() ? header_string(o, "client_version") : opts.client_version;
    if (const json::value* a = o.if_contains("anonymize_ip")) {
        if (!a->is_bool())
            fail("'anonymize_ip' must be true or false");
        ctx->anonymize_ip = a->get_bool();
    }
    ctx->endpoint = opts.endpoint.empty() ? std::string(url) : opts.endpoint;
    if (ctx->endpoint.empty())
        fail("no endpoint: give the url the batch was meant for");

    const json::value* visitors = o.if_contains("visitors");
    if (!visitors)
        fail("'visitors' is missing");
    if (!visitors->is_array())
        fail("'visitors' must be an array");
    const context_ptr shared = std::move(ctx);
    const auto created = std::chrono::steady_clock::now();
    std::vector<event_ptr> out;
    out.reserve(visitors->get_array().size());
    std::size_t i = 0;
    for (const auto& v : visitors->get_array()) {
        const std::string where = "'visitors[" + std::to_string(i++) + "]";
        if (!v.is_object())
            fail(where + "' must be an object");
        const json::value* id = v.get_object().if_contains("visitor_id");
        if (!id || !id->is_string())
            fail(where + ".visitor_id' must be a string");
        const json::value* snaps = v.get_object().if_contains("snapshots");
        if (!snaps || !snaps->is_array())
            fail(where + ".snapshots' must be an array");
        auto ev = std::make_shared<user_event>();
        ev->context = shared;
        ev->visitor_json = json::serialize(v);
        ev->created = created;
        out.push_back(std::move(ev));
    }
    return out;
}

}  // namespace evdispatch
