#include <evdispatch/optimizely/project_config.hpp>

#include "optimizely/json_read.hpp"

#include <evdispatch/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cctype>

namespace evdispatch {

namespace json = boost::json;

std::string_view endpoint_for_region(std::string_view region) noexcept {
    if (region.size() == 2 && std::toupper(static_cast<unsigned char>(region[0])) == 'E' &&
        std::toupper(static_cast<unsigned char>(region[1])) == 'U')
        return eu_endpoint;
    return us_endpoint;
}

const variation* experiment::variation_by_key(std::string_view k) const noexcept {
    for (const auto& v : variations)
        if (v.key == k)
            return &v;
    return nullptr;
}

const variation* experiment::variation_by_id(std::string_view i) const noexcept {
    for (const auto& v : variations)
        if (v.id == i)
            return &v;
    return nullptr;
}

project_config::project_config() = default;
project_config::~project_config() = default;

// Reads the datafile's JSON into a project_config. Every failure names the field by its path
// ("experiments[2].variations[0].id") so that a bad datafile can be fixed from the message.
struct project_config::parser {
    project_config& cfg;
    // null reads as absent where a member is optional (a datafile's "layerId": null).
    detail::json_reader r{{.null = detail::json_null::optional}};

    using reader = detail::json_reader;

    [[noreturn]] static void fail(const std::string& what) {
        throw boost::system::system_error(error::invalid_datafile, "datafile: " + what);
    }

    // Absent or null: an empty array.
    const json::array& array_or_empty(const json::object& o, std::string_view key,
                                      std::string_view where) const {
        static const json::array empty;
        const json::array* a = r.optional_array(o, key, where);
        return a ? *a : empty;
    }

    experiment& add_experiment(const json::value& v, const std::string& path, rule_origin origin) {
        const auto& o = reader::object(v, path);
        auto e = std::make_unique<experiment>();
        e->id = r.required_string(o, "id", path);
        e->key = r.required_string(o, "key", path);
        e->layer_id = r.optional_string(o, "layerId", path).value_or("");
        e->origin = origin;
        const std::string vpath = path + ".variations";
        const auto& vars = array_or_empty(o, "variations", path);
        e->variations.reserve(vars.size());
        for (std::size_t i = 0; i < vars.size(); ++i) {
            const std::string p = reader::path(vpath, i);
            const auto& vo = reader::object(vars[i], p);
            variation var;
            var.id = r.required_string(vo, "id", p);
            var.key = r.required_string(vo, "key", p);
            var.feature_enabled = r.optional_bool(vo, "featureEnabled", p).value_or(false);
            e->variations.push_back(std::move(var));
        }
        cfg.experiments_.push_back(std::move(e));
        return *cfg.experiments_.back();
    }

    void run(std::string_view text, const options& opts) {
        boost::system::error_code ec;
        json::value root = json::parse(text, ec);
        if (ec)
            fail("not valid JSON: " + ec.message());
        try {
            read(root, opts);
        } catch (const detail::json_field_error& e) {
            fail(e.what());
        }
    }

