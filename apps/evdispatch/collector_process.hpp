#pragma once

// `bench --collector process`: the loopback collector as a child process (`evdispatch
// collector`), so that the bench process's own CPU is the library's and the harness's, not the
// receiver's. One child per run: its final counters and its CPU belong to that run alone.

#include <chrono>
#include <cstdint>
#include <string>

#include <sys/types.h>

namespace evdispatch::app {

class collector_process {
public:
    // What the child counted and spent, read when it stops.
    struct result {
        std::uint64_t unique_events = 0;
        std::uint64_t duplicates = 0;
        std::uint64_t cpu_ns = 0;  // user + system, all its threads (wait4's rusage)
        std::string failure;       // not empty: it did not end well; the counts are unknown
    };

    // Starts this program's `collector --listen 127.0.0.1:0 --quiet` with `delay` per response,
    // stopping by itself after `lifetime` in any case, and reads the URL it prints. Throws
    // std::runtime_error if it cannot be started or does not say it listens.
    collector_process(std::chrono::milliseconds delay, std::chrono::milliseconds lifetime);
    // Kills and reaps a child that was not stopped.
    ~collector_process();
    collector_process(const collector_process&) = delete;
    collector_process& operator=(const collector_process&) = delete;

    const std::string& url() const noexcept { return url_; }

    // Stops it (SIGTERM), reads its final counters and reaps it. If it did not end well (it
    // died, or printed no final counters), result::failure says so.
    result stop();

private:
    void kill_child() noexcept;  // kills and reaps it, closes the pipe

    pid_t pid_ = -1;
    int out_ = -1;  // its stdout
    std::string url_;
    std::string read_;  // what was read from its stdout and not used yet
};

}  // namespace evdispatch::app
