#include <evdispatch/event_builder.hpp>

#include "json_writer.hpp"

#include <evdispatch/error.hpp>
#include <evdispatch/project_config.hpp>

#include <boost/system/system_error.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string_view>
#include <unordered_set>

namespace evdispatch {

namespace detail {

// 1 for the bytes a JSON string cannot hold as they are (or that need UTF-8 validation).
constexpr std::array<unsigned char, 256> make_needs_care() {
    std::array<unsigned char, 256> t{};
    for (std::size_t c = 0; c < 256; ++c)
        t[c] = (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') ? 1 : 0;
    return t;
}
inline constexpr auto needs_care = make_needs_care();

// Whether `s` can be written between quotes as is: printable ASCII without '"' or '\\'.
// Eight bytes at a time (SWAR): a byte is flagged when its high bit is set, when it is below
// 0x20, or when it equals '"' or '\\' (the "has zero byte" trick applied to w ^ pattern).
inline bool is_plain_ascii(std::string_view s) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    auto flagged = [](std::uint64_t w) {
        const std::uint64_t q = w ^ (ones * '"');
        const std::uint64_t b = w ^ (ones * '\\');
        return (w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
    };
    const char* p = s.data();
    const std::size_t n = s.size();
    if (n < 8) {
        unsigned bad = 0;
        for (std::size_t i = 0; i < n; ++i)
            bad |= needs_care[static_cast<unsigned char>(p[i])];
        return bad == 0;
    }
    std::uint64_t acc = 0;
    std::uint64_t w;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::memcpy(&w, p + i, 8);
        acc |= flagged(w);
    }
    if (i < n) {  // the last 8 bytes, overlapping bytes already checked (no partial load)
        std::memcpy(&w, p + n - 8, 8);
        acc |= flagged(w);
    }
    return acc == 0;
}

// Writes JSON into a std::string through a raw cursor: one capacity check per piece and
// literals copied with compile-time sizes, instead of std::string's bookkeeping on every
// append. The string is sized to its capacity while writing; finish() trims it.
class json_sink {
public:
    json_sink(std::string& s, std::size_t expected) : s_(s) {
        const std::size_t used = s_.size();
        s_.resize(used + expected);
        p_ = s_.data() + used;
        end_ = s_.data() + s_.size();
    }
    json_sink(const json_sink&) = delete;
    json_sink& operator=(const json_sink&) = delete;

    /// A literal (JSON text) without its terminating NUL.
    template <std::size_t N>
    void lit(const char (&x)[N]) {
        need(N - 1);
        std::memcpy(p_, x, N - 1);
        p_ += N - 1;
    }
    void ch(char c) {
        need(1);
        *p_++ = c;
    }
    /// A JSON string: plain ASCII copied; anything else escaped, invalid UTF-8 replaced by
    /// U+FFFD (detail::append_json_string).
    void str(std::string_view v) {
        if (!is_plain_ascii(v)) [[unlikely]] {
            str_escaped(v);
            return;
        }
        need(v.size() + 2);
        *p_++ = '"';
        if (!v.empty())
            std::memcpy(p_, v.data(), v.size());
        p_ += v.size();
        *p_++ = '"';
    }
    void boolean(bool b) {
        if (b)
            lit("true");
        else
            lit("false");
    }
    void i64(std::int64_t v) {
        need(24);
        p_ = std::to_chars(p_, p_ + 24, v).ptr;
    }
    /// A double as detail::append_json_double writes it: non-finite -> null; the shortest
    /// form that reads back exactly, with `.0` added when it has no fraction or exponent.
    void dbl(double v) {
        if (!std::isfinite(v)) {
            lit("null");
            return;
        }
        need(40);
        char* const start = p_;
        p_ = std::to_chars(p_, p_ + 38, v).ptr;
        if (std::string_view(start, static_cast<std::size_t>(p_ - start)).find_first_of(".eE") ==
            std::string_view::npos) {
            *p_++ = '.';
            *p_++ = '0';
        }
    }
    /// Text copied as is (the caller vouches that it is valid JSON).
    void raw(std::string_view v) {
        need(v.size());
        if (!v.empty())
            std::memcpy(p_, v.data(), v.size());
        p_ += v.size();
    }
    /// A random v4 uuid between quotes.
    void random_uuid_string();

