// Entries in the shape of the vectors' `inputs` -> events -> the batches the processor sends.

#include <evdispatch/detail/payload_input.hpp>

#include "batcher.hpp"
#include "json_writer.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>

#include <cmath>
#include <limits>

namespace evdispatch::detail {

namespace json = boost::json;

namespace {

// Reads the fields of one entry; every failure names the entry and the field.
class entry_reader {
public:
    entry_reader(std::size_t index) : index_(index) {}

    [[noreturn]] void fail(const std::string& path, const std::string& what) const {
        throw payload_input_error(index_, "input[" + std::to_string(index_) + "]" +
                                              (path.empty() ? "" : "." + path) + ": " + what);
    }

    const json::object& object_at(const json::value& v, const std::string& path) const {
        if (!v.is_object())
            fail(path, "must be an object");
        return v.get_object();
    }

    static const json::value* get(const json::object& o, std::string_view key) {
        const auto it = o.find(key);
        if (it == o.end() || it->value().is_null())
            return nullptr;
        return &it->value();
    }

    static std::string join(const std::string& base, std::string_view key) {
        return base.empty() ? std::string(key) : base + "." + std::string(key);
    }

    std::string required_string(const json::object& o, std::string_view key,
                                const std::string& base = {}) const {
        const json::value* v = get(o, key);
        if (!v)
            fail(join(base, key), "missing");
        if (!v->is_string())
            fail(join(base, key), "must be a string");
        return std::string(v->get_string());
    }

    std::optional<std::string> optional_string(const json::object& o, std::string_view key,
                                               const std::string& base = {}) const {
        const json::value* v = get(o, key);
        if (!v)
            return std::nullopt;
        if (!v->is_string())
            fail(join(base, key), "must be a string or null");
        return std::string(v->get_string());
    }

    std::optional<bool> optional_bool(const json::object& o, std::string_view key,
                                      const std::string& base = {}) const {
        const json::value* v = get(o, key);
        if (!v)
            return std::nullopt;
        if (!v->is_bool())
            fail(join(base, key), "must be true, false or null");
        return v->get_bool();
    }

    const json::object* optional_object(const json::object& o, std::string_view key,
                                        const std::string& base = {}) const {
        const json::value* v = get(o, key);
        if (!v)
            return nullptr;
        if (!v->is_object())
            fail(join(base, key), "must be an object or null");
        return &v->get_object();
    }

    // An id the wire rules normalise: a non-string is treated as absent ("" -> null/fallback).
    static std::string loose_id(const json::object& o, std::string_view key) {
        const json::value* v = get(o, key);
        return v && v->is_string() ? std::string(v->get_string()) : std::string();
    }

    std::size_t index() const noexcept { return index_; }

private:
    std::size_t index_;
};

value from_json(const json::value& j, const entry_reader& r, const std::string& path) {
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
                a.push_back(from_json(ja[i], r, path + "[" + std::to_string(i) + "]"));
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
                r.fail(path + ".$float", "must be \"nan\", \"inf\" or \"-inf\"");
            }
            value::object o;
            o.reserve(jo.size());
            for (const auto& m : jo)
                o.emplace_back(std::string(m.key()),
                               from_json(m.value(), r, path + "." + std::string(m.key())));
            return value(std::move(o));
        }
    }
    return value();
}

user_attributes read_attributes(const json::object& e, const entry_reader& r) {
    user_attributes attrs;
    if (const json::object* a = r.optional_object(e, "attributes")) {
        attrs.reserve(a->size());
        for (const auto& m : *a)
            attrs.emplace_back(std::string(m.key()),
                               from_json(m.value(), r, "attributes." + std::string(m.key())));
    }
    return attrs;
}

std::optional<event_tags> read_tags(const json::object& e, const entry_reader& r) {
    const json::object* t = r.optional_object(e, "event_tags");
    if (!t)
        return std::nullopt;
    event_tags tags;
    tags.reserve(t->size());
    for (const auto& m : *t)
        tags.emplace_back(std::string(m.key()),
                          from_json(m.value(), r, "event_tags." + std::string(m.key())));
    return tags;
}

