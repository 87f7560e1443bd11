// Entries in the shape of the vectors' `inputs` -> events -> the batches the processor sends.

#include "support/payload_input.hpp"

#include "core/batcher.hpp"
#include "core/json_writer.hpp"
#include "optimizely/json_read.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>

#include <cmath>
#include <limits>

namespace evdispatch::test {

namespace json = boost::json;

namespace {

using detail::json_field_error;
using detail::json_reader;

// Reads the fields of entries. null means "none" in an entry: a member whose value is null
// reads as absent, and a wrong-type message says that null is accepted too. A bad field throws
// detail::json_field_error, which build_payload_event turns into the entry's payload_error.
const json_reader fields({.null = detail::json_null::absent, .say_or_null = true});

[[noreturn]] void fail(std::string path, std::string problem) {
    json_reader::fail(std::move(path), std::move(problem));
}

// An id the wire rules normalise: a non-string is treated as absent ("" -> null/fallback).
std::string loose_id(const json::object& o, std::string_view key) {
    const json::value* v = fields.find(o, key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

value from_json(const json::value& j, const std::string& path) {
    switch (j.kind()) {
        case json::kind::null:
            return value();
        case json::kind::bool_:
            return value(j.get_bool());
        case json::kind::int64:
            return value(j.get_int64());
        case json::kind::uint64:
            return value(j.get_uint64());
        case json::kind::double_:
            return value(j.get_double());
        case json::kind::string:
            return value(std::string_view(j.get_string()));
        case json::kind::array: {
            value::array a;
            const auto& ja = j.get_array();
            a.reserve(ja.size());
            for (std::size_t i = 0; i < ja.size(); ++i)
                a.push_back(from_json(ja[i], json_reader::path(path, i)));
            return value(std::move(a));
        }
        case json::kind::object: {
            const auto& jo = j.get_object();
            if (jo.size() == 1 && jo.begin()->key() == "$float") {
                const auto& f = jo.begin()->value();
                if (f.is_string()) {
                    const std::string_view s = f.get_string();
                    if (s == "nan")
                        return value(std::numeric_limits<double>::quiet_NaN());
                    if (s == "inf")
                        return value(std::numeric_limits<double>::infinity());
                    if (s == "-inf")
                        return value(-std::numeric_limits<double>::infinity());
                }
                fail(path + ".$float", "must be \"nan\", \"inf\" or \"-inf\"");
            }
            value::object o;
            o.reserve(jo.size());
            for (const auto& m : jo)
                o.emplace_back(std::string(m.key()),
                               from_json(m.value(), json_reader::path(path, m.key())));
            return value(std::move(o));
        }
    }
    return value();
}

user_attributes read_attributes(const json::object& e) {
    user_attributes attrs;
    if (const json::object* a = fields.optional_object(e, "attributes")) {
        attrs.reserve(a->size());
        for (const auto& m : *a)
            attrs.emplace_back(std::string(m.key()),
                               from_json(m.value(), json_reader::path("attributes", m.key())));
    }
    return attrs;
}

std::optional<event_tags> read_tags(const json::object& e) {
    const json::object* t = fields.optional_object(e, "event_tags");
    if (!t)
        return std::nullopt;
    event_tags tags;
    tags.reserve(t->size());
    for (const auto& m : *t)
        tags.emplace_back(std::string(m.key()),
                          from_json(m.value(), json_reader::path("event_tags", m.key())));
    return tags;
}

// The builder of an entry without a datafile: its context, bot filtering, attribute ids.
event_builder builder_from_entry(const json::object& e, const payload_input_options& opts) {
    if (!fields.find(e, "context"))
        fail("context", "missing (or give --datafile)");
    const auto& c = fields.required_object(e, "context");
    auto ctx = std::make_shared<event_context>();
    ctx->account_id = fields.required_string(c, "account_id", "context");
    ctx->project_id = fields.required_string(c, "project_id", "context");
    ctx->revision = fields.required_string(c, "revision", "context");
    ctx->anonymize_ip = fields.optional_bool(c, "anonymize_ip", "context").value_or(false);
    const auto bot = fields.optional_bool(c, "bot_filtering", "context");
    const auto region = fields.optional_string(c, "region", "context").value_or("");
    const auto endpoint = fields.optional_string(c, "endpoint", "context");
    ctx->endpoint = !opts.endpoint.empty() ? opts.endpoint
                    : endpoint             ? *endpoint
                                           : std::string(endpoint_for_region(region));
    // The client is evdispatch's own: an entry's client_name/client_version are not used.
    ctx->client_name = opts.client_name;
    ctx->client_version = opts.client_version;

    auto ids = std::make_shared<attribute_id_map>();
    if (const json::object* a = fields.optional_object(e, "attribute_ids_in_datafile")) {
        for (const auto& m : *a) {
            if (m.value().is_null())
                continue;  // unknown to the datafile
            if (!m.value().is_string())
                fail(json_reader::path("attribute_ids_in_datafile", m.key()),
                     "must be a string (the attribute id) or null (unknown key)");
            ids->emplace(std::string(m.key()), std::string(m.value().get_string()));
        }
    }
    return event_builder(std::move(ctx), bot, std::move(ids));
}

void apply_mocked_clock(const json::object& e, event_builder& b) {
    const json::object* mc = fields.optional_object(e, "mocked_clock");
    if (!mc)
        return;
    if (const json::value* ts = fields.find(*mc, "timestamp_ms")) {
        std::int64_t ms = 0;
        if (ts->is_int64()) {
            ms = ts->get_int64();
        } else if (ts->is_uint64() &&
                   ts->get_uint64() <=
                       static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            ms = static_cast<std::int64_t>(ts->get_uint64());
        } else {
            fail("mocked_clock.timestamp_ms", "must be an integer (Unix epoch milliseconds)");
        }
        b.set_clock([ms] { return ms; });
    }
    if (auto uuid = fields.optional_string(*mc, "uuid", "mocked_clock"))
        b.set_uuid_source([u = std::move(*uuid)] { return u; });
}

// Checks that an id an entry gives agrees with the datafile.
void check_same(const json::object& o, std::string_view key, std::string_view base,
                const std::string& expected, std::string_view what) {
    const json::value* v = fields.find(o, key);
    if (!v)
        return;
    if (!v->is_string() || v->get_string() != expected)
        fail(json_reader::path(base, key),
             "does not match the datafile (" + std::string(what) + " '" + expected + "')");
}

// The entry field of a key project_config::resolve_decision could not resolve.
const char* entry_field(decision_field f) {
    switch (f) {
        case decision_field::flag_key:
            return "flag_key";
        case decision_field::variation_key:
            return "variation.key";
        case decision_field::rule_key:
            break;
    }
    return "rule_key";
}

decision decision_from_datafile(const json::object& e, const project_config& cfg) {
    const std::string flag_key = fields.optional_string(e, "flag_key").value_or("");
    const std::string rule_key = fields.optional_string(e, "rule_key").value_or("");
    const std::string rule_type = fields.optional_string(e, "rule_type").value_or("");
    const bool enabled = fields.optional_bool(e, "enabled").value_or(false);
    const json::object* x = fields.optional_object(e, "experiment");
    const json::object* v = fields.optional_object(e, "variation");
    decision d;
    if (x) {
        const experiment* ex = nullptr;
        if (auto key = fields.optional_string(*x, "key", "experiment")) {
            ex = cfg.experiment_by_key(*key);
            if (!ex)
                fail("experiment.key", "'" + *key + "' is not in the datafile");
            check_same(*x, "id", "experiment", ex->id, "id of experiment " + ex->key);
        } else if (auto id = fields.optional_string(*x, "id", "experiment")) {
            ex = cfg.experiment_by_id(*id);
            if (!ex)
                fail("experiment.id", "'" + *id + "' is not in the datafile");
        } else {
            fail("experiment", "give its key or its id");
        }
        check_same(*x, "layer_id", "experiment", ex->layer_id, "layerId of " + ex->key);
        const variation* var = nullptr;
        if (v) {
            if (auto key = fields.optional_string(*v, "key", "variation")) {
                var = ex->variation_by_key(*key);
                if (!var)
                    fail("variation.key",
                         "'" + *key + "' is not a variation of experiment '" + ex->key + "'");
                check_same(*v, "id", "variation", var->id, "id of variation " + var->key);
            } else if (auto id = fields.optional_string(*v, "id", "variation")) {
                var = ex->variation_by_id(*id);
                if (!var)
                    fail("variation.id",
                         "'" + *id + "' is not a variation of experiment '" + ex->key + "'");
            }
        }
        d = cfg.make_decision(*ex, var, flag_key, rule_key, rule_type, enabled);
    } else {
        if (flag_key.empty() && rule_key.empty())
            fail("experiment", "missing (give experiment.key, or flag_key and rule_key)");
        std::string variation_key;
        if (v)
            variation_key = fields.optional_string(*v, "key", "variation").value_or("");
        if (auto err = cfg.resolve_decision(flag_key, rule_key, variation_key, enabled, d))
            fail(entry_field(err->field), std::move(err->message));
        if (!rule_type.empty())
            d.rule_type = rule_type;
    }
    if (auto cmab = fields.optional_string(e, "cmab_uuid"))
        d.cmab_uuid = std::move(*cmab);
    return d;
}

decision decision_from_entry(const json::object& e) {
    decision d;
    if (const json::object* x = fields.optional_object(e, "experiment")) {
        d.experiment_id = fields.optional_string(*x, "id", "experiment").value_or("");
        d.layer_id = loose_id(*x, "layer_id");
    }
    if (const json::object* v = fields.optional_object(e, "variation")) {
        d.variation_id = loose_id(*v, "id");  // a non-string id is sent as null
        d.variation_key = fields.optional_string(*v, "key", "variation").value_or("");
    }
    d.flag_key = fields.optional_string(e, "flag_key").value_or("");
    d.rule_key = fields.optional_string(e, "rule_key").value_or("");
    d.rule_type = fields.optional_string(e, "rule_type").value_or("");
    d.enabled = fields.optional_bool(e, "enabled").value_or(false);
    if (auto cmab = fields.optional_string(e, "cmab_uuid"))
        d.cmab_uuid = std::move(*cmab);
    return d;
}

event_ptr build_event(const json::value& entry, const payload_input_options& opts) {
    const auto& e = json_reader::object(entry, "");
    const std::string kind = fields.required_string(e, "kind");
    if (kind != "impression" && kind != "conversion")
        fail("kind", "must be \"impression\" or \"conversion\", not \"" + kind + "\"");
    const std::string user_id = fields.required_string(e, "user_id");
    const user_attributes attrs = read_attributes(e);

    event_builder b = opts.datafile ? event_builder(opts.datafile) : builder_from_entry(e, opts);
    apply_mocked_clock(e, b);

    if (kind == "impression") {
        const decision d =
            opts.datafile ? decision_from_datafile(e, *opts.datafile) : decision_from_entry(e);
        return b.make_impression(user_id, attrs, d);
    }

    const auto& eo = fields.required_object(e, "event");
    conversion c;
    c.event_key = fields.required_string(eo, "key", "event");
    if (opts.datafile) {
        const std::string* id = opts.datafile->event_id(c.event_key);
        if (!id)
            fail("event.key", "'" + c.event_key + "' is not in the datafile");
        check_same(eo, "id", "event", *id, "id of event " + c.event_key);
        c.event_id = *id;
    } else {
        c.event_id = fields.required_string(eo, "id", "event");
    }
    c.tags = read_tags(e);
    return b.make_conversion(user_id, attrs, c);
}

// How an entry's error reads: "missing", "must be a string", or the reader's own words.
std::string entry_message(const json_field_error& e) {
    switch (e.kind()) {
        case json_field_error::fault::missing:
            return "missing";
        case json_field_error::fault::wrong_type:
            return "must be " + e.text();
        case json_field_error::fault::invalid:
            break;
    }
    return e.text();
}

bool is_blank(std::string_view s) {
    for (char c : s)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            return false;
    return true;
}

}  // namespace

std::string to_string(const payload_error& e) {
    std::string s = "input[" + std::to_string(e.index) + "]";
    if (!e.field.empty())
        s += "." + e.field;
    s += ": " + e.message;
    if (e.line != 0)
        s += " (line " + std::to_string(e.line) + ")";
    return s;
}

std::optional<value> value_from_json(const json::value& j, const std::string& path,
                                     payload_error* err) {
    try {
        return from_json(j, path);
    } catch (const json_field_error& e) {
        if (err)
            *err = payload_error{0, e.path(), entry_message(e)};
        return std::nullopt;
    }
}

payload_entry build_payload_event(const json::value& entry, std::size_t index,
                                  const payload_input_options& opts) {
    payload_entry pe;
    pe.index = index;
    try {
        pe.event = build_event(entry, opts);
    } catch (const json_field_error& e) {
        pe.error = payload_error{index, e.path(), entry_message(e)};
    }
    return pe;
}

std::vector<payload_entry> build_payload_events(std::string_view text,
                                                const payload_input_options& opts,
                                                boost::system::error_code& ec) {
    ec = {};
    std::vector<payload_entry> out;
    std::size_t start = 0;
    while (start < text.size() && (text[start] == ' ' || text[start] == '\t' ||
                                   text[start] == '\r' || text[start] == '\n'))
        ++start;
    if (start < text.size() && text[start] == '[') {
        json::value all = json::parse(text, ec);
        if (ec)
            return out;
        const auto& arr = all.get_array();
        for (std::size_t i = 0; i < arr.size(); ++i)
            out.push_back(build_payload_event(arr[i], i, opts));
        return out;
    }

    // JSON lines: one entry per non-blank line.
    std::size_t index = 0;
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos)
            nl = text.size();
        const std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        if (is_blank(line))
            continue;
        boost::system::error_code line_ec;
        json::value v = json::parse(line, line_ec);
        payload_entry pe;
        if (line_ec) {
            pe.index = index;
            pe.error = payload_error{index, "", "not valid JSON: " + line_ec.message()};
        } else {
            pe = build_payload_event(v, index, opts);
        }
        if (pe.error)
            pe.error->line = line_no;
        out.push_back(std::move(pe));
        ++index;
    }
    return out;
}

std::vector<log_event> group_payload_events(const std::vector<payload_entry>& events,
                                            const batch_config& cfg,
                                            std::vector<std::size_t>* too_large) {
    detail::batcher b(cfg);
    std::vector<detail::closed_batch> closed;
    // No real clock: ages never close a batch here (no tick), and each event gets the next
    // nanosecond so that the final flush, oldest first, keeps the order of first appearance.
    auto now = detail::clock::time_point{};
    for (const auto& pe : events) {
        if (!pe.event)
            continue;
        now += std::chrono::nanoseconds(1);
        if (b.add(*pe.event, now, closed) == detail::add_result::too_large && too_large)
            too_large->push_back(pe.index);
    }
    b.flush(closed);
    std::vector<log_event> out;
    out.reserve(closed.size());
    for (auto& c : closed)
        out.push_back(detail::make_log_event(c));
    return out;
}

std::string write_payload_json(const std::vector<log_event>& batches) {
    std::string out = "[";
    bool first = true;
    for (const auto& le : batches) {
        out += first ? "\n" : ",\n";
        first = false;
        out += "{\"url\":";
        detail::append_json_string(out, le.url);
        out += ",\"http_verb\":";
        detail::append_json_string(out, le.http_verb);
        out += ",\"headers\":{";
        for (std::size_t i = 0; i < le.headers.size(); ++i) {
            if (i)
                out += ',';
            detail::append_json_string(out, le.headers[i].first);
            out += ':';
            detail::append_json_string(out, le.headers[i].second);
        }
        out += "},\"params\":";
        out += le.body;
        out += '}';
    }
    out += first ? "]\n" : "\n]\n";
    return out;
}

}  // namespace evdispatch::test
