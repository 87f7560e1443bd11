#pragma once

// The processor's spool thread: owns the store and runs every disk operation off the strand
// (appends, reads, acknowledgements, interval syncs), in the order they were asked for.
// Results are handed to callbacks that the caller makes post back to its strand.

#include "spool/store.hpp"

#include <evdispatch/log_event.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace evdispatch::detail::spool {

/// A record read back, as a request to send.
struct replayed {
    record_ref ref;
    std::shared_ptr<const log_event> request;
    std::chrono::milliseconds age{0};  ///< Since the batch was sealed.
};

struct read_result {
    std::vector<replayed> batches;
    std::uint64_t own_unread = 0;
    std::uint64_t recovered_unread = 0;
    std::uint64_t skipped_corrupt_events = 0;
    std::uint64_t skipped_expired_events = 0;
};

/// Counters of the store, published by the spool thread (relaxed; read by metrics()).
struct published_counters {
    std::atomic<std::uint64_t> live_bytes{0};
    std::atomic<std::uint64_t> live_bytes_peak{0};
    std::atomic<std::uint64_t> corrupt_records{0};
    std::atomic<std::uint64_t> corrupt_bytes{0};
    std::atomic<std::uint64_t> segments_quarantined{0};
    std::atomic<std::uint64_t> sync_failures{0};
};

class worker {
public:
    /// Starts the thread. `max_age`: records older than this are skipped at read (0: none).
    worker(std::unique_ptr<store> s, std::chrono::milliseconds max_age,
           std::chrono::milliseconds sync_every);
    /// Runs what was asked before, syncs and closes the store, ends the thread. Never throws.
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    using write_done = std::function<void(boost::system::error_code, record_ref)>;
    using read_done = std::function<void(read_result)>;

    /// Appends `request` (sealed `age` ago); `done` runs on the spool thread.
    void write(std::shared_ptr<const log_event> request, std::chrono::milliseconds age,
               bool read_back, write_done done);
    /// Reads about `max_bytes` of records back; `done` runs on the spool thread.
    void read(std::size_t max_bytes, read_done done);
    /// Acknowledges (settled) or releases (read back later) a record.
    void settle(record_ref ref, bool release);
    /// Runs `done` on the spool thread once everything asked before is done and synced (as
    /// the fsync policy allows).
    void barrier(std::function<void()> done);

    const published_counters& counters() const noexcept { return pub_; }

private:
    void publish() noexcept;
    void arm_sync();

    std::unique_ptr<store> store_;
    std::chrono::milliseconds max_age_;
    std::chrono::milliseconds sync_every_;
    published_counters pub_;
    boost::asio::io_context io_{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
        io_.get_executor()};
    boost::asio::steady_timer sync_timer_{io_};
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace evdispatch::detail::spool
