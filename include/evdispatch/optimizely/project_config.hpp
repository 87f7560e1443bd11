#pragma once

/// @file project_config.hpp
/// The parts of an Optimizely datafile that events need: the batch context, attribute and
/// event ids, experiments, feature flags and rollouts.

#include <evdispatch/event.hpp>
#include <evdispatch/optimizely/event_builder.hpp>

#include <boost/system/error_code.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace evdispatch {

/// Endpoint for datafiles whose region is US, absent or unknown.
inline constexpr std::string_view us_endpoint = "https://logx.optimizely.com/v1/events";
/// Endpoint for datafiles whose region is EU.
inline constexpr std::string_view eu_endpoint = "https://eu.logx.optimizely.com/v1/events";

/// The endpoint for a datafile region, compared upper-cased: "EU" -> eu_endpoint, anything
/// else (including "" and unknown regions) -> us_endpoint.
std::string_view endpoint_for_region(std::string_view region) noexcept;

/// One variation of an experiment or rule.
struct variation {
    std::string id;
    std::string key;
    bool feature_enabled = false;  ///< featureEnabled (false when absent).
};

/// Where an experiment comes from in the datafile.
enum class rule_origin {
    experiment,  ///< `experiments` or a mutually exclusive `groups[].experiments`.
    rollout,     ///< A rule of `rollouts[].experiments`.
    holdout,     ///< `holdouts`.
};

/// An experiment, a rollout rule or a holdout.
struct experiment {
    std::string id;
    std::string key;
    std::string layer_id;  ///< layerId ("" when absent).
    rule_origin origin = rule_origin::experiment;
    std::vector<variation> variations;

    const variation* variation_by_key(std::string_view key) const noexcept;
    const variation* variation_by_id(std::string_view id) const noexcept;
};

/// A feature flag: its experiments and its rollout.
struct feature_flag {
    std::string id;
    std::string key;
    std::vector<std::string> experiment_ids;  ///< experimentIds.
    std::string rollout_id;                   ///< rolloutId ("" when none).
};

/// A rollout: the ordered rules (delivery rules, then "everyone else") of a flag.
struct rollout {
    std::string id;
    std::vector<std::string> rule_ids;  ///< Ids of its experiments, in datafile order.
};

/// The key project_config::resolve_decision could not resolve.
enum class decision_field {
    flag_key,       ///< The flag key is not in the datafile.
    rule_key,       ///< The experiment or rule key is unknown, or not a rule of the flag.
    variation_key,  ///< The variation key is not a variation of the rule (or has no rule).
};

/// Why keys could not be resolved into a decision: the key at fault and a message naming it
/// (e.g. "flag key 'checkout' is not in the datafile").
struct decision_error {
    decision_field field = decision_field::rule_key;
    std::string message;
};

/// A parsed datafile. Immutable and shared: build it once per datafile revision with
/// `parse`, then hand it to `event_builder`s on any number of threads.
class project_config {
public:
    /// What evdispatch adds to the datafile's context.
    struct options {
        /// Sent as client_name. Default "evdispatch-cpp".
        std::string client_name = "evdispatch-cpp";
        /// Sent as client_version. Default: the library version.
        std::string client_version{evdispatch::version()};
        /// Where batches go. Empty (default): by the datafile's region (endpoint_for_region).
        std::string endpoint;
    };

    /// Parses a datafile (JSON text). Throws boost::system::system_error with
    /// error::invalid_datafile and a message naming the field when the text is not JSON, a
    /// required field is missing, a field has the wrong type, or the version is unsupported
    /// (supported: "2", "3", "4").
    static std::shared_ptr<const project_config> parse(std::string_view datafile,
                                                       const options& opts);
    /// Same, with default options.
    static std::shared_ptr<const project_config> parse(std::string_view datafile);

