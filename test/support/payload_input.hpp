#pragma once

// Support of the `evdispatch payload` command, shared with the tests: user events described as
// JSON (the shape of the Optimizely vectors' `inputs` entries), built into events, then grouped
// into the batches the processor would send. Part of the program, not of the library.

#include <evdispatch/config.hpp>
#include <evdispatch/event.hpp>
#include <evdispatch/log_event.hpp>
#include <evdispatch/optimizely/event_builder.hpp>
#include <evdispatch/optimizely/project_config.hpp>
#include <evdispatch/optimizely/value.hpp>

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace evdispatch::test {

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

/// Why an entry was refused.
struct payload_error {
    std::size_t index = 0;  ///< The entry, 0-based in input order.
    std::string field;      ///< Its field as a JSON path ("event.key"); "": the entry itself.
    std::string message;    ///< What is wrong ("missing", "'x' is not in the datafile").
    std::size_t line = 0;   ///< Its line in JSON-lines input (1-based); 0: not from a line.
};

/// How the command prints an error: "input[2].event.key: missing (line 3)".
std::string to_string(const payload_error& e);

/// One entry's outcome: its event, or why there is none.
struct payload_entry {
    std::size_t index = 0;               ///< 0-based position in the input.
    event_ptr event;                     ///< Null when the entry was bad.
    std::optional<payload_error> error;  ///< Set when the entry was bad.
};

/// Converts JSON to a value. `{"$float": "nan"|"inf"|"-inf"}` (an object with that one
/// member) stands for the number JSON cannot hold. Another `$float` string: nullopt, and
/// `err` (when given) names `path` + ".$float".
std::optional<value> value_from_json(const boost::json::value& j, const std::string& path,
                                     payload_error* err = nullptr);

/// Builds the event of one entry, or says which field is wrong.
payload_entry build_payload_event(const boost::json::value& entry, std::size_t index,
                                  const payload_input_options& opts);

/// Reads `text`: a JSON array of entries, or one entry per non-blank line (JSON lines).
/// Returns one payload_entry per entry. When the text is an array that is not valid JSON,
/// returns nothing and sets `ec` to the parser's error.
std::vector<payload_entry> build_payload_events(std::string_view text,
                                                const payload_input_options& opts,
                                                boost::system::error_code& ec);

/// The batches the processor would send for `events`, grouped by the batcher itself, in the
/// order it closes them (the rest flushed at the end, oldest first). An event too large for
/// `cfg.max_batch_bytes` is not sent: its index is added to `too_large`.
std::vector<log_event> group_payload_events(const std::vector<payload_entry>& events,
                                            const batch_config& cfg,
                                            std::vector<std::size_t>* too_large = nullptr);

/// The printed form: a JSON array with one object per batch, one per line:
/// `{"url":..., "http_verb":"POST", "headers":{...}, "params":<the batch body>}`.
std::string write_payload_json(const std::vector<log_event>& batches);

}  // namespace evdispatch::test
