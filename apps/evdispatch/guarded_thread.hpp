#pragma once

// The only way the program starts a thread. A std::thread ends the program when an exception
// leaves its body, or when it is destroyed joinable (e.g. while an exception unwinds the
// function that started it); a guarded_thread does neither:
// - the body runs under a catch-all; what it threw is kept and rethrown by join();
// - the destructor requests stop (std::stop_token) and joins, so the body must end soon after
//   a stop request: loop on the token, wait with std::condition_variable_any and the token, or
//   register a std::stop_callback that stops what it blocks on (io_context::stop()).

#include <pthread.h>

#include <exception>
#include <memory>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

namespace evdispatch::app {

class guarded_thread {
public:
    guarded_thread() = default;

    /// Starts `body()` or `body(std::stop_token)` on a new thread named `name` (<= 15 chars).
    /// Throws std::system_error if the thread cannot be started (nothing then runs).
    template <class F>
    guarded_thread(const char* name, F body)
        : error_(std::make_shared<std::exception_ptr>())
        , thread_([name, error = error_, body = std::move(body)](std::stop_token st) mutable {
            pthread_setname_np(pthread_self(), name);
            try {
                if constexpr (std::is_invocable_v<F&, std::stop_token>)
                    body(std::move(st));
                else
                    body();
            } catch (...) {
                *error = std::current_exception();
            }
        }) {}

    // Moving keeps the body's error slot (shared); a moved-to thread that was running is
    // stopped and joined first (std::jthread's move assignment).
    guarded_thread(guarded_thread&&) noexcept = default;
    guarded_thread& operator=(guarded_thread&&) noexcept = default;

    /// Requests stop and joins; an exception the body threw is dropped (call join() to see it).
    ~guarded_thread() = default;

    void request_stop() noexcept { thread_.request_stop(); }
    bool joinable() const noexcept { return thread_.joinable(); }

    /// Waits for the body to end, then rethrows what it threw, if anything (once).
    void join() {
        if (thread_.joinable())
            thread_.join();
        if (error_ && *error_)
            std::rethrow_exception(std::exchange(*error_, nullptr));
    }

private:
    // Shared with the body: written by it before it ends, read after join().
    std::shared_ptr<std::exception_ptr> error_;
    std::jthread thread_;  // last: stopped and joined before error_ goes
};

}  // namespace evdispatch::app
