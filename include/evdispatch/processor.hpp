#pragma once

/// @file processor.hpp
/// batch_event_processor: the front of the pipeline. Producers hand it events; it batches
/// them on a strand and sends them through an event_dispatcher.

#include <evdispatch/config.hpp>
#include <evdispatch/error.hpp>
#include <evdispatch/event.hpp>
#include <evdispatch/event_dispatcher.hpp>
#include <evdispatch/log_event.hpp>
#include <evdispatch/metrics.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

namespace evdispatch {

class host_resolver;
namespace detail::spool {
class file_system;
}

/// What process() did with an event.
enum class process_result {
    accepted,            ///< Queued; it will be delivered or dropped with a reason.
    dropped_queue_full,  ///< Not queued: the ring was full (counted as drop_reason::queue_full).
    dropped_closed,      ///< Not queued: the processor is closed (drop_reason::closed).
    invalid_event,       ///< Not queued: the pointer was null or had no context (not counted).
};

/// The outcome of one batch, reported to processor_hooks::on_batch_result.
struct batch_result {
    std::uint64_t batch_id = 0;  ///< Increasing in the order batches were closed.
    std::size_t events = 0;      ///< Events in the batch.
    std::size_t bytes = 0;       ///< Body size.
    bool delivered = false;      ///< Acknowledged with 2xx.
    drop_reason reason = drop_reason::dispatcher_failed;  ///< Why not, when !delivered.
    boost::system::error_code ec;  ///< Error of the last attempt, when !delivered.
    unsigned status = 0;           ///< HTTP status of the last attempt (0: none).
    unsigned attempts = 0;         ///< Requests made for this batch.
    std::string_view message;      ///< Detail of the last attempt.
    /// Build time of each event (valid during the callback), for latency measurements.
    std::span<const std::chrono::steady_clock::time_point> created;
    std::chrono::steady_clock::time_point finished{};  ///< When the result arrived.
};

/// What async_close reports.
struct close_report {
    std::uint64_t delivered = 0;      ///< Events delivered over the processor's life.
    std::uint64_t not_delivered = 0;  ///< Accepted events dropped over the processor's life.
    /// Drops by reason over the processor's life (index: drop_reason), including refusals.
    std::array<std::uint64_t, drop_reason_count> dropped{};
    bool deadline_passed = false;  ///< Whether the deadline cut delivery short.
    /// Accepted events left in the disk spool (spool_config) for a later processor with the
    /// same spool.dir: what the deadline cut short, when a spool is configured.
    std::uint64_t spooled = 0;
    metrics_snapshot metrics;  ///< Final counters (pending == 0).
};

/// A change of an endpoint's health, reported to processor_hooks::on_endpoint_state.
struct endpoint_change {
    std::string_view url;      ///< The endpoint.
    endpoint_state from;       ///< State before.
    endpoint_state to;         ///< State now.
    unsigned failures = 0;     ///< Consecutive endpoint-level failures so far.
    std::string_view message;  ///< The failure that caused the change (empty when up).
    /// When `to` is up: how long the outage lasted.
    std::chrono::milliseconds outage{0};
    /// When `to` is down: the wait until the next probe.
    std::chrono::milliseconds next_probe{0};
};

/// Severity passed to processor_hooks::logger.
enum class log_level { debug, info, warning, error };

/// Optional parts of a processor.
struct processor_hooks {
    /// Sends the batches. Null: an http_event_dispatcher for processor_config::endpoint.
    std::shared_ptr<event_dispatcher> dispatcher;
    /// Called on the strand just before a batch is handed to the dispatcher (Optimizely's
    /// LOG_EVENT notification). Must not block; exceptions are caught and logged.
    std::function<void(const log_event&)> on_log_event;
    /// Called on the strand with each batch's final result. Must not block.
    std::function<void(const batch_result&)> on_batch_result;
    /// Called on the strand on every change of an endpoint's health (up, down, probing), so
    /// that a server can log or alert. Must not block.
    std::function<void(const endpoint_change&)> on_endpoint_state;
    /// Receives diagnostics (from the strand). Must not block.
    std::function<void(log_level, std::string_view)> logger;
    /// Resolves host names for the built-in HTTP dispatcher (ignored with a custom
    /// `dispatcher`). Null: a system_host_resolver. See host_resolver.hpp.
    std::shared_ptr<host_resolver> resolver;
    /// The file system the disk spool uses (spool_config). Null: the operating system's.
    /// A seam for evdispatch's own tests (fault injection); not a stable interface.
    std::shared_ptr<detail::spool::file_system> spool_fs;
};

namespace detail {
struct processor_state;
}

/// Takes events from any number of producer threads and delivers them in batches.
///
/// Threads: process() and metrics() may be called from any thread, concurrently. All batching,
/// connection and accounting work runs on one strand of the processor's executor.
/// Lifetime: the object may be destroyed at any time; pending handlers keep the shared state
/// alive. An owning processor (constructed without an executor) closes in its destructor with
/// `destructor_close_timeout` and joins its thread; a processor on a user executor starts the
/// same close and returns at once (the user's io_context must keep running for it to finish).
class batch_event_processor {
public:
    using executor_type = boost::asio::any_io_executor;

