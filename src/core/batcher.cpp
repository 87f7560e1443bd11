#include "core/batcher.hpp"

#include "core/config_check.hpp"

#include "core/json_writer.hpp"

#include <algorithm>
#include <stdexcept>

namespace evdispatch::detail {

void write_envelope_prefix(std::string& out, const event_context& ctx) {
    out += "{\"account_id\":";
    append_json_string(out, ctx.account_id);
    out += ",\"project_id\":";
    append_json_string(out, ctx.project_id);
    out += ",\"revision\":";
    append_json_string(out, ctx.revision);
    out += ",\"client_name\":";
    append_json_string(out, ctx.client_name);
    out += ",\"client_version\":";
    append_json_string(out, ctx.client_version);
    out += ",\"anonymize_ip\":";
    append_json_bool(out, ctx.anonymize_ip);
    out += ",\"enrich_decisions\":true,\"visitors\":[";
}

log_event make_log_event(closed_batch& b) {
    log_event le;
    le.url = b.context->endpoint;
    le.body = std::move(b.body);
    le.event_count = b.events;
    le.context = std::move(b.context);
    return le;
}

batcher::batcher(const batch_config& cfg) : cfg_(cfg) {
    check_config(cfg);
}

batcher::open_batch* batcher::find(const context_ptr& ctx) noexcept {
    // Events built from the same datafile share the context pointer: compare pointers first.
    for (auto& o : open_)
        if (o.b.context == ctx)
            return &o;
    for (auto& o : open_)
        if (*o.b.context == *ctx)
            return &o;
    return nullptr;
}

// The envelope of a context is rendered once and kept while the context is in use (a few
// contexts: one per datafile revision and endpoint); a new batch only copies it.
const std::string& batcher::envelope_prefix(const context_ptr& ctx) {
    for (auto& e : envelopes_)
        if (e.context == ctx)
            return e.prefix;
    for (auto& e : envelopes_)
        if (*e.context == *ctx)
            return e.prefix;
    if (envelopes_.size() >= max_envelopes)
        envelopes_.erase(envelopes_.begin());  // oldest
    envelope e{ctx, {}};
    write_envelope_prefix(e.prefix, *ctx);
    envelopes_.push_back(std::move(e));
    return envelopes_.back().prefix;
}

add_result batcher::add(const user_event& ev, clock::time_point now, std::vector<closed_batch>& out,
                        std::uint64_t seq) {
    open_batch* o = find(ev.context);
    const std::size_t prefix = o ? o->prefix_bytes : envelope_prefix(ev.context).size();
    if (prefix + ev.visitor_json.size() + envelope_suffix.size() > cfg_.max_batch_bytes)
        return add_result::too_large;

    if (o && o->b.body.size() + 1 + ev.visitor_json.size() + envelope_suffix.size() >
                 cfg_.max_batch_bytes) {
        close(static_cast<std::size_t>(o - open_.data()), out);
        o = nullptr;
    }
    if (!o) {
        const std::string& p = envelope_prefix(ev.context);
        open_batch nb;
        nb.prefix_bytes = p.size();
        nb.b.context = ev.context;
        nb.b.opened = now;
        nb.b.first_seq = seq;
        // Room for batch_size visitors a quarter larger than this one, so that the body is
        // not moved (reallocated and copied) while it fills.
        const std::size_t per_visitor = ev.visitor_json.size() + ev.visitor_json.size() / 4 + 1;
        const std::size_t estimate = p.size() + cfg_.batch_size * per_visitor + 2;
        nb.b.body.reserve(std::min(estimate, cfg_.max_batch_bytes));
        nb.b.body = p;
        nb.b.created.reserve(std::min<std::size_t>(cfg_.batch_size, 4096));
        open_.push_back(std::move(nb));
        o = &open_.back();
    } else {
        o->b.body += ',';
    }
    o->b.body += ev.visitor_json;
    o->b.created.push_back(ev.created);
    ++o->b.events;
    ++open_events_;
    if (o->b.events >= cfg_.batch_size)
        close(static_cast<std::size_t>(o - open_.data()), out);
    return add_result::added;
}

std::uint64_t batcher::min_open_seq() const noexcept {
    std::uint64_t low = UINT64_MAX;
    for (const auto& o : open_)
        low = std::min(low, o.b.first_seq);
    return low;
}

void batcher::close(std::size_t index, std::vector<closed_batch>& out) {
    auto& o = open_[index];
    o.b.body += envelope_suffix;
    o.b.id = next_id_++;
    open_events_ -= o.b.events;
    out.push_back(std::move(o.b));
    // Order of open batches does not matter: swap-remove.
    if (index + 1 != open_.size())
        open_[index] = std::move(open_.back());
    open_.pop_back();
}

void batcher::tick(clock::time_point now, std::vector<closed_batch>& out) {
    // Close in the order the batches were opened, so ids follow age.
    for (;;) {
        std::size_t oldest = open_.size();
        for (std::size_t i = 0; i < open_.size(); ++i) {
            if (now - open_[i].b.opened < cfg_.flush_interval)
                continue;
            if (oldest == open_.size() || open_[i].b.opened < open_[oldest].b.opened)
                oldest = i;
        }
        if (oldest == open_.size())
            return;
        close(oldest, out);
    }
}

void batcher::flush(std::vector<closed_batch>& out) {
    while (!open_.empty()) {
        std::size_t oldest = 0;
        for (std::size_t i = 1; i < open_.size(); ++i)
            if (open_[i].b.opened < open_[oldest].b.opened)
                oldest = i;
        close(oldest, out);
    }
}

std::optional<clock::time_point> batcher::next_deadline() const noexcept {
    std::optional<clock::time_point> d;
    for (const auto& o : open_) {
        const auto due = o.b.opened + cfg_.flush_interval;
        if (!d || due < *d)
            d = due;
    }
    return d;
}

}  // namespace evdispatch::detail