    /// Trims the string to what was written. Call once, at the end.
    void finish() { s_.resize(static_cast<std::size_t>(p_ - s_.data())); }

private:
    [[gnu::noinline]] void str_escaped(std::string_view v) {
        through_string([&](std::string& s) { append_json_string(s, v); });
    }
    void need(std::size_t n) {
        if (static_cast<std::size_t>(end_ - p_) < n)
            grow(n);
    }
    void grow(std::size_t n) {
        const auto used = static_cast<std::size_t>(p_ - s_.data());
        s_.resize(std::max(2 * s_.size(), used + n + 256));
        p_ = s_.data() + used;
        end_ = s_.data() + s_.size();
    }
    // Runs a std::string writer at the cursor (rare paths: escapes, doubles).
    template <class F>
    void through_string(F&& f) {
        s_.resize(static_cast<std::size_t>(p_ - s_.data()));
        f(s_);
        const std::size_t used = s_.size();
        s_.resize(std::max(s_.capacity(), used + 256));
        p_ = s_.data() + used;
        end_ = s_.data() + s_.size();
    }

    std::string& s_;
    char* p_;
    char* end_;
};

}  // namespace detail

using detail::json_sink;

namespace {

// xoshiro256** seeded per thread from std::random_device: no shared state, no locks.
struct uuid_rng {
    std::uint64_t s[4];
    uuid_rng() {
        std::random_device rd;
        for (auto& v : s)
            v = (std::uint64_t{rd()} << 32) ^ rd();
        if ((s[0] | s[1] | s[2] | s[3]) == 0)
            s[0] = 0x9E3779B97F4A7C15ull;
    }
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t next() {
        const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
        const std::uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
    }
};

thread_local uuid_rng tl_rng;

constexpr std::array<char, 512> make_hex_pairs() {
    constexpr char hex[] = "0123456789abcdef";
    std::array<char, 512> t{};
    for (std::size_t i = 0; i < 256; ++i) {
        t[2 * i] = hex[i >> 4];
        t[2 * i + 1] = hex[i & 0xF];
    }
    return t;
}
constexpr auto hex_pairs = make_hex_pairs();

void put_hex64(char* p, std::uint64_t w) {
    for (int i = 0; i < 8; ++i)
        std::memcpy(p + 2 * i, &hex_pairs[2 * ((w >> (56 - 8 * i)) & 0xFF)], 2);
}

// 36 chars: 8-4-4-4-12 lowercase hex, version 4, variant 10.
void write_random_uuid(char* buf) {
    std::uint64_t hi = tl_rng.next();
    std::uint64_t lo = tl_rng.next();
    hi = (hi & 0xFFFFFFFFFFFF0FFFull) | 0x0000000000004000ull;  // version 4
    lo = (lo & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // variant 10
    char h[32];
    put_hex64(h, hi);
    put_hex64(h + 16, lo);
    std::memcpy(buf, h, 8);
    buf[8] = '-';
    std::memcpy(buf + 9, h + 8, 4);
    buf[13] = '-';
    std::memcpy(buf + 14, h + 12, 4);
    buf[18] = '-';
    std::memcpy(buf + 19, h + 16, 4);
    buf[23] = '-';
    std::memcpy(buf + 24, h + 20, 12);
}

}  // namespace

void detail::json_sink::random_uuid_string() {
    need(38);
    *p_++ = '"';
    write_random_uuid(p_);
    p_ += 36;
    *p_++ = '"';
}

void append_random_uuid(std::string& out) {
    char buf[36];
    write_random_uuid(buf);
    out.append(buf, 36);
}

std::string random_uuid() {
    std::string s;
    s.reserve(36);
    append_random_uuid(s);
    return s;
}

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

// The decision of an impression, ids normalised: campaign_id is the layer id if non-empty,
// else the experiment id (possibly empty); a variation id that is not all digits is null.
void write_decision(json_sink& w, std::string_view campaign_id, std::string_view experiment_id,
                    std::string_view variation_id, std::string_view flag_key,
                    std::string_view rule_key, std::string_view rule_type,
                    std::string_view variation_key, bool enabled,
                    const std::optional<std::string>& cmab_uuid) {
    w.lit("\"decisions\":[{\"campaign_id\":");
    w.str(campaign_id);
    w.lit(",\"experiment_id\":");
    w.str(experiment_id);
    w.lit(",\"variation_id\":");
    if (is_valid_variation_id(variation_id))
        w.str(variation_id);
    else
        w.lit("null");
    w.lit(",\"metadata\":{\"flag_key\":");
    w.str(flag_key);
    w.lit(",\"rule_key\":");
    w.str(rule_key);
    w.lit(",\"rule_type\":");
    w.str(rule_type);
    w.lit(",\"variation_key\":");
    w.str(variation_key);
    w.lit(",\"enabled\":");
    w.boolean(enabled);
    if (cmab_uuid) {
        w.lit(",\"cmab_uuid\":");
        w.str(*cmab_uuid);
    }
    w.lit("}}],");
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

// ---------------------------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------------------------

event_builder::event_builder(context_ptr ctx, std::optional<bool> bot_filtering,
                             std::shared_ptr<const attribute_id_map> attribute_ids)
    : ctx_(std::move(ctx))
    , bot_filtering_(bot_filtering)
    , attribute_ids_(std::move(attribute_ids)) {}

event_builder::event_builder(std::shared_ptr<const project_config> config)
    : config_(std::move(config)) {
    if (!config_)
        throw std::invalid_argument("event_builder: the project_config is null");
    ctx_ = config_->context();
    bot_filtering_ = config_->bot_filtering();
    attribute_ids_ = config_->attribute_ids();
}

// Bytes the attributes will take (a guess that avoids growing the buffer in the common case).
std::size_t event_builder::estimate_attributes(const user_attributes& attrs) const noexcept {
    std::size_t n = bot_filtering_ ? 96 : 0;
    for (const auto& [key, v] : attrs) {
        const std::string* s = v.if_string();
        n += 64 + 2 * key.size() + (s ? s->size() : 24);
    }
    return n;
}

void event_builder::write_bot_filtering(json_sink& w, bool first) const {
    if (!bot_filtering_)
        return;
    if (!first)
        w.ch(',');
    if (*bot_filtering_)
        w.lit(
            "{\"entity_id\":\"$opt_bot_filtering\",\"key\":\"$opt_bot_filtering\","
            "\"type\":\"custom\",\"value\":true}");
    else
        w.lit(
            "{\"entity_id\":\"$opt_bot_filtering\",\"key\":\"$opt_bot_filtering\","
            "\"type\":\"custom\",\"value\":false}");
}

void event_builder::write_visitor_head(json_sink& w, std::string_view user_id,
                                       const std::vector<attribute>& attrs) const {
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
    write_bot_filtering(w, first);
    w.lit("],\"snapshots\":[{");
}

void event_builder::write_visitor_head(json_sink& w, std::string_view user_id,
                                       const user_attributes& attrs) const {
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
        if (bot_filtering_ && key == bot_filtering_key)
            continue;
        std::string_view entity_id;
        const std::string* id = nullptr;
        if (attribute_ids_) {
            const auto it = attribute_ids_->find(key);
            if (it != attribute_ids_->end())
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
    write_bot_filtering(w, first);
    w.lit("],\"snapshots\":[{");
}

void event_builder::write_event_head(json_sink& w, std::string_view entity_id,
                                     std::string_view key) const {
    w.lit("\"events\":[{\"entity_id\":");
    w.str(entity_id);
    w.lit(",\"key\":");
    w.str(key);
    w.lit(",\"timestamp\":");
    w.i64(clock_ ? clock_() : system_epoch_ms());
    w.lit(",\"uuid\":");
    if (uuid_)
        w.str(uuid_());
    else
        w.random_uuid_string();
}

event_ptr event_builder::make_impression(std::string_view user_id,
                                         const user_attributes& attributes,
                                         const decision& d) const {
    auto ev = std::make_shared<user_event>();
    ev->context = ctx_;
    {
        json_sink w(ev->visitor_json,
                    320 + estimate_attributes(attributes) + user_id.size() + d.layer_id.size() +
                        d.experiment_id.size() * 2 + d.variation_id.size() +
                        d.variation_key.size() + d.flag_key.size() + d.rule_key.size() +
                        d.rule_type.size() + (d.cmab_uuid ? 16 + d.cmab_uuid->size() : 0));
        write_visitor_head(w, user_id, attributes);
        const std::string_view campaign_id = !d.layer_id.empty() ? d.layer_id : d.experiment_id;
        write_decision(w, campaign_id, d.experiment_id, d.variation_id, d.flag_key, d.rule_key,
                       d.rule_type, d.variation_key, d.enabled, d.cmab_uuid);
        write_event_head(w, campaign_id, "campaign_activated");
        w.lit("}]}]}");
        w.finish();
    }
    ev->created = std::chrono::steady_clock::now();
    return ev;
}

event_ptr event_builder::conversion_from_tags(std::string_view user_id,
                                              const user_attributes& attributes,
                                              std::string_view event_key, std::string_view event_id,
                                              const event_tags* tags) const {
    auto ev = std::make_shared<user_event>();
    ev->context = ctx_;
    {
        json_sink w(ev->visitor_json, 224 + estimate_attributes(attributes) + user_id.size() +
                                          event_key.size() + event_id.size() +
                                          (tags ? 64 + 32 * tags->size() : 0));
        write_visitor_head(w, user_id, attributes);
        write_event_head(w, event_id, event_key);
        if (tags) {
            if (const auto revenue = lift_revenue(*tags)) {
                w.lit(",\"revenue\":");
                w.i64(*revenue);
            }
            if (const auto v = lift_value(*tags)) {
                w.lit(",\"value\":");
                w.dbl(*v);
            }
            w.lit(",\"tags\":");
            write_object(w, *tags, 0);
        }
        w.lit("}]}]}");
        w.finish();
    }
    ev->created = std::chrono::steady_clock::now();
    return ev;
}

event_ptr event_builder::make_conversion(std::string_view user_id,
                                         const user_attributes& attributes,
                                         const conversion& c) const {
    return conversion_from_tags(user_id, attributes, c.event_key, c.event_id,
                                c.tags ? &*c.tags : nullptr);
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
    return conversion_from_tags(user_id, attributes, event_key, *id, tags);
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
                              ", revision " + config_->revision() + ")"
                        : std::string("' cannot be resolved: this builder has no datafile");
        throw boost::system::system_error(ec, what);
    }
    return ev;
}

event_ptr event_builder::make_impression(const impression_input& in) const {
    auto ev = std::make_shared<user_event>();
    ev->context = ctx_;
    {
        json_sink w(ev->visitor_json, 384 + 96 * in.attributes.size() + in.user_id.size());
        write_visitor_head(w, in.user_id, in.attributes);
        write_decision(w, in.campaign_id, in.experiment_id, in.variation_id, in.flag_key,
                       in.rule_key, in.rule_type, in.variation_key, in.enabled, in.cmab_uuid);
        write_event_head(w, in.campaign_id, "campaign_activated");
        w.lit("}]}]}");
        w.finish();
    }
    ev->created = std::chrono::steady_clock::now();
    return ev;
}

event_ptr event_builder::make_conversion(const conversion_input& in) const {
    auto ev = std::make_shared<user_event>();
    ev->context = ctx_;
    {
        json_sink w(ev->visitor_json,
                    320 + 96 * in.attributes.size() + in.user_id.size() + in.tags_json.size());
        write_visitor_head(w, in.user_id, in.attributes);
        write_event_head(w, in.event_id, in.event_key);
        if (in.revenue) {
            w.lit(",\"revenue\":");
            w.i64(*in.revenue);
        }
        if (in.value && std::isfinite(*in.value)) {
            w.lit(",\"value\":");
            w.dbl(*in.value);
        }
        if (!in.tags_json.empty()) {
            w.lit(",\"tags\":");
            w.raw(in.tags_json);
        }
        w.lit("}]}]}");
        w.finish();
    }
    ev->created = std::chrono::steady_clock::now();
    return ev;
}

}  // namespace evdispatch
