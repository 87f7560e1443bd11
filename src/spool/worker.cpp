#include "spool/worker.hpp"

#include <evdispatch/error.hpp>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <exception>

namespace evdispatch::detail::spool {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

std::uint64_t unix_ms() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

}  // namespace

worker::worker(std::unique_ptr<store> s, std::chrono::milliseconds max_age,
               std::chrono::milliseconds sync_every)
    : store_(std::move(s)), max_age_(max_age), sync_every_(sync_every) {
    publish();
    if (sync_every_.count() > 0)
        arm_sync();
    thread_ = std::thread([this] {
        // Store operations report errors by value; anything else (bad_alloc) must not end the
        // process from this thread: the operation is lost, the thread goes on.
        for (;;) {
            try {
                io_.run();
                return;
            } catch (...) {
            }
        }
    });
}

worker::~worker() {
    stopping_ = true;
    asio::post(io_, [this] { sync_timer_.cancel(); });
    guard_.reset();
    if (thread_.joinable()) {
        if (thread_.get_id() == std::this_thread::get_id())
            thread_.detach();  // cannot happen through the processor; never join ourselves
        else
            thread_.join();
    }
    store_.reset();  // syncs and releases the lock
}

void worker::publish() noexcept {
    const auto& c = store_->counters();
    pub_.live_bytes.store(c.live_bytes, std::memory_order_relaxed);
    pub_.live_bytes_peak.store(c.live_bytes_peak, std::memory_order_relaxed);
    pub_.corrupt_records.store(c.corrupt_records, std::memory_order_relaxed);
    pub_.corrupt_bytes.store(c.corrupt_bytes, std::memory_order_relaxed);
    pub_.segments_quarantined.store(c.segments_quarantined, std::memory_order_relaxed);
    pub_.sync_failures.store(c.sync_failures, std::memory_order_relaxed);
}

void worker::arm_sync() {
    sync_timer_.expires_after(sync_every_);
    sync_timer_.async_wait([this](error_code ec) {
        if (ec || stopping_)
            return;
        store_->sync_due(std::chrono::steady_clock::now());
        publish();
        arm_sync();
    });
}

void worker::write(std::shared_ptr<const log_event> request, std::chrono::milliseconds age,
                   bool read_back, write_done done) {
    asio::post(io_, [this, request = std::move(request), age, read_back,
                     done = std::move(done)]() mutable {
        error_code ec;
        record_ref ref;
        try {
            record_meta m;
            m.url = request->url;
            m.headers = request->headers;
            m.event_count = static_cast<std::uint32_t>(request->event_count);
            const auto now = unix_ms();
            const auto a = static_cast<std::uint64_t>(std::max<std::int64_t>(0, age.count()));
            m.created_ms = now > a ? now - a : 0;
            std::tie(ec, ref) = store_->append(m, request->body, read_back);
        } catch (...) {
            ec = make_error_code(error::spool_write_failed);
        }
        request.reset();  // the bytes are on disk (or refused): free them here
        publish();
        done(ec, ref);
    });
}

void worker::read(std::size_t max_bytes, read_done done) {
    asio::post(io_, [this, max_bytes, done = std::move(done)]() mutable {
        read_result r;
        try {
            const auto before = store_->counters();
            const auto now = unix_ms();
            std::size_t bytes = 0;
            while (bytes < max_bytes) {
                auto rec = store_->next(now, max_age_);
                if (!rec)
                    break;
                auto le = std::make_shared<log_event>();
                le->url = std::move(rec->meta.url);
                le->headers = std::move(rec->meta.headers);
                le->event_count = rec->meta.event_count;
                le->body = std::move(rec->body);
                bytes += le->body.size();
                const auto created = rec->meta.created_ms;
                r.batches.push_back({{rec->origin, rec->id},
                                     std::move(le),
                                     std::chrono::milliseconds(now > created ? now - created : 0)});
            }
            const auto& after = store_->counters();
            r.skipped_corrupt_events = after.corrupt_events - before.corrupt_events;
            r.skipped_expired_events = after.expired_events - before.expired_events;
        } catch (...) {
            // What was read is returned; the rest stays unread (asked again later).
        }
        r.own_unread = store_->unread_own_records();
        r.recovered_unread = store_->unread_adopted_records();
        publish();
        done(std::move(r));
    });
}

void worker::barrier(std::function<void()> done) {
    asio::post(io_, [this, done = std::move(done)] {
        try {
            store_->sync();
        } catch (...) {
        }
        publish();
        done();
    });
}

void worker::settle(record_ref ref, bool release) {
    asio::post(io_, [this, ref, release] {
        try {
            if (release)
                store_->release(ref);
            else
                store_->ack(ref);
        } catch (...) {
        }
        publish();
    });
}

}  // namespace evdispatch::detail::spool