// The builder of an entry without a datafile: its context, bot filtering, attribute ids.
event_builder builder_from_entry(const json::object& e, const entry_reader& r,
                                 const payload_input_options& opts) {
    const json::value* cv = r.get(e, "context");
    if (!cv)
        r.fail("context", "missing (or give --datafile)");
    const auto& c = r.object_at(*cv, "context");
    auto ctx = std::make_shared<event_context>();
    ctx->account_id = r.required_string(c, "account_id", "context");
    ctx->project_id = r.required_string(c, "project_id", "context");
    ctx->revision = r.required_string(c, "revision", "context");
    ctx->anonymize_ip = r.optional_bool(c, "anonymize_ip", "context").value_or(false);
    const auto bot = r.optional_bool(c, "bot_filtering", "context");
    const auto region = r.optional_string(c, "region", "context").value_or("");
    const auto endpoint = r.optional_string(c, "endpoint", "context");
    ctx->endpoint = !opts.endpoint.empty() ? opts.endpoint
                    : endpoint             ? *endpoint
                                           : std::string(endpoint_for_region(region));
    // The client is evdispatch's own: an entry's client_name/client_version are not used.
    ctx->client_name = opts.client_name;
    ctx->client_version = opts.client_version;

    auto ids = std::make_shared<attribute_id_map>();
    if (const json::object* a = r.optional_object(e, "attribute_ids_in_datafile")) {
        for (const auto& m : *a) {
            if (m.value().is_null())
                continue;  // unknown to the datafile
            if (!m.value().is_string())
                r.fail("attribute_ids_in_datafile." + std::string(m.key()),
                       "must be a string (the attribute id) or null (unknown key)");
            ids->emplace(std::string(m.key()), std::string(m.value().get_string()));
        }
    }
    return event_builder(std::move(ctx), bot, std::move(ids));
}

void apply_mocked_clock(const json::object& e, const entry_reader& r, event_builder& b) {
    const json::object* mc = r.optional_object(e, "mocked_clock");
    if (!mc)
        return;
    if (const json::value* ts = r.get(*mc, "timestamp_ms")) {
        std::int64_t ms = 0;
        if (ts->is_int64()) {
            ms = ts->get_int64();
        } else if (ts->is_uint64() &&
                   ts->get_uint64() <=
                       static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            ms = static_cast<std::int64_t>(ts->get_uint64());
        } else {
            r.fail("mocked_clock.timestamp_ms", "must be an integer (Unix epoch milliseconds)");
        }
        b.set_clock([ms] { return ms; });
    }
    if (auto uuid = r.optional_string(*mc, "uuid", "mocked_clock"))
        b.set_uuid_source([u = std::move(*uuid)] { return u; });
}

// Checks that an id an entry gives agrees with the datafile.
void check_same(const entry_reader& r, const json::object& o, std::string_view key,
                const std::string& base, const std::string& expected, std::string_view what) {
    const json::value* v = r.get(o, key);
    if (!v)
        return;
    if (!v->is_string() || v->get_string() != expected)
        r.fail(base + "." + std::string(key),
               "does not match the datafile (" + std::string(what) + " '" + expected + "')");
}

