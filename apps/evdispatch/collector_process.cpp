#include "collector_process.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace evdispatch::app {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("--collector process: " + what);
}

// Reads from `fd` into `buf` until it holds a whole line; returns it (without '\n'), or
// returns false at end of input.
bool read_line(int fd, std::string& buf, std::string& line) {
    for (;;) {
        if (const auto nl = buf.find('\n'); nl != std::string::npos) {
            line = buf.substr(0, nl);
            buf.erase(0, nl + 1);
            return true;
        }
        char chunk[4096];
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf.append(chunk, static_cast<std::size_t>(n));
    }
}

std::string self_path() {
    std::vector<char> path(4096);
    const ssize_t n = ::readlink("/proc/self/exe", path.data(), path.size() - 1);
    if (n <= 0)
        fail(std::string("cannot find this program (/proc/self/exe): ") + std::strerror(errno));
    return std::string(path.data(), static_cast<std::size_t>(n));
}

}  // namespace

collector_process::collector_process(std::chrono::milliseconds delay,
                                     std::chrono::milliseconds lifetime) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0)
        fail(std::string("pipe: ") + std::strerror(errno));
    const std::string exe = self_path();
    std::vector<std::string> args = {exe,
                                     "collector",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--quiet",
                                     "--delay-ms",
                                     std::to_string(delay.count()),
                                     "--duration",
                                     std::to_string(lifetime.count()) + "ms"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
    // The child takes SIGINT/SIGTERM synchronously; it must not inherit them blocked or
    // ignored from a caller that did.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const int rc = posix_spawn(&pid_, exe.c_str(), &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(pipefd[1]);
    out_ = pipefd[0];
    if (rc != 0) {
        pid_ = -1;
        ::close(out_);
        fail(std::string("cannot start ") + exe + ": " + std::strerror(rc));
    }
    std::string line;
    const std::string said = "listening on ";
    if (!read_line(out_, read_, line) || line.find(said) == std::string::npos) {
        kill_child();
        fail("the collector did not start (it said: '" + line + "')");
    }
    const auto from = line.find(said) + said.size();
    url_ = line.substr(from, line.find(' ', from) - from);
}

collector_process::~collector_process() {
    kill_child();
}

void collector_process::kill_child() noexcept {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }
    if (out_ >= 0) {
        ::close(out_);
        out_ = -1;
    }
}

collector_process::result collector_process::stop() {
    if (pid_ <= 0)
        fail("already stopped");
    ::kill(pid_, SIGTERM);
    std::string line, final_json;
    while (read_line(out_, read_, line))
        if (line.rfind("final: ", 0) == 0)
            final_json = line.substr(7);
    int status = 0;
    rusage usage{};
    while (::wait4(pid_, &status, 0, &usage) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    result r;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        r.failure =
            WIFSIGNALED(status)
                ? "the collector process was killed by signal " + std::to_string(WTERMSIG(status))
                : "the collector process exited with status " + std::to_string(WEXITSTATUS(status));
        return r;
    }
    boost::system::error_code ec;
    const auto v = boost::json::parse(final_json, ec);
    if (ec || !v.is_object()) {
        r.failure = "the collector process printed no final counters";
        return r;
    }
    const auto& o = v.get_object();
    auto u64 = [&](const char* k) {
        const auto* f = o.if_contains(k);
        return f && f->is_int64()    ? static_cast<std::uint64_t>(f->get_int64())
               : f && f->is_uint64() ? f->get_uint64()
                                     : 0;
    };
    r.unique_events = u64("unique_events");
    r.duplicates = u64("duplicates");
    auto ns = [](const timeval& t) {
        return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000ull +
               static_cast<std::uint64_t>(t.tv_usec) * 1'000ull;
    };
    r.cpu_ns = ns(usage.ru_utime) + ns(usage.ru_stime);
    return r;
}

}  // namespace evdispatch::app
