// examples/coroutines: the processor from C++20 coroutines.
//
// async_flush and async_close take any Asio completion token; with asio::use_awaitable they
// are co_await-ed like any other Asio operation. This program is a small "service" on one
// io_context: it records impressions for a stream of users, co_awaits a flush at a checkpoint
// (every event so far settled), then co_awaits a close with a deadline at shutdown.
//
// It sends to an embedded evdispatch collector on 127.0.0.1 (a free port) and exits non-zero
// unless the collector received every event exactly once.

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/optimizely.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <iostream>
#include <memory>
#include <string>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// Records impressions; everything runs on the executor it is given.
class impression_service {
public:
    impression_service(asio::any_io_executor ex, const std::string& endpoint)
        // A processor on the service's executor: its work runs on a strand of that
        // io_context, no extra thread.
        : processor_(ex,
                     evdispatch::processor_config{
                         .endpoint = endpoint,
                         .batch = {.batch_size = 20, .flush_interval = 500ms},
                     })
        , builder_(std::make_shared<evdispatch::event_context>(
              evdispatch::event_context{.account_id = "12001",
                                        .project_id = "111001",
                                        .revision = "42",
                                        .endpoint = endpoint})) {}

    /// The hot path: build and hand over; never waits on the network.
    bool record(const std::string& user_id) {
        return processor_.process(builder_.make_impression({
                   .user_id = user_id,
                   .campaign_id = "111182",
                   .experiment_id = "111127",
                   .variation_id = "111129",
                   .variation_key = "variation",
                   .rule_key = "test_experiment",
                   .rule_type = "experiment",
                   .enabled = true,
               })) == evdispatch::process_result::accepted;
    }

    /// Completes when every event recorded so far is delivered or dropped with a reason.
    /// Throws boost::system::system_error if the flush fails (e.g. the processor closed).
    asio::awaitable<void> checkpoint() { co_await processor_.async_flush(asio::use_awaitable); }

    /// Stops accepting, delivers what is left within `deadline`. as_tuple returns the error
    /// code (error::close_deadline when the deadline cut delivery short) with the report
    /// instead of throwing it.
    asio::awaitable<evdispatch::close_report> shutdown(std::chrono::milliseconds deadline) {
        auto [ec, report] =
            co_await processor_.async_close(deadline, asio::as_tuple(asio::use_awaitable));
        if (ec)
            std::cerr << "close: " << ec.message() << '\n';
        co_return report;
    }

    evdispatch::metrics_snapshot metrics() const { return processor_.metrics(); }

private:
    evdispatch::batch_event_processor processor_;
    evdispatch::event_builder builder_;
};

/// The service's life: two rounds of "requests", a checkpoint after each, then shutdown.
asio::awaitable<bool> run(impression_service& service, const evdispatch::collector& sink) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    int recorded = 0;
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < 50; ++i) {
            if (!service.record("user-" + std::to_string(round) + "-" + std::to_string(i)))
                co_return false;
            ++recorded;
            if (i % 10 == 0) {  // requests trickle in: let other work run meanwhile
                timer.expires_after(1ms);
                co_await timer.async_wait(asio::use_awaitable);
            }
        }
        co_await service.checkpoint();
        // After the flush every event recorded so far has reached the collector.
        auto got = sink.stats().unique_events;
        std::cout << "checkpoint " << round << ": recorded " << recorded << ", collector has "
                  << got << '\n';
        if (got != static_cast<std::uint64_t>(recorded))
            co_return false;
    }
    auto report = co_await service.shutdown(2s);
    std::cout << "closed: delivered " << report.delivered << ", not delivered "
              << report.not_delivered << ", pending " << report.metrics.pending << '\n';
    co_return report.delivered == static_cast<std::uint64_t>(recorded) &&
        report.not_delivered == 0 && report.metrics.pending == 0;
}

}  // namespace

int main() {
    evdispatch::collector sink;  // loopback, free port, answers 204
    asio::io_context io;
    impression_service service(io.get_executor(), sink.url());

    bool ok = false;
    asio::co_spawn(io, run(service, sink), [&](std::exception_ptr e, bool result) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                std::cerr << "error: " << x.what() << '\n';
            }
        }
        ok = !e && result;
    });
    io.run();  // returns when the coroutine is done and the processor has closed
    std::cout << (ok ? "coroutines example: OK\n" : "coroutines example: FAILED\n");
    return ok ? 0 : 1;
}