decision decision_from_datafile(const json::object& e, const entry_reader& r,
                                const project_config& cfg) {
    const std::string flag_key = r.optional_string(e, "flag_key").value_or("");
    const std::string rule_key = r.optional_string(e, "rule_key").value_or("");
    const std::string rule_type = r.optional_string(e, "rule_type").value_or("");
    const bool enabled = r.optional_bool(e, "enabled").value_or(false);
    const json::object* x = r.optional_object(e, "experiment");
    const json::object* v = r.optional_object(e, "variation");
    decision d;
    if (x) {
        const experiment* ex = nullptr;
        if (auto key = r.optional_string(*x, "key", "experiment")) {
            ex = cfg.experiment_by_key(*key);
            if (!ex)
                r.fail("experiment.key", "'" + *key + "' is not in the datafile");
            check_same(r, *x, "id", "experiment", ex->id, "id of experiment " + ex->key);
        } else if (auto id = r.optional_string(*x, "id", "experiment")) {
            ex = cfg.experiment_by_id(*id);
            if (!ex)
                r.fail("experiment.id", "'" + *id + "' is not in the datafile");
        } else {
            r.fail("experiment", "give its key or its id");
        }
        check_same(r, *x, "layer_id", "experiment", ex->layer_id, "layerId of " + ex->key);
        const variation* var = nullptr;
        if (v) {
            if (auto key = r.optional_string(*v, "key", "variation")) {
                var = ex->variation_by_key(*key);
                if (!var)
                    r.fail("variation.key",
                           "'" + *key + "' is not a variation of experiment '" + ex->key + "'");
                check_same(r, *v, "id", "variation", var->id, "id of variation " + var->key);
            } else if (auto id = r.optional_string(*v, "id", "variation")) {
                var = ex->variation_by_id(*id);
                if (!var)
                    r.fail("variation.id",
                           "'" + *id + "' is not a variation of experiment '" + ex->key + "'");
            }
        }
        d = cfg.make_decision(*ex, var, flag_key, rule_key, rule_type, enabled);
    } else {
        if (flag_key.empty() && rule_key.empty())
            r.fail("experiment", "missing (give experiment.key, or flag_key and rule_key)");
        std::string variation_key;
        if (v)
            variation_key = r.optional_string(*v, "key", "variation").value_or("");
        try {
            d = cfg.make_decision(flag_key, rule_key, variation_key, enabled);
        } catch (const boost::system::system_error& ex) {
            // what() is "<message>: <category message>"; keep the message.
            std::string what = ex.what();
            const std::string suffix = ": " + ex.code().message();
            if (what.size() > suffix.size() &&
                what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0)
                what.resize(what.size() - suffix.size());
            const char* field = !flag_key.empty() && !cfg.flag_by_key(flag_key) ? "flag_key"
                                : what.starts_with("variation")                 ? "variation.key"
                                                                                : "rule_key";
            r.fail(field, what);
        }
        if (!rule_type.empty())
            d.rule_type = rule_type;
    }
    if (auto cmab = r.optional_string(e, "cmab_uuid"))
        d.cmab_uuid = std::move(*cmab);
    return d;
}

decision decision_from_entry(const json::object& e, const entry_reader& r) {
    decision d;
    if (const json::object* x = r.optional_object(e, "experiment")) {
        d.experiment_id = r.optional_string(*x, "id", "experiment").value_or("");
        d.layer_id = entry_reader::loose_id(*x, "layer_id");
    }
    if (const json::object* v = r.optional_object(e, "variation")) {
        d.variation_id = entry_reader::loose_id(*v, "id");  // a non-string id is sent as null
        d.variation_key = r.optional_string(*v, "key", "variation").value_or("");
    }
    d.flag_key = r.optional_string(e, "flag_key").value_or("");
    d.rule_key = r.optional_string(e, "rule_key").value_or("");
    d.rule_type = r.optional_string(e, "rule_type").value_or("");
    d.enabled = r.optional_bool(e, "enabled").value_or(false);
    if (auto cmab = r.optional_string(e, "cmab_uuid"))
        d.cmab_uuid = std::move(*cmab);
    return d;
}

bool is_blank(std::string_view s) {
    for (char c : s)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            return false;
    return true;
}

}  // namespace

value value_from_json(const json::value& j, std::size_t index, const std::string& path) {
    return from_json(j, entry_reader(index), path);
}

