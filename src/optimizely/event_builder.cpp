#include <evdispatch/optimizely/event_builder.hpp>

#include "core/json_writer.hpp"
#include "optimizely/uuid.hpp"

#include <evdispatch/error.hpp>
#include <evdispatch/optimizely/project_config.hpp>

#include <boost/system/system_error.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <string_view>
#include <unordered_set>

namespace evdispatch {

using detail::json_sink;

// ---------------------------------------------------------------------------------------------
// Rules of the wire format (docs/optimizely.md), each a small pure function.
// ---------------------------------------------------------------------------------------------

namespace {

constexpr std::int64_t max_safe_integer = std::int64_t{1} << 53;  // 2^53
constexpr std::string_view reserved_prefix = "$opt_";
constexpr std::string_view bot_filtering_key = "$opt_bot_filtering";
// Tag containers nested deeper than this are written as null: bounds the recursion on
// caller-built values and keeps a body (tags sit 8 levels down) within the nesting limit of
// common JSON parsers (Boost.JSON's default: 32).
constexpr int max_tag_depth = 20;

bool is_ascii_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// A numeric string as the value tag accepts it: the whole string (ASCII whitespace around
// it and one leading sign allowed) is a finite decimal number.
std::optional<double> parse_numeric_string(std::string_view s) noexcept {
    while (!s.empty() && is_ascii_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_ascii_space(s.back()))
        s.remove_suffix(1);
    bool negate = false;
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
        negate = s.front() == '-';
        s.remove_prefix(1);
    }
    // from_chars takes no sign of its own here (we consumed it) and no hex prefix.
    if (s.empty() || s.front() == '+' || s.front() == '-')
        return std::nullopt;
    double d = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), d, std::chars_format::general);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || !std::isfinite(d))
        return std::nullopt;
    return negate ? -d : d;
}

// First member named `key` (later duplicates are ignored everywhere).
const value* find_member(const value::object& o, std::string_view key) noexcept {
    for (const auto& m : o)
        if (m.first == key)
            return &m.second;
    return nullptr;
}

// Whether member i repeats the key of an earlier member. Linear for small objects (the
// common case: a handful of attributes or tags); a set for large ones.
template <class Members>
class duplicate_filter {
public:
    explicit duplicate_filter(const Members& m) : m_(m) {
        if (m.size() > 16) {
            seen_.reserve(m.size());
            large_ = true;
        }
    }
    bool repeated(std::size_t i) {
        if (large_)
            return !seen_.insert(std::string_view(m_[i].first)).second;
        for (std::size_t j = 0; j < i; ++j)
            if (m_[j].first == m_[i].first)
                return true;
        return false;
    }

private:
    const Members& m_;
    bool large_ = false;
    std::unordered_set<std::string_view> seen_;
};

void write_object(json_sink& w, const value::object& o, int depth);

void write_value(json_sink& w, const value& v, int depth) {
    switch (v.type()) {
        case value::kind::null:
            w.lit("null");
            return;
        case value::kind::boolean:
            w.boolean(*v.if_bool());
            return;
        case value::kind::integer:
            w.i64(*v.if_int64());
            return;
        case value::kind::floating:
            w.dbl(*v.if_double());
            return;
        case value::kind::string:
            w.str(*v.if_string());
            return;
        case value::kind::array: {
            if (depth >= max_tag_depth) {
                w.lit("null");
                return;
            }
            w.ch('[');
            bool first = true;
            for (const auto& e : *v.if_array()) {
                if (!first)
                    w.ch(',');
                first = false;
                write_value(w, e, depth + 1);
            }
            w.ch(']');
            return;
        }
        case value::kind::object:
            if (depth >= max_tag_depth) {
                w.lit("null");
                return;
            }
            write_object(w, *v.if_object(), depth);
            return;
    }
}