    /// Runs on a thread the processor owns. Throws boost::system::system_error (invalid_config
    /// or invalid_url) with a message naming the field.
    explicit batch_event_processor(processor_config cfg, processor_hooks hooks = {});
    /// Runs on a strand of `ex` (e.g. the user's io_context). Same errors.
    batch_event_processor(executor_type ex, processor_config cfg, processor_hooks hooks = {});
    ~batch_event_processor();
    batch_event_processor(const batch_event_processor&) = delete;
    batch_event_processor& operator=(const batch_event_processor&) = delete;

    /// The executor the processor's strand runs on.
    executor_type get_executor() const noexcept;

    /// Hands one event over. Thread-safe, lock-free, never blocks, never throws, allocates
    /// nothing (the event is moved into a preallocated slot). Only the producer that flips the
    /// "drain scheduled" flag posts a drain onto the strand.
    process_result process(event_ptr ev) noexcept;

    /// A consistent snapshot of the counters; callable from any thread.
    metrics_snapshot metrics() const noexcept;

    /// Completes when every event accepted before the call is settled (delivered or dropped
    /// with a reason): open batches are closed at once, sent, and their results awaited.
    ///
    /// Signature: `void(boost::system::error_code)`; the code is empty, error::closed if the
    /// processor closed before the flush finished (the events are still settled), or
    /// asio::error::operation_aborted when the operation was cancelled.
    /// Handler runs on its associated executor (default: the processor's executor), never
    /// inside this call.
    /// Cancellation: terminal. The wait ends with operation_aborted; the events go on being
    /// delivered as if no flush had been asked for.
    /// Tokens: callbacks, use_future, use_awaitable, deferred (the default: the operation
    /// starts when the returned deferred operation is invoked). The operation holds the
    /// processor's shared state, so a deferred operation started after a processor on a
    /// user executor was destroyed completes safely (with error::closed). An owning processor
    /// (own thread) must still exist when its operations start.
    template <class CompletionToken = boost::asio::deferred_t>
    auto async_flush(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
            [](auto handler, std::shared_ptr<detail::processor_state> st) {
                start_wait(std::move(st), false, std::move(handler));
            },
            token, state_);
    }

    /// Completes when every event accepted before the call is durable: delivered, dropped with
    /// a reason, or written to the disk spool (spool_config; synced when spool.fsync is
    /// every_batch, so that a crash cannot lose it); or left in the spool at close. Unlike
    /// async_flush it closes no batch early: batches close by size or flush_interval as
    /// always, so the wait is up to about batch.flush_interval plus the spool write (without a
    /// spool: plus the delivery). What `evdispatch relay --durable-ack` answers by.
    ///
    /// Signature: `void(boost::system::error_code)`; the code is empty, or error::closed if
    /// the processor closed before (the events are settled or left in the spool then), or
    /// asio::error::operation_aborted when the operation was cancelled.
    /// Handler runs on its associated executor (default: the processor's executor), never
    /// inside this call. Cancellation: terminal, as async_flush. Tokens: as async_flush.
    template <class CompletionToken = boost::asio::deferred_t>
    auto async_wait_durable(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
            [](auto handler, std::shared_ptr<detail::processor_state> st) {
                start_wait(std::move(st), true, std::move(handler));
            },
            token, state_);
    }

    /// Stops accepting (process() returns dropped_closed from now on), drains the ring, closes
    /// all open batches, sends them and waits for in-flight requests until `deadline` (from
    /// now). What is still undelivered then is dropped with reason close_deadline. Completes
    /// with the report; pending is 0 afterwards. Calling it again completes with the same
    /// result when the first close finishes.
    ///
    /// Signature: `void(boost::system::error_code, close_report)`; the code is empty, or
    /// error::close_deadline when the deadline cut delivery short.
    /// Handler runs on its associated executor (default: the processor's executor), never
    /// inside this call.
    /// Cancellation: not supported (the deadline bounds it).
    /// Tokens: as async_flush (default deferred).
    template <class CompletionToken = boost::asio::deferred_t>
    auto async_close(std::chrono::steady_clock::duration deadline, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken,
                                           void(boost::system::error_code, close_report)>(
            [](auto handler, std::shared_ptr<detail::processor_state> st,
               std::chrono::steady_clock::duration d) {
                start_close(std::move(st), d, std::move(handler));
            },
            token, state_, deadline);
    }

private:
    // async_flush (durable false) and async_wait_durable (true).
    static void start_wait(std::shared_ptr<detail::processor_state> st, bool durable,
                           boost::asio::any_completion_handler<void(boost::system::error_code)> h);
    static void start_close(
        std::shared_ptr<detail::processor_state> st, std::chrono::steady_clock::duration deadline,
        boost::asio::any_completion_handler<void(boost::system::error_code, close_report)> h);

    struct owned_thread;
    std::unique_ptr<owned_thread> thread_;  // only for an owning processor
    std::shared_ptr<detail::processor_state> state_;
};

}  // namespace evdispatch
