#pragma once

/// @file detail/payload_input.hpp
/// Support of the `evdispatch payload` command, shared with the tests: user events described
/// as JSON (the shape of the Optimizely vectors' `inputs` entries), built into events, then
/// grouped into the batches the processor would send. Not a stable API.

#include <evdispatch/config.hpp>
#include <evdispatch/event.hpp>
#include <evdispatch/event_builder.hpp>
#include <evdispatch/log_event.hpp>
#include <evdispatch/project_config.hpp>
#include <evdispatch/value.hpp>

#include <boost/json/value.hpp>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace evdispatch::detail {

/// How entries become events.
struct payload_input_options {
    /// The datafile that supplies the context, bot filtering, attribute ids and the ids of the
    /// keys an entry names. Null: every entry carries its own `context`,
    /// `attribute_ids_in_datafile` and ids.
    std::shared_ptr<const project_config> datafile;
    /// client_name of entries' contexts (no datafile; a datafile has its own options).
    std::string client_name = "evdispatch-cpp";
    /// client_version of entries' contexts (no datafile).
    std::string client_version{version()};
    /// Endpoint of entries' contexts; empty: by the context's region (no datafile).
    std::string endpoint;
};

/// A bad entry. what(): "input[<index>].<field>: <problem>".
class payload_input_error : public std::runtime_error {
public:
    payload_input_error(std::size_t index, const std::string& what)
        : std::runtime_error(what), index_(index) {}
    /// Index of the entry (0-based, in input order).
    std::size_t index() const noexcept { return index_; }

private:
    std::size_t index_;
};

/// Converts JSON to a value. `{"$float": "nan"|"inf"|"-inf"}` (an object with that one
/// member) stands for the number JSON cannot hold. Throws payload_input_error naming `path`
/// on another `$float` string.
value value_from_json(const boost::json::value& j, std::size_t index, const std::string& path);

/// Builds the event of one entry. Throws payload_input_error naming the entry and the field.
event_ptr build_payload_event(const boost::json::value& entry, std::size_t index,
                              const payload_input_options& opts);

/// One entry's outcome.
struct payload_entry {
    std::size_t index = 0;  ///< 0-based position in the input.
    event_ptr event;        ///< Null when the entry was bad.
    std::string error;      ///< Why it was bad ("input[3].event.key: missing").
};

/// Reads `text`: a JSON array of entries, or one entry per non-blank line (JSON lines).
/// Returns one payload_entry per entry. Throws payload_input_error (index 0) when the text
/// is an array that is not valid JSON, or is neither an array nor objects.
std::vector<payload_entry> build_payload_events(std::string_view text,
                                                const payload_input_options& opts);

/// The batches the processor would send for `events`, grouped by the batcher itself, in the
/// order it closes them (the rest flushed at the end, oldest first). An event too large for
/// `cfg.max_batch_bytes` is not sent: its index is added to `too_large`.
std::vector<log_event> group_payload_events(const std::vector<payload_entry>& events,
                                            const batch_config& cfg,
                                            std::vector<std::size_t>* too_large = nullptr);

/// The printed form: a JSON array with one object per batch, one per line:
/// `{"url":..., "http_verb":"POST", "headers":{...}, "params":<the batch body>}`.
std::string write_payload_json(const std::vector<log_event>& batches);

}  // namespace evdispatch::detail