void write_object(json_sink& w, const value::object& o, int depth) {
    duplicate_filter<value::object> dup(o);
    w.ch('{');
    bool first = true;
    for (std::size_t i = 0; i < o.size(); ++i) {
        if (dup.repeated(i))
            continue;
        if (!first)
            w.ch(',');
        first = false;
        w.str(o[i].first);
        w.ch(':');
        write_value(w, o[i].second, depth + 1);
    }
    w.ch('}');
}

void write_attribute_value(json_sink& w, const attribute_value& v) {
    switch (v.index()) {
        case 0:
            w.str(std::get<0>(v));
            break;
        case 1:
            w.boolean(std::get<1>(v));
            break;
        case 2:
            w.i64(std::get<2>(v));
            break;
        default:
            w.dbl(std::get<3>(v));
            break;
    }
}

bool sendable_int(std::int64_t i) noexcept {
    return i >= -max_safe_integer && i <= max_safe_integer;
}
bool sendable_double(double d) noexcept {
    return std::isfinite(d) && std::fabs(d) <= static_cast<double>(max_safe_integer);
}

bool is_sendable(const attribute_value& v) noexcept {
    switch (v.index()) {
        case 2:
            return sendable_int(std::get<2>(v));
        case 3:
            return sendable_double(std::get<3>(v));
        default:
            return true;
    }
}

void write_attribute_prefix(json_sink& w, bool first, std::string_view entity_id,
                            std::string_view key) {
    if (!first)
        w.ch(',');
    w.lit("{\"entity_id\":");
    w.str(entity_id);
    w.lit(",\"key\":");
    w.str(key);
    w.lit(",\"type\":\"custom\",\"value\":");
}

std::int64_t system_epoch_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

bool is_sendable_attribute(const value& v) noexcept {
    switch (v.type()) {
        case value::kind::string:
        case value::kind::boolean:
            return true;
        case value::kind::integer:
            return sendable_int(*v.if_int64());
        case value::kind::floating:
            return sendable_double(*v.if_double());
        default:
            return false;
    }
}

bool is_valid_variation_id(std::string_view id) noexcept {
    if (id.empty())
        return false;
    for (char c : id)
        if (c < '0' || c > '9')
            return false;
    return true;
}

std::optional<std::int64_t> lift_revenue(const event_tags& tags) noexcept {
    const value* v = find_member(tags, "revenue");
    if (v && v->is_int64())
        return *v->if_int64();
    return std::nullopt;
}

std::optional<double> lift_value(const event_tags& tags) noexcept {
    const value* v = find_member(tags, "value");
    if (!v)
        return std::nullopt;
    switch (v->type()) {
        case value::kind::integer:
            return static_cast<double>(*v->if_int64());
        case value::kind::floating:
            if (std::isfinite(*v->if_double()))
                return *v->if_double();
            return std::nullopt;
        case value::kind::string:
            return parse_numeric_string(*v->if_string());
        default:
            return std::nullopt;
    }
}

