#pragma once

/// @file event_builder.hpp
/// Turns decisions and conversions into immutable user events (visitor JSON written once).
///
/// Two levels:
/// - The user level follows every rule of the Optimizely v1 event format (docs/optimizely.md):
///   attributes and tags are JSON-like `value`s; the builder filters attributes, looks their
///   ids up, appends the bot-filtering attribute, normalises campaign and variation ids, lifts
///   revenue and value out of the tags. Use `make_impression(user_id, attributes, decision)`
///   and `make_conversion(user_id, attributes, conversion)` (or by event key, with a datafile).
/// - The low level (`impression_input`, `conversion_input`) takes attributes already resolved
///   to their ids and tags already serialised; it is for callers that cache resolved inputs.

#include <evdispatch/event.hpp>
#include <evdispatch/optimizely/value.hpp>

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace evdispatch {

class project_config;

// ---------------------------------------------------------------------------------------------
// User level
// ---------------------------------------------------------------------------------------------

/// User attributes, key -> value, in the caller's order (the order they are sent in).
using user_attributes = std::vector<std::pair<std::string, value>>;

/// Event tags of a conversion, key -> value, in the caller's order.
using event_tags = value::object;

/// Hash of the string keys of evdispatch's maps. Transparent (with `std::equal_to<>`): a map
/// keyed by std::string is searched with a std::string_view or a C string without building a
/// std::string. Hashes as std::hash<std::string_view>.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

/// Attribute key -> datafile attribute id (searchable by std::string_view).
using attribute_id_map = std::unordered_map<std::string, std::string, string_hash, std::equal_to<>>;

/// A decision to report as an impression, with the ids as the datafile has them. The builder
/// normalises them (campaign id from `layer_id` or `experiment_id`; a variation id that is
/// not a string of ASCII digits is sent as null). `project_config::make_decision` fills one
/// from keys.
struct decision {
    std::string layer_id;       ///< The experiment's layerId; may be empty.
    std::string experiment_id;  ///< May be empty (a flag decision without an experiment).
    std::string variation_id;   ///< Sent as null unless a non-empty string of ASCII digits.
    std::string variation_key;  ///< metadata.variation_key.
    std::string flag_key;       ///< metadata.flag_key ("" for a plain experiment).
    std::string rule_key;       ///< metadata.rule_key.
    std::string rule_type;      ///< metadata.rule_type: "experiment", "feature-test", "rollout" ...
    bool enabled = false;       ///< metadata.enabled.
    std::optional<std::string> cmab_uuid;  ///< metadata.cmab_uuid, sent only when set.
};

/// A tracked event (conversion) with the event's datafile id.
struct conversion {
    std::string event_key;  ///< Event key (sent as the event `key`).
    std::string event_id;   ///< Datafile id of the key (sent as `entity_id`).
    /// Tags. nullopt: no `tags` key; an empty object: `"tags":{}`. `revenue` and `value` are
    /// lifted from them by the rules of docs/optimizely.md; the tags are sent as given, a
    /// non-finite number inside them as null.
    std::optional<event_tags> tags;
};

// ---------------------------------------------------------------------------------------------
// Low level
// ---------------------------------------------------------------------------------------------

/// A visitor attribute value as the wire format allows it.
using attribute_value = std::variant<std::string, bool, std::int64_t, double>;

/// One visitor attribute, already resolved to its datafile id.
struct attribute {
    std::string key;        ///< Attribute key.
    std::string entity_id;  ///< Datafile id of the key (or the key itself for `$opt_` keys).
    /// Numbers must be finite with |x| <= 2^53; another number is skipped (not sent).
    attribute_value value;
};

/// A decision to report as an impression (low level: ids already normalised by the caller,
/// except the variation id, which is still sent as null unless it is all digits).
struct impression_input {
    std::string user_id;
    std::vector<attribute> attributes;
    std::string campaign_id;    ///< Layer id (or experiment id); may be empty.
    std::string experiment_id;  ///< May be empty (rollout without experiment).
    std::string variation_id;   ///< Sent as null unless it is a non-empty string of digits.
    std::string variation_key;
    std::string flag_key;
    std::string rule_key;
    std::string rule_type;  ///< "experiment", "rollout", "feature-test" ...
    bool enabled = false;
    std::optional<std::string> cmab_uuid;
};

/// A conversion (tracked event), low level.
struct conversion_input {
    std::string user_id;
    std::vector<attribute> attributes;
    std::string event_id;  ///< Datafile id of the event key.
    std::string event_key;
    std::optional<std::int64_t> revenue;  ///< Lifted revenue, if any.
    std::optional<double> value;          ///< Lifted value, if any (a non-finite one is skipped).
    /// Tags as a ready JSON object text (e.g. `{"revenue":42}`), written verbatim: the caller
    /// vouches for its validity. Empty: no tags key.
    std::string tags_json;
};

// ---------------------------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------------------------

/// Builds events for one batch context. Thread-safe and lock-free once configured (the
/// const member functions may be called from any number of threads): each thread uses its own
/// uuid generator. Clock and uuid source can be replaced for tests (not while building).
///
/// The visitor JSON is written once, by a streaming writer, into the event: no document tree.
/// Strings (user id, attribute keys and values, ids, tags) are bytes meant to be UTF-8; an
/// invalid UTF-8 sequence is replaced by U+FFFD, never sent raw.
class event_builder {
public:
    /// Milliseconds since the Unix epoch.
    using clock_fn = std::function<std::int64_t()>;
    /// A 36-char lowercase uuid.
    using uuid_fn = std::function<std::string()>;

    /// A builder for `ctx` without a datafile. `bot_filtering`: the datafile's botFiltering
    /// (nullopt: no `$opt_bot_filtering` attribute). `attribute_ids`: the keys the datafile
    /// knows, for the user level (null: only `$opt_` attributes are sent).
    explicit event_builder(context_ptr ctx, std::optional<bool> bot_filtering = std::nullopt,
                           std::shared_ptr<const attribute_id_map> attribute_ids = nullptr);

    /// A builder for a datafile: context, bot filtering, attribute and event ids from it.
    /// Throws boost::system::system_error(error::invalid_config) when `config` is null.
    explicit event_builder(std::shared_ptr<const project_config> config);

    /// Replaces the clock (default: system clock, epoch ms).
    void set_clock(clock_fn f) { clock_ = std::move(f); }
    /// Replaces the uuid source (default: random v4 from a per-thread generator).
    void set_uuid_source(uuid_fn f) { uuid_ = std::move(f); }

    const context_ptr& context() const noexcept { return ctx_; }
    const std::optional<bool>& bot_filtering() const noexcept { return bot_filtering_; }
    /// The datafile this builder was made from, or null.
    const std::shared_ptr<const project_config>& config() const noexcept { return config_; }

    /// Impression for `user_id` (user level: every rule applied). Never fails.
    event_ptr make_impression(std::string_view user_id, const user_attributes& attributes,
                              const decision& d) const;

    /// Conversion for `user_id` (user level: every rule applied). Never fails.
    event_ptr make_conversion(std::string_view user_id, const user_attributes& attributes,
                              const conversion& c) const;

    /// Conversion of the datafile event `event_key`. `tags` null: no tags key.
    /// Throws boost::system::system_error(error::unknown_event_key) naming the key when the
    /// datafile does not know it (or the builder has no datafile): nothing is built.
    event_ptr make_conversion(std::string_view user_id, const user_attributes& attributes,
                              std::string_view event_key, const event_tags* tags = nullptr) const;
    /// Same, reporting an unknown key through `ec` (and returning null) instead of throwing.
    event_ptr make_conversion(std::string_view user_id, const user_attributes& attributes,
                              std::string_view event_key, const event_tags* tags,
                              boost::system::error_code& ec) const;

    /// Low level: attributes resolved, ids normalised by the caller.
    event_ptr make_impression(const impression_input& in) const;
    /// Low level: attributes resolved, revenue/value lifted and tags serialised by the caller.
    event_ptr make_conversion(const conversion_input& in) const;

private:
    // The skeleton of every entry point (defined and used in event_builder.cpp only): a new
    // event of this builder's context whose visitor JSON is written in one pass.
    template <class Attributes, class Event>
    event_ptr build(std::size_t expected_bytes, std::string_view user_id,
                    const Attributes& attributes, const Event& event) const;

    context_ptr ctx_;
    std::optional<bool> bot_filtering_;
    std::shared_ptr<const attribute_id_map> attribute_ids_;
    std::shared_ptr<const project_config> config_;
    clock_fn clock_;
    uuid_fn uuid_;
};

/// A random version-4 uuid (lowercase, hyphenated) from a per-thread generator.
std::string random_uuid();

/// Appends a random version-4 uuid to `out` (no allocation beyond `out`).
void append_random_uuid(std::string& out);

/// Revenue lifted from `tags` by the wire rules: `tags["revenue"]` when it is an integer
/// (not a bool, not a double, not a numeric string). Otherwise nullopt.
std::optional<std::int64_t> lift_revenue(const event_tags& tags) noexcept;

/// Value lifted from `tags` by the wire rules: `tags["value"]` when it is a finite number,
/// or a string that parses entirely as a finite decimal number (surrounding ASCII whitespace
/// and a leading sign allowed). Bools, NaN, infinities and anything else: nullopt.
std::optional<double> lift_value(const event_tags& tags) noexcept;

/// Whether an attribute value is sent: a string, a bool, or a finite number with
/// |x| <= 2^53. Null, arrays, objects, NaN, infinities and larger numbers are not.
bool is_sendable_attribute(const value& v) noexcept;

/// Whether a variation id is sent as is: a non-empty string of ASCII digits (leading zeros
/// allowed). Anything else is sent as null.
bool is_valid_variation_id(std::string_view id) noexcept;

}  // namespace evdispatch