event_ptr build_payload_event(const json::value& entry, std::size_t index,
                              const payload_input_options& opts) {
    const entry_reader r(index);
    const auto& e = r.object_at(entry, "");
    const std::string kind = r.required_string(e, "kind");
    if (kind != "impression" && kind != "conversion")
        r.fail("kind", "must be \"impression\" or \"conversion\", not \"" + kind + "\"");
    const std::string user_id = r.required_string(e, "user_id");
    const user_attributes attrs = read_attributes(e, r);

    event_builder b = opts.datafile ? event_builder(opts.datafile) : builder_from_entry(e, r, opts);
    apply_mocked_clock(e, r, b);

    if (kind == "impression") {
        const decision d = opts.datafile ? decision_from_datafile(e, r, *opts.datafile)
                                         : decision_from_entry(e, r);
        return b.make_impression(user_id, attrs, d);
    }

    const json::value* ev = r.get(e, "event");
    if (!ev)
        r.fail("event", "missing");
    const auto& eo = r.object_at(*ev, "event");
    conversion c;
    c.event_key = r.required_string(eo, "key", "event");
    if (opts.datafile) {
        const std::string* id = opts.datafile->event_id(c.event_key);
        if (!id)
            r.fail("event.key", "'" + c.event_key + "' is not in the datafile");
        check_same(r, eo, "id", "event", *id, "id of event " + c.event_key);
        c.event_id = *id;
    } else {
        c.event_id = r.required_string(eo, "id", "event");
    }
    c.tags = read_tags(e, r);
    return b.make_conversion(user_id, attrs, c);
}

std::vector<payload_entry> build_payload_events(std::string_view text,
                                                const payload_input_options& opts) {
    std::vector<payload_entry> out;
    auto one = [&](const json::value& v, std::size_t index, std::string_view where) {
        payload_entry pe;
        pe.index = index;
        try {
            pe.event = build_payload_event(v, index, opts);
        } catch (const payload_input_error& e) {
            pe.error = std::string(e.what()) + std::string(where);
        }
        out.push_back(std::move(pe));
    };

    std::size_t start = 0;
    while (start < text.size() && (text[start] == ' ' || text[start] == '\t' ||
                                   text[start] == '\r' || text[start] == '\n'))
        ++start;
    if (start < text.size() && text[start] == '[') {
        boost::system::error_code ec;
        json::value all = json::parse(text, ec);
        if (ec)
            throw payload_input_error(0, "input: not a valid JSON array: " + ec.message());
        const auto& arr = all.get_array();
        for (std::size_t i = 0; i < arr.size(); ++i)
            one(arr[i], i, "");
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
        const std::string where = " (line " + std::to_string(line_no) + ")";
        boost::system::error_code ec;
        json::value v = json::parse(line, ec);
        if (ec) {
            payload_entry pe;
            pe.index = index;
            pe.error =
                "input[" + std::to_string(index) + "]: not valid JSON: " + ec.message() + where;
            out.push_back(std::move(pe));
        } else {
            one(v, index, where);
        }
        ++index;
    }
    return out;
}

std::vector<log_event> group_payload_events(const std::vector<payload_entry>& events,
                                            const batch_config& cfg,
                                            std::vector<std::size_t>* too_large) {
    batcher b(cfg);
    std::vector<closed_batch> closed;
    // No real clock: ages never close a batch here (no tick), and each event gets the next
    // nanosecond so that the final flush, oldest first, keeps the order of first appearance.
    auto now = clock::time_point{};
    for (const auto& pe : events) {
        if (!pe.event)
            continue;
        now += std::chrono::nanoseconds(1);
        if (b.add(*pe.event, now, closed) == add_result::too_large && too_large)
            too_large->push_back(pe.index);
    }
    b.flush(closed);
    std::vector<log_event> out;
    out.reserve(closed.size());
    for (auto& c : closed)
        out.push_back(make_log_event(c));
    return out;
}

std::string write_payload_json(const std::vector<log_event>& batches) {
    std::string out = "[";
    bool first = true;
    for (const auto& le : batches) {
        out += first ? "\n" : ",\n";
        first = false;
        out += "{\"url\":";
        append_json_string(out, le.url);
        out += ",\"http_verb\":";
        append_json_string(out, le.http_verb);
        out += ",\"headers\":{";
        for (std::size_t i = 0; i < le.headers.size(); ++i) {
            if (i)
                out += ',';
            append_json_string(out, le.headers[i].first);
            out += ':';
            append_json_string(out, le.headers[i].second);
        }
        out += "},\"params\":";
        out += le.body;
        out += '}';
    }
    out += first ? "]\n" : "\n]\n";
    return out;
}

}  // namespace evdispatch::detail