namespace {

// ---------------------------------------------------------------------------------------------
// The visitor JSON, piece by piece. An event's visitor is
//   {"visitor_id":...,"attributes":[...],"snapshots":[{["decisions":[...],]
//    "events":[{"entity_id":...,"key":...,"timestamp":...,"uuid":...[,revenue,value,tags]}]}]}
// ---------------------------------------------------------------------------------------------

// What an impression writes: its decision (a variation id that is not all digits is written
// as null), then the event "campaign_activated" of its campaign.
struct impression_event {
    std::string_view campaign_id;
    std::string_view experiment_id;
    std::string_view variation_id;
    std::string_view variation_key;
    std::string_view flag_key;
    std::string_view rule_key;
    std::string_view rule_type;
    bool enabled;
    const std::optional<std::string>& cmab_uuid;
};

// What a conversion writes after its event head.
struct conversion_event {
    std::string_view event_id;
    std::string_view event_key;
    std::optional<std::int64_t> revenue;
    std::optional<double> value;  // written only when finite
    const event_tags* tags;       // the caller's tags (null: none) ...
    std::string_view tags_json;   // ... or tags already serialised ("": none)
};

// Bytes the attributes will take (a guess that avoids growing the buffer in the common case).
std::size_t estimate_attributes(const user_attributes& attrs,
                                const std::optional<bool>& bot_filtering) noexcept {
    std::size_t n = bot_filtering ? 96 : 0;
    for (const auto& [key, v] : attrs) {
        const std::string* s = v.if_string();
        n += 64 + 2 * key.size() + (s ? s->size() : 24);
    }
    return n;
}

void write_bot_filtering(json_sink& w, const std::optional<bool>& bot_filtering, bool first) {
    if (!bot_filtering)
        return;
    if (!first)
        w.ch(',');
    if (*bot_filtering)
        w.lit(
            "{\"entity_id\":\"$opt_bot_filtering\",\"key\":\"$opt_bot_filtering\","
            "\"type\":\"custom\",\"value\":true}");
    else
        w.lit(
            "{\"entity_id\":\"$opt_bot_filtering\",\"key\":\"$opt_bot_filtering\","
            "\"type\":\"custom\",\"value\":false}");
}

// Low level: the attributes are already resolved; only unsendable numbers are skipped.
void write_visitor_head(json_sink& w, std::string_view user_id, const std::vector<attribute>& attrs,
                        const std::optional<bool>& bot_filtering, const attribute_id_map*) {
    w.lit("{\"visitor_id\":");
    w.str(user_id);
    w.lit(",\"attributes\":[");
    bool first = true;
    for (const auto& a : attrs) {
        if (!is_sendable(a.value))
            continue;
        write_attribute_prefix(w, first, a.entity_id, a.key);
        first = false;
        write_attribute_value(w, a.value);
        w.ch('}');
    }
    write_bot_filtering(w, bot_filtering, first);
    w.lit("],\"snapshots\":[{");
}

// User level: every attribute rule applied (first occurrence of a key, sendable values, ids
// from the datafile or `$opt_` keys, one bot-filtering attribute).
void write_visitor_head(json_sink& w, std::string_view user_id, const user_attributes& attrs,
                        const std::optional<bool>& bot_filtering,
                        const attribute_id_map* attribute_ids) {
    w.lit("{\"visitor_id\":");
    w.str(user_id);
    w.lit(",\"attributes\":[");
    bool first = true;
    duplicate_filter<user_attributes> dup(attrs);
    for (std::size_t i = 0; i < attrs.size(); ++i) {
        const auto& [key, v] = attrs[i];
        if (dup.repeated(i))
            continue;
        if (!is_sendable_attribute(v))
            continue;
        // The builder sends its own bot-filtering attribute; a caller's copy would repeat it.
        if (bot_filtering && key == bot_filtering_key)
            continue;
        std::string_view entity_id;
        const std::string* id = nullptr;
        if (attribute_ids) {
            const auto it = attribute_ids->find(key);
            if (it != attribute_ids->end())
                id = &it->second;
        }
        if (id) {
            entity_id = *id;
        } else if (key.starts_with(reserved_prefix)) {
            entity_id = key;
        } else {
            continue;  // unknown to the datafile
        }
        write_attribute_prefix(w, first, entity_id, key);
        first = false;
        write_value(w, v, 0);
        w.ch('}');
    }
    write_bot_filtering(w, bot_filtering, first);
    w.lit("],\"snapshots\":[{");
}

void write_event_head(json_sink& w, std::string_view entity_id, std::string_view key,
                      const event_builder::clock_fn& clock, const event_builder::uuid_fn& uuid) {
    w.lit("\"events\":[{\"entity_id\":");
    w.str(entity_id);
    w.lit(",\"key\":");
    w.str(key);
    w.lit(",\"timestamp\":");
    w.i64(clock ? clock() : system_epoch_ms());
    w.lit(",\"uuid\":");
    if (uuid) {
        w.str(uuid());
    } else {
        w.fill(detail::uuid_chars + 2, [](char* p) {
            p[0] = '"';
            detail::write_random_uuid(p + 1);
            p[detail::uuid_chars + 1] = '"';
        });
    }
}

void write_event(json_sink& w, const impression_event& e, const event_builder::clock_fn& clock,
                 const event_builder::uuid_fn& uuid) {
    w.lit("\"decisions\":[{\"campaign_id\":");
    w.str(e.campaign_id);
    w.lit(",\"experiment_id\":");
    w.str(e.experiment_id);
    w.lit(",\"variation_id\":");
    if (is_valid_variation_id(e.variation_id))
        w.str(e.variation_id);
    else
        w.lit("null");
    w.lit(",\"metadata\":{\"flag_key\":");
    w.str(e.flag_key);
    w.lit(",\"rule_key\":");
    w.str(e.rule_key);
    w.lit(",\"rule_type\":");
    w.str(e.rule_type);
    w.lit(",\"variation_key\":");
    w.str(e.variation_key);
    w.lit(",\"enabled\":");
    w.boolean(e.enabled);
    if (e.cmab_uuid) {
        w.lit(",\"cmab_uuid\":");
        w.str(*e.cmab_uuid);
    }
    w.lit("}}],");
    write_event_head(w, e.campaign_id, "campaign_activated", clock, uuid);
}

void write_event(json_sink& w, const conversion_event& e, const event_builder::clock_fn& clock,
                 const event_builder::uuid_fn& uuid) {
    write_event_head(w, e.event_id, e.event_key, clock, uuid);
    if (e.revenue) {
        w.lit(",\"revenue\":");
        w.i64(*e.revenue);
    }
    if (e.value && std::isfinite(*e.value)) {
        w.lit(",\"value\":");
        w.dbl(*e.value);
    }
    if (e.tags) {
        w.lit(",\"tags\":");
        write_object(w, *e.tags, 0);
    } else if (!e.tags_json.empty()) {
        w.lit(",\"tags\":");
        w.raw(e.tags_json);
    }
}

// A user-level conversion: revenue and value lifted from the tags, the tags sent as given.
conversion_event conversion_from_tags(std::string_view event_key, std::string_view event_id,
                                      const event_tags* tags) {
    conversion_event c{.event_id = event_id, .event_key = event_key, .tags = tags};
    if (tags) {
        c.revenue = lift_revenue(*tags);
        c.value = lift_value(*tags);
    }
    return c;
}

std::size_t estimate_conversion(const user_attributes& attrs,
                                const std::optional<bool>& bot_filtering, std::string_view user_id,
                                const conversion_event& c) noexcept {
    return 224 + estimate_attributes(attrs, bot_filtering) + user_id.size() + c.event_key.size() +
           c.event_id.size() + (c.tags ? 64 + 32 * c.tags->size() : 0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------------------------

event_builder::event_builder(context_ptr ctx, std::optional<bool> bot_filtering,
                             std::shared_ptr<const attribute_id_map> attribute_ids)
    : ctx_(std::move(ctx))
    , bot_filtering_(bot_filtering)
    , attribute_ids_(std::move(attribute_ids)) {
    if (!ctx_)
        throw boost::system::system_error(
            error::invalid_config,
            "event_builder: the context is null; give the batch context of the events "
            "(account, project, revision, client, endpoint)");
}

event_builder::event_builder(std::shared_ptr<const project_config> config)
    : config_(std::move(config)) {
    if (!config_)
        throw boost::system::system_error(
            error::invalid_config,
            "event_builder: the project_config is null; give the result of "
            "project_config::parse, or build from a context_ptr instead");
    ctx_ = config_->context();
    bot_filtering_ = config_->bot_filtering();
    attribute_ids_ = config_->attribute_ids();
}

template <class Attributes, class Event>
event_ptr event_builder::build(std::size_t expected_bytes, std::string_view user_id,
                               const Attributes& attributes, const Event& event) const {
    // Written into this thread's scratch buffer (kept across calls: no allocation once it has
    // grown), then copied once into the event's single allocation.
    thread_local std::string scratch;
    scratch.clear();
    {
        json_sink w(scratch, expected_bytes);
        write_visitor_head(w, user_id, attributes, bot_filtering_, attribute_ids_.get());
        write_event(w, event, clock_, uuid_);
        w.lit("}]}]}");
        w.finish();
    }
    return make_event(ctx_, scratch);
}

event_ptr event_builder::make_impression(std::string_view user_id,
                                         const user_attributes& attributes,
                                         const decision& d) const {
    // campaign_id: the layer id if non-empty, else the experiment id (possibly empty).
    const impression_event e{
        .campaign_id = !d.layer_id.empty() ? d.layer_id : d.experiment_id,
        .experiment_id = d.experiment_id,
        .variation_id = d.variation_id,
        .variation_key = d.variation_key,
        .flag_key = d.flag_key,
        .rule_key = d.rule_key,
        .rule_type = d.rule_type,
        .enabled = d.enabled,
        .cmab_uuid = d.cmab_uuid,
    };
    return build(320 + estimate_attributes(attributes, bot_filtering_) + user_id.size() +
                     d.layer_id.size() + d.experiment_id.size() * 2 + d.variation_id.size() +
                     d.variation_key.size() + d.flag_key.size() + d.rule_key.size() +
                     d.rule_type.size() + (d.cmab_uuid ? 16 + d.cmab_uuid->size() : 0),
                 user_id, attributes, e);
}

event_ptr event_builder::make_conversion(std::string_view user_id,
                                         const user_attributes& attributes,
                                         const conversion& c) const {
    const auto e = conversion_from_tags(c.event_key, c.event_id, c.tags ? &*c.tags : nullptr);
    return build(estimate_conversion(attributes, bot_filtering_, user_id, e), user_id, attributes,
                 e);
}

event_ptr event_builder::make_conversion(std::string_view user_id,
                                         const user_attributes& attributes,
                                         std::string_view event_key, const event_tags* tags,
                                         boost::system::error_code& ec) const {
    const std::string* id = config_ ? config_->event_id(event_key) : nullptr;
    if (!id) {
        ec = error::unknown_event_key;
        return nullptr;
    }
    ec = {};
    const auto e = conversion_from_tags(event_key, *id, tags);
    return build(estimate_conversion(attributes, bot_filtering_, user_id, e), user_id, attributes,
                 e);
}

event_ptr event_builder::make_conversion(std::string_view user_id,
                                         const user_attributes& attributes,
                                         std::string_view event_key, const event_tags* tags) const {
    boost::system::error_code ec;
    auto ev = make_conversion(user_id, attributes, event_key, tags, ec);
    if (ec) {
        std::string what = "event key '";
        what += event_key;
        what += config_ ? "' is not in the datafile (project " + config_->project_id() +
                              ", revision " + config_->revision() +
                              "): check the key, or use a datafile revision that defines it"
                        : std::string(
                              "' cannot be resolved: this builder has no datafile; make "
                              "it from a project_config, or give the event id in a "
                              "conversion");
        throw boost::system::system_error(ec, what);
    }
    return ev;
}

event_ptr event_builder::make_impression(const impression_input& in) const {
    const impression_event e{
        .campaign_id = in.campaign_id,
        .experiment_id = in.experiment_id,
        .variation_id = in.variation_id,
        .variation_key = in.variation_key,
        .flag_key = in.flag_key,
        .rule_key = in.rule_key,
        .rule_type = in.rule_type,
        .enabled = in.enabled,
        .cmab_uuid = in.cmab_uuid,
    };
    return build(384 + 96 * in.attributes.size() + in.user_id.size(), in.user_id, in.attributes, e);
}

event_ptr event_builder::make_conversion(const conversion_input& in) const {
    const conversion_event e{
        .event_id = in.event_id,
        .event_key = in.event_key,
        .revenue = in.revenue,
        .value = in.value,
        .tags = nullptr,
        .tags_json = in.tags_json,
    };
    return build(320 + 96 * in.attributes.size() + in.user_id.size() + in.tags_json.size(),
                 in.user_id, in.attributes, e);
}

}  // namespace evdispatch
