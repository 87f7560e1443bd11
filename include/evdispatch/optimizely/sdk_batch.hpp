#pragma once

/// @file sdk_batch.hpp
/// Taking over event batches built elsewhere: an Optimizely SDK's custom event dispatcher
/// hands its LogEvent (url + params) to evdispatch, which re-batches and delivers it.

#include <evdispatch/event.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace evdispatch {

/// Options of split_event_batch.
struct split_options {
    /// Endpoint of the events. Empty (default): the `url` given.
    std::string endpoint;
    /// client_name of the events. Empty (default): the batch's own.
    std::string client_name;
    /// client_version of the events. Empty (default): the batch's own.
    std::string client_version;
    /// Refuse what evdispatch would not send as given: an envelope field other than
    /// account_id, project_id, revision, client_name, client_version, anonymize_ip,
    /// enrich_decisions and visitors, or enrich_decisions other than true (evdispatch writes
    /// `"enrich_decisions":true` in every batch). Default false: such fields are ignored.
    bool strict = false;
};

/// Splits an Optimizely v1 event batch (the JSON body an SDK sends, its `params`) into
/// evdispatch events, one per visitor, in order, sharing one context read from the batch
/// header (account_id, project_id, revision, client_name, client_version, anonymize_ip) and
/// `url`. Handed to a batch_event_processor, they are batched with other events of an equal
/// context and delivered with evdispatch's pooling and retries.
///
/// Each visitor is kept as the batch has it, re-serialised from a parsed document (this is an
/// adapter, not the hot path: numbers may change notation, never value). Throws
/// boost::system::system_error(error::invalid_input) naming the field when the body is not
/// valid JSON (a bare NaN, as one SDK writes for a NaN tag, is not) or not an event batch.
std::vector<event_ptr> split_event_batch(std::string_view url, std::string_view body,
                                         const split_options& opts = {});

}  // namespace evdispatch
