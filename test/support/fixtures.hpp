#pragma once

// Shared test fixtures: an io_context that must run out of work, event factories, polling.

#include "support/workload.hpp"

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/evdispatch.hpp>
#include <evdispatch/optimizely.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

namespace evdispatch::test {

/// Owns an io_context run by one thread. At destruction the context must run out of work
/// within `drain_timeout` (nothing left behind): otherwise the test fails.
class io_fixture {
public:
    io_fixture();
    ~io_fixture();
    boost::asio::io_context& io() noexcept { return io_; }
    boost::asio::any_io_executor executor() { return io_.get_executor(); }
    /// Lets run() return once the work is done (called by the destructor).
    void release();
    /// True if the io thread has returned from run().
    bool finished() const;

private:
    boost::asio::io_context io_;
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
        guard_;
    std::promise<void> done_;
    std::shared_future<void> done_future_;
    std::thread thread_;
};

/// Polls `pred` every 5 ms until true or `timeout`; returns its last value.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(20));

/// Closes `p` with `deadline` and waits for the completion: its error code (empty, or
/// error::close_deadline when the deadline cut delivery short; every caller checks which one
/// its test expects) and the report. A close that has not completed 60 s after the deadline
/// fails the test (REQUIRE) instead of hanging it.
std::pair<boost::system::error_code, close_report> close_and_wait(
    batch_event_processor& p, std::chrono::steady_clock::duration deadline);

/// A port on 127.0.0.1 that nothing listens on (bound, then closed).
unsigned short refused_port();

}  // namespace evdispatch::test
