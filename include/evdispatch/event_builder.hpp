#pragma once

/// @file event_builder.hpp
/// Turns decisions and conversions into immutable user events (visitor JSON written once).

#include <evdispatch/event.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace evdispatch {

/// A visitor attribute value as the wire format allows it.
using attribute_value = std::variant<std::string, bool, std::int64_t, double>;

/// One visitor attribute, already resolved to its datafile id.
struct attribute {
    std::string key;        ///< Attribute key.
    std::string entity_id;  ///< Datafile id of the key (or the key itself for `$opt_` keys).
    attribute_value value;  ///< Doubles must be finite (a non-finite one is skipped).
};

/// A decision to report as an impression.
struct impression_input {
    std::string user_id;
    std::vector<attribute> attributes;
    std::string campaign_id;    ///< Layer id (or experiment id); may be empty.
    std::string experiment_id;  ///< May be empty (rollout without experiment).
    std::string variation_id;   ///< Sent as null unless it is a non-empty string of digits.
    std::string variation_key;
    std::string flag_key;
    std::string rule_key;
    std::string rule_type;      ///< "experiment", "rollout", "feature-test" ...
    bool enabled = false;
    std::optional<std::string> cmab_uuid;
};

/// A conversion (tracked event).
struct conversion_input {
    std::string user_id;
    std::vector<attribute> attributes;
    std::string event_id;   ///< Datafile id of the event key.
    std::string event_key;
    std::optional<std::int64_t> revenue;  ///< Lifted revenue, if any.
    std::optional<double> value;          ///< Lifted value, if any (finite).
    /// Tags as a ready JSON object text (e.g. `{"revenue":42}`); empty: no tags key.
    std::string tags_json;
};

/// Builds events for one batch context. Thread-safe, lock-free: each thread uses its own
/// uuid generator. Clock and uuid source can be replaced for tests.
class event_builder {
public:
    /// Milliseconds since the Unix epoch.
    using clock_fn = std::function<std::int64_t()>;
    /// A 36-char lowercase uuid.
    using uuid_fn = std::function<std::string()>;

    explicit event_builder(context_ptr ctx, std::optional<bool> bot_filtering = std::nullopt);

    /// Replaces the clock (default: system clock, epoch ms).
    void set_clock(clock_fn f) { clock_ = std::move(f); }
    /// Replaces the uuid source (default: random v4 from a per-thread generator).
    void set_uuid_source(uuid_fn f) { uuid_ = std::move(f); }

    const context_ptr& context() const noexcept { return ctx_; }

    event_ptr make_impression(const impression_input& in) const;
    event_ptr make_conversion(const conversion_input& in) const;

private:
    void write_visitor_head(std::string& out, const std::string& user_id,
                            const std::vector<attribute>& attrs) const;
    void write_event_tail(std::string& out, const std::string& entity_id,
                          const std::string& key) const;

    context_ptr ctx_;
    std::optional<bool> bot_filtering_;
    clock_fn clock_;
    uuid_fn uuid_;
};

/// A random version-4 uuid (lowercase, hyphenated) from a per-thread generator.
std::string random_uuid();

/// Appends a random version-4 uuid to `out` (no allocation beyond `out`).
void append_random_uuid(std::string& out);

}  // namespace evdispatch