    /// The batch context of events built from this datafile (shared by all of them).
    const context_ptr& context() const noexcept { return ctx_; }
    const std::string& account_id() const noexcept { return ctx_->account_id; }
    const std::string& project_id() const noexcept { return ctx_->project_id; }
    const std::string& revision() const noexcept { return ctx_->revision; }
    const std::string& version() const noexcept { return version_; }
    bool anonymize_ip() const noexcept { return ctx_->anonymize_ip; }
    /// botFiltering: nullopt when the datafile has none (or null).
    std::optional<bool> bot_filtering() const noexcept { return bot_filtering_; }
    /// region as given ("" when absent).
    const std::string& region() const noexcept { return region_; }
    /// sendFlagDecisions (false when absent).
    bool send_flag_decisions() const noexcept { return send_flag_decisions_; }

    /// Attribute key -> id, shared with the builders made from this config.
    const std::shared_ptr<const attribute_id_map>& attribute_ids() const noexcept {
        return attribute_ids_;
    }
    /// The id of an attribute key, or null.
    const std::string* attribute_id(std::string_view key) const noexcept;
    /// The id of an event key, or null.
    const std::string* event_id(std::string_view key) const noexcept;

    /// Experiments, groups' experiments, rollout rules and holdouts by key. When keys
    /// collide, experiments win over holdouts, holdouts over rollout rules, and the first in
    /// datafile order wins within each.
    const experiment* experiment_by_key(std::string_view key) const noexcept;
    /// Same set, by id.
    const experiment* experiment_by_id(std::string_view id) const noexcept;
    const feature_flag* flag_by_key(std::string_view key) const noexcept;
    const rollout* rollout_by_id(std::string_view id) const noexcept;

    /// The decision to report for a flag or experiment decision, by keys:
    /// - `flag_key` empty: `rule_key` is an experiment key; rule_type "experiment".
    /// - `flag_key` set: `rule_key` is searched among the flag's experiments (rule_type
    ///   "feature-test"), then its rollout's rules ("rollout"); an empty `rule_key` is a flag
    ///   decision without a rule (empty ids, rule_type "rollout").
    /// `variation_key` empty: no variation (variation id sent as null).
    /// Fails with error::invalid_input (unknown flag, rule or variation key).
    decision make_decision(std::string_view flag_key, std::string_view rule_key,
                           std::string_view variation_key, bool enabled,
                           boost::system::error_code& ec) const;
    /// Same, throwing boost::system::system_error(error::invalid_input) with a message naming
    /// the unknown key.
    decision make_decision(std::string_view flag_key, std::string_view rule_key,
                           std::string_view variation_key, bool enabled) const;
    /// Same resolution, for callers that report which key is at fault: on success sets `out`
    /// and returns nullopt; otherwise returns the key and a message, and leaves `out` as it
    /// was.
    std::optional<decision_error> resolve_decision(std::string_view flag_key,
                                                   std::string_view rule_key,
                                                   std::string_view variation_key, bool enabled,
                                                   decision& out) const;

    /// A decision for a known experiment and one of its variations (null: no variation).
    /// rule_type: "experiment", "rollout" or "holdout" by the experiment's origin unless
    /// `rule_type` is given.
    decision make_decision(const experiment& e, const variation* v, std::string_view flag_key,
                           std::string_view rule_key, std::string_view rule_type,
                           bool enabled) const;

    project_config(const project_config&) = delete;
    project_config& operator=(const project_config&) = delete;
    ~project_config();

private:
    project_config();
    struct parser;

    template <class T>
    using by_key = std::unordered_map<std::string, T, string_hash, std::equal_to<>>;

    context_ptr ctx_;
    std::string version_;
    std::string region_;
    std::optional<bool> bot_filtering_;
    bool send_flag_decisions_ = false;
    std::shared_ptr<const attribute_id_map> attribute_ids_;
    by_key<std::string> event_ids_;
    std::vector<std::unique_ptr<experiment>> experiments_;  // stable addresses
    by_key<const experiment*> experiment_by_key_;
    by_key<const experiment*> experiment_by_id_;
    std::vector<feature_flag> flags_;
    by_key<std::size_t> flag_index_;
    std::vector<rollout> rollouts_;
    by_key<std::size_t> rollout_index_;
};

}  // namespace evdispatch
