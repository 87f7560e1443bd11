#pragma once

// The batcher: a pure state machine. Events and clock readings go in, closed batches come out.
// No sockets, no clock of its own, no threads: the processor's strand drives it, and unit tests
// drive it with a table.

#include <evdispatch/config.hpp>
#include <evdispatch/event.hpp>
#include <evdispatch/log_event.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace evdispatch::detail {

using clock = std::chrono::steady_clock;

/// A batch ready to send: the complete event-batch body and what is needed for accounting.
struct closed_batch {
    std::uint64_t id = 0;                    ///< Sequence number, increasing in closing order.
    context_ptr context;                     ///< Shared by all its events.
    std::string body;                        ///< The event batch JSON.
    std::size_t events = 0;                  ///< Visitors in the body.
    clock::time_point opened{};              ///< When its first event was added.
    std::vector<clock::time_point> created;  ///< Each event's build time (for latency).
    /// Position (sequence number) of its first event in the order events were added: events
    /// of a batch are in order, so it is the lowest (the durable watermark uses it).
    std::uint64_t first_seq = 0;
};

/// The request of a closed batch, as every attempt sends it: a POST of the body to the
/// context's endpoint. Moves the body and context out of `b`; its id and created times stay
/// for accounting.
log_event make_log_event(closed_batch& b);

/// Result of batcher::add.
enum class add_result { added, too_large };

/// Writes the envelope that precedes the visitors (`{"account_id":...,"visitors":[`).
void write_envelope_prefix(std::string& out, const event_context& ctx);
/// What closes the envelope.
inline constexpr std::string_view envelope_suffix = "]}";

class batcher {
public:
    /// Throws boost::system::system_error (error::invalid_config) on batch_size 0,
    /// flush_interval <= 0 or
    /// max_batch_bytes < 1024.
    explicit batcher(const batch_config& cfg);

    /// Adds one event at time `now`. Closed batches are appended to `out`: the open batch of
    /// the same context when this event would overflow its bytes (before adding), and the
    /// batch that this event fills to batch_size. Returns too_large (and changes nothing) when
    /// the event alone does not fit in max_batch_bytes. `seq`: the event's position in the
    /// order of adds (the pipeline passes its ring position), kept as closed_batch::first_seq.
    add_result add(const user_event& ev, clock::time_point now, std::vector<closed_batch>& out,
                   std::uint64_t seq = 0);

    /// Closes every batch whose first event was added at or before `now - flush_interval`.
    void tick(clock::time_point now, std::vector<closed_batch>& out);

    /// Closes every open batch (flush or close).
    void flush(std::vector<closed_batch>& out);

    /// When the next batch becomes due by age, if any is open.
    std::optional<clock::time_point> next_deadline() const noexcept;

    std::size_t open_batches() const noexcept { return open_.size(); }
    /// Lowest first_seq of the open batches (UINT64_MAX when none is open).
    std::uint64_t min_open_seq() const noexcept;
    std::size_t open_events() const noexcept { return open_events_; }
    std::uint64_t last_closed_id() const noexcept { return next_id_ - 1; }

private:
    struct open_batch {
        closed_batch b;
        std::size_t prefix_bytes = 0;
    };

    struct envelope {
        context_ptr context;
        std::string prefix;
    };
    static constexpr std::size_t max_envelopes = 64;

    open_batch* find(const context_ptr& ctx) noexcept;
    const std::string& envelope_prefix(const context_ptr& ctx);
    void close(std::size_t index, std::vector<closed_batch>& out);

    batch_config cfg_;
    std::vector<open_batch> open_;  // few contexts in practice: linear search
    std::size_t open_events_ = 0;
    std::uint64_t next_id_ = 1;
    std::vector<envelope> envelopes_;  // rendered once per context, most recent last
};

}  // namespace evdispatch::detail
