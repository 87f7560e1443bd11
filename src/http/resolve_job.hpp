#pragma once

// resolve_job: brings the answer of one name resolution from whatever thread the resolver
// answers on back to the HTTP pool's executor, and never touches that executor once the pool
// has let go of it.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <mutex>
#include <optional>
#include <utility>

namespace evdispatch::detail {

// The protocol. A host_resolver may answer from any thread, at any time, or never; the pool
// and its io_context may be gone by then.
//
// - The pool creates the job on its executor, with a copy of that executor, and keeps it in
//   endpoint_pool::resolving while the resolution runs. The resolver's handler holds the job
//   (shared_ptr) and a weak_ptr to the pool, never the pool itself.
// - The answering thread calls post(): under the mutex, unless the job is cancelled, it posts
//   the continuation to the executor and then drops its executor copy (one answer per job).
// - The pool calls cancel() on its executor when it shuts down and when it is destroyed, both
//   while its io_context is alive (the rule Asio sets for every I/O object). Under the same
//   mutex it marks the job cancelled and destroys the executor copy there and then.
// So the executor is used, and its copy destroyed, only under the mutex before cancel(), that
// is while the io_context lives; after cancel() the answering thread touches nothing but the
// job (shared heap memory) and the answer is dropped. A continuation posted just before
// cancel() still runs on the executor (or is destroyed with the io_context): it must check
// that the pool is alive (weak_ptr) and still waiting for this very job.
// (Destroying the last copy of a strand executor touches the strand service, so it must not
// happen on another thread after the io_context is gone: hence the copy is released under the
// mutex rather than with the job.)
class resolve_job {
public:
    explicit resolve_job(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}

    // Any thread. Posts `f` to the executor unless cancel() came first or an earlier post()
    // did; returns whether it did.
    template <class F>
    bool post(F&& f) noexcept {
        std::lock_guard lock(mu_);
        if (cancelled_ || !ex_)
            return false;
        bool posted = true;
        try {
            boost::asio::post(*ex_, std::forward<F>(f));
        } catch (...) {
            posted = false;  // out of memory: as if never answered (waiters time out)
        }
        ex_.reset();
        return posted;
    }

    // On the pool's executor, while its io_context is alive. post() does nothing afterwards.
    void cancel() noexcept {
        std::lock_guard lock(mu_);
        cancelled_ = true;
        ex_.reset();
    }

    bool cancelled() const noexcept {
        std::lock_guard lock(mu_);
        return cancelled_;
    }

private:
    mutable std::mutex mu_;
    bool cancelled_ = false;
    std::optional<boost::asio::any_io_executor> ex_;  // reset by the first post() or cancel()
};

}  // namespace evdispatch::detail
