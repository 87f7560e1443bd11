#include <evdispatch/event_builder.hpp>

#include "json_writer.hpp"

#include <chrono>
#include <cmath>
#include <random>

namespace evdispatch {

using detail::append_json_bool;
using detail::append_json_double;
using detail::append_json_int;
using detail::append_json_string;

namespace {

// xoshiro256** seeded per thread from std::random_device: no shared state, no locks.
struct uuid_rng {
    std::uint64_t s[4];
    uuid_rng() {
        std::random_device rd;
        for (auto& v : s) v = (std::uint64_t{rd()} << 32) ^ rd();
        if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 0x9E3779B97F4A7C15ull;
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

bool is_digits(const std::string& s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

void append_value(std::string& out, const attribute_value& v) {
    switch (v.index()) {
        case 0: append_json_string(out, std::get<0>(v)); break;
        case 1: append_json_bool(out, std::get<1>(v)); break;
        case 2: append_json_int(out, std::get<2>(v)); break;
        default: append_json_double(out, std::get<3>(v)); break;
    }
}

}  // namespace

void append_random_uuid(std::string& out) {
    static constexpr char hex[] = "0123456789abcdef";
    std::uint64_t hi = tl_rng.next();
    std::uint64_t lo = tl_rng.next();
    hi = (hi & 0xFFFFFFFFFFFF0FFFull) | 0x0000000000004000ull;  // version 4
    lo = (lo & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // variant 10
    char buf[36];
    int p = 0;
    for (int i = 0; i < 32; ++i) {
        if (i == 8 || i == 12 || i == 16 || i == 20) buf[p++] = '-';
        const std::uint64_t word = i < 16 ? hi : lo;
        const int shift = 60 - 4 * (i % 16);
        buf[p++] = hex[(word >> shift) & 0xF];
    }
    out.append(buf, 36);
}

std::string random_uuid() {
    std::string s;
    s.reserve(36);
    append_random_uuid(s);
    return s;
}

event_builder::event_builder(context_ptr ctx, std::optional<bool> bot_filtering)
    : ctx_(std::move(ctx)), bot_filtering_(bot_filtering) {}

void event_builder::write_visitor_head(std::string& out, const std::string& user_id,
                                       const std::vector<attribute>& attrs) const {
    out += "{\"visitor_id\":";
    append_json_string(out, user_id);
    out += ",\"attributes\":[";
    bool first = true;
    for (const auto& a : attrs) {
        if (a.value.index() == 3 && !std::isfinite(std::get<3>(a.value))) continue;
        if (!first) out += ',';
        first = false;
        out += "{\"entity_id\":";
        append_json_string(out, a.entity_id);
        out += ",\"key\":";
        append_json_string(out, a.key);
        out += ",\"type\":\"custom\",\"value\":";
        append_value(out, a.value);
        out += '}';
    }
    if (bot_filtering_) {
        if (!first) out += ',';
        out += "{\"entity_id\":\"$opt_bot_filtering\",\"key\":\"$opt_bot_filtering\","
               "\"type\":\"custom\",\"value\":";
        append_json_bool(out, *bot_filtering_);
        out += '}';
    }
    out += "],\"snapshots\":[{";
}

void event_builder::write_event_tail(std::string& out, const std::string& entity_id,
                                     const std::string& key) const {
    out += "\"events\":[{\"entity_id\":";
    append_json_string(out, entity_id);
    out += ",\"key\":";
    append_json_string(out, key);
    out += ",\"timestamp\":";
    const std::int64_t ts =
        clock_ ? clock_()
               : std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    append_json_int(out, ts);
    out += ",\"uuid\":\"";
    if (uuid_) {
        out += uuid_();
    } else {
        append_random_uuid(out);
    }
    out += '"';
}

event_ptr event_builder::make_impression(const impression_input& in) const {
    auto ev = std::make_shared<user_event>();
    ev->context = ctx_;
    std::string& out = ev->visitor_json;
    out.reserve(384 + 96 * in.attributes.size());
    write_visitor_head(out, in.user_id, in.attributes);
    out += "\"decisions\":[{\"campaign_id\":";
    append_json_string(out, in.campaign_id);
    out += ",\"experiment_id\":";
    append_json_string(out, in.experiment_id);
    out += ",\"variation_id\":";
    if (is_digits(in.variation_id))
        append_json_string(out, in.variation_id);
    else
        out += "null";
    out += ",\"metadata\":{\"flag_key\":";
    append_json_string(out, in.flag_key);
    out += ",\"rule_key\":";
    append_json_string(out, in.rule_key);
    out += ",\"rule_type\":";
    append_json_string(out, in.rule_type);
    out += ",\"variation_key\":";
    append_json_string(out, in.variation_key);
    out += ",\"enabled\":";
    append_json_bool(out, in.enabled);
    if (in.cmab_uuid) {
        out += ",\"cmab_uuid\":";
        append_json_string(out, *in.cmab_uuid);
    }
    out += "}}],";
    write_event_tail(out, in.campaign_id, "campaign_activated");
    out += "}]}]}";
    ev->created = std::chrono::steady_clock::now();
    return ev;
}

event_ptr event_builder::make_conversion(const conversion_input& in) const {
    auto ev = std::make_shared<user_event>();
    ev->context = ctx_;
    std::string& out = ev->visitor_json;
    out.reserve(320 + 96 * in.attributes.size() + in.tags_json.size());
    write_visitor_head(out, in.user_id, in.attributes);
    write_event_tail(out, in.event_id, in.event_key);
    if (in.revenue) {
        out += ",\"revenue\":";
        append_json_int(out, *in.revenue);
    }
    if (in.value && std::isfinite(*in.value)) {
        out += ",\"value\":";
        append_json_double(out, *in.value);
    }
    if (!in.tags_json.empty()) {
        out += ",\"tags\":";
        out += in.tags_json;
    }
    out += "}]}]}";
    ev->created = std::chrono::steady_clock::now();
    return ev;
}

}  // namespace evdispatch