    void read(const json::value& root, const options& opts) {
        const auto& o = reader::object(root, "(top level)");

        // Only the versions whose event-relevant fields are known.
        cfg.version_ = r.required_string(o, "version");
        if (cfg.version_ != "2" && cfg.version_ != "3" && cfg.version_ != "4")
            fail("unsupported version '" + cfg.version_ + "' (supported: \"2\", \"3\", \"4\")");

        auto ctx = std::make_shared<event_context>();
        ctx->account_id = r.required_string(o, "accountId");
        ctx->project_id = r.required_string(o, "projectId");
        ctx->revision = r.required_string(o, "revision");
        ctx->anonymize_ip = r.optional_bool(o, "anonymizeIP").value_or(false);
        ctx->client_name = opts.client_name;
        ctx->client_version = opts.client_version;
        cfg.bot_filtering_ = r.optional_bool(o, "botFiltering");
        cfg.send_flag_decisions_ = r.optional_bool(o, "sendFlagDecisions").value_or(false);
        cfg.region_ = r.optional_string(o, "region").value_or("");
        ctx->endpoint =
            opts.endpoint.empty() ? std::string(endpoint_for_region(cfg.region_)) : opts.endpoint;
        cfg.ctx_ = std::move(ctx);

        auto attrs = std::make_shared<attribute_id_map>();
        const auto& attributes = array_or_empty(o, "attributes", "");
        for (std::size_t i = 0; i < attributes.size(); ++i) {
            const std::string p = reader::path("attributes", i);
            const auto& ao = reader::object(attributes[i], p);
            std::string key = r.required_string(ao, "key", p);
            attrs->insert_or_assign(std::move(key), r.required_string(ao, "id", p));
        }
        cfg.attribute_ids_ = std::move(attrs);

        const auto& events = array_or_empty(o, "events", "");
        for (std::size_t i = 0; i < events.size(); ++i) {
            const std::string p = reader::path("events", i);
            const auto& eo = reader::object(events[i], p);
            std::string key = r.required_string(eo, "key", p);
            cfg.event_ids_.insert_or_assign(std::move(key), r.required_string(eo, "id", p));
        }

        // Experiments first (they win key collisions), then groups, holdouts, rollout rules.
        std::vector<experiment*> in_order;
        const auto& exps = array_or_empty(o, "experiments", "");
        for (std::size_t i = 0; i < exps.size(); ++i)
            in_order.push_back(
                &add_experiment(exps[i], reader::path("experiments", i), rule_origin::experiment));
        const auto& groups = array_or_empty(o, "groups", "");
        for (std::size_t g = 0; g < groups.size(); ++g) {
            const std::string gp = reader::path("groups", g);
            const auto& go = reader::object(groups[g], gp);
            const auto& gexps = array_or_empty(go, "experiments", gp);
            for (std::size_t i = 0; i < gexps.size(); ++i)
                in_order.push_back(&add_experiment(gexps[i], reader::path(gp + ".experiments", i),
                                                   rule_origin::experiment));
        }
        const auto& holdouts = array_or_empty(o, "holdouts", "");
        for (std::size_t i = 0; i < holdouts.size(); ++i)
            in_order.push_back(
                &add_experiment(holdouts[i], reader::path("holdouts", i), rule_origin::holdout));

        const auto& rollouts = array_or_empty(o, "rollouts", "");
        for (std::size_t k = 0; k < rollouts.size(); ++k) {
            const std::string rp = reader::path("rollouts", k);
            const auto& ro = reader::object(rollouts[k], rp);
            rollout rl;
            rl.id = r.required_string(ro, "id", rp);
            const auto& rules = array_or_empty(ro, "experiments", rp);
            for (std::size_t i = 0; i < rules.size(); ++i) {
                auto& e = add_experiment(rules[i], reader::path(rp + ".experiments", i),
                                         rule_origin::rollout);
                rl.rule_ids.push_back(e.id);
                in_order.push_back(&e);
            }
            cfg.rollout_index_.emplace(rl.id, cfg.rollouts_.size());
            cfg.rollouts_.push_back(std::move(rl));
        }
        for (const experiment* e : in_order) {
            cfg.experiment_by_key_.emplace(e->key, e);  // first wins
            cfg.experiment_by_id_.emplace(e->id, e);
        }

        const auto& flags = array_or_empty(o, "featureFlags", "");
        for (std::size_t i = 0; i < flags.size(); ++i) {
            const std::string p = reader::path("featureFlags", i);
            const auto& fo = reader::object(flags[i], p);
            feature_flag f;
            f.id = r.required_string(fo, "id", p);
            f.key = r.required_string(fo, "key", p);
            f.rollout_id = r.optional_string(fo, "rolloutId", p).value_or("");
            const auto& ids = array_or_empty(fo, "experimentIds", p);
            for (std::size_t k = 0; k < ids.size(); ++k)
                f.experiment_ids.push_back(
                    reader::string(ids[k], reader::path(p + ".experimentIds", k)));
            cfg.flag_index_.emplace(f.key, cfg.flags_.size());
            cfg.flags_.push_back(std::move(f));
        }
    }
};

std::shared_ptr<const project_config> project_config::parse(std::string_view datafile,
                                                            const options& opts) {
    std::shared_ptr<project_config> cfg(new project_config());
    parser{*cfg}.run(datafile, opts);
    return cfg;
}

std::shared_ptr<const project_config> project_config::parse(std::string_view datafile) {
    return parse(datafile, options{});
}

const std::string* project_config::attribute_id(std::string_view key) const noexcept {
    const auto it = attribute_ids_->find(key);
    return it == attribute_ids_->end() ? nullptr : &it->second;
}

const std::string* project_config::event_id(std::string_view key) const noexcept {
    const auto it = event_ids_.find(key);
    return it == event_ids_.end() ? nullptr : &it->second;
}

const experiment* project_config::experiment_by_key(std::string_view key) const noexcept {
    const auto it = experiment_by_key_.find(key);
    return it == experiment_by_key_.end() ? nullptr : it->second;
}

const experiment* project_config::experiment_by_id(std::string_view id) const noexcept {
    const auto it = experiment_by_id_.find(id);
    return it == experiment_by_id_.end() ? nullptr : it->second;
}

const feature_flag* project_config::flag_by_key(std::string_view key) const noexcept {
    const auto it = flag_index_.find(key);
    return it == flag_index_.end() ? nullptr : &flags_[it->second];
}

const rollout* project_config::rollout_by_id(std::string_view id) const noexcept {
    const auto it = rollout_index_.find(id);
    return it == rollout_index_.end() ? nullptr : &rollouts_[it->second];
}

decision project_config::make_decision(const experiment& e, const variation* v,
                                       std::string_view flag_key, std::string_view rule_key,
                                       std::string_view rule_type, bool enabled) const {
    decision d;
    d.layer_id = e.layer_id;
    d.experiment_id = e.id;
    if (v) {
        d.variation_id = v->id;
        d.variation_key = v->key;
    }
    d.flag_key = flag_key;
    d.rule_key = rule_key;
    if (!rule_type.empty()) {
        d.rule_type = rule_type;
    } else {
        switch (e.origin) {
            case rule_origin::experiment:
                d.rule_type = "experiment";
                break;
            case rule_origin::rollout:
                d.rule_type = "rollout";
                break;
            case rule_origin::holdout:
                d.rule_type = "holdout";
                break;
        }
    }
    d.enabled = enabled;
    return d;
}

std::optional<decision_error> project_config::resolve_decision(std::string_view flag_key,
                                                               std::string_view rule_key,
                                                               std::string_view variation_key,
                                                               bool enabled, decision& out) const {
    auto failed = [](decision_field f, std::string message) {
        return std::optional<decision_error>(decision_error{f, std::move(message)});
    };
    const experiment* rule = nullptr;
    std::string_view rule_type;
    if (flag_key.empty()) {
        rule = experiment_by_key(rule_key);
        if (!rule)
            return failed(decision_field::rule_key,
                          "experiment key '" + std::string(rule_key) + "' is not in the datafile");
        if (rule->origin == rule_origin::rollout)
            return failed(decision_field::rule_key,
                          "rule key '" + std::string(rule_key) +
                              "' is a rollout rule: give the key of its flag");
        rule_type = rule->origin == rule_origin::holdout ? "holdout" : "experiment";
    } else {
        const feature_flag* flag = flag_by_key(flag_key);
        if (!flag)
            return failed(decision_field::flag_key,
                          "flag key '" + std::string(flag_key) + "' is not in the datafile");
        if (rule_key.empty()) {
            if (!variation_key.empty())
                return failed(decision_field::variation_key,
                              "variation key '" + std::string(variation_key) +
                                  "' given without a rule key: give the rule key too");
            // A flag decision without a rule: reported with empty ids (sendFlagDecisions).
            out = decision{};
            out.flag_key = flag_key;
            out.rule_type = "rollout";
            out.enabled = enabled;
            return std::nullopt;
        }
        for (const auto& id : flag->experiment_ids) {
            const experiment* e = experiment_by_id(id);
            if (e && e->key == rule_key) {
                rule = e;
                rule_type = "feature-test";
                break;
            }
        }
        if (!rule) {
            if (const rollout* r = rollout_by_id(flag->rollout_id)) {
                for (const auto& id : r->rule_ids) {
                    const experiment* e = experiment_by_id(id);
                    if (e && e->key == rule_key) {
                        rule = e;
                        rule_type = "rollout";
                        break;
                    }
                }
            }
        }
        if (!rule)
            return failed(decision_field::rule_key, "rule key '" + std::string(rule_key) +
                                                        "' is not a rule of flag '" +
                                                        std::string(flag_key) + "'");
    }
    const variation* v = nullptr;
    if (!variation_key.empty()) {
        v = rule->variation_by_key(variation_key);
        if (!v)
            return failed(decision_field::variation_key,
                          "variation key '" + std::string(variation_key) +
                              "' is not a variation of rule '" + rule->key + "'");
    }
    out = make_decision(*rule, v, flag_key, rule_key, rule_type, enabled);
    return std::nullopt;
}

decision project_config::make_decision(std::string_view flag_key, std::string_view rule_key,
                                       std::string_view variation_key, bool enabled,
                                       boost::system::error_code& ec) const {
    decision d;
    if (resolve_decision(flag_key, rule_key, variation_key, enabled, d)) {
        ec = error::invalid_input;
        return {};
    }
    ec = {};
    return d;
}

decision project_config::make_decision(std::string_view flag_key, std::string_view rule_key,
                                       std::string_view variation_key, bool enabled) const {
    decision d;
    if (auto e = resolve_decision(flag_key, rule_key, variation_key, enabled, d))
        throw boost::system::system_error(error::invalid_input, e->message);
    return d;
}

}  // namespace evdispatch
