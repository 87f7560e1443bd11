#pragma once

// Helpers of the spool tests: temporary directories, records, draining a store.

#include "spool/store.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace evdispatch::test::spool_support {

namespace sp = evdispatch::detail::spool;

/// A directory under /tmp (mkdtemp), removed with its contents at the end.
class temp_dir {
public:
    temp_dir() {
        char tmpl[] = "/tmp/evdispatch-spool-XXXXXX";
        const char* p = ::mkdtemp(tmpl);
        REQUIRE(p != nullptr);
        path_ = p;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::add, ec);
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
};

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

/// The files of `dir` (recursively) whose name starts with `prefix`, sorted.
inline std::vector<std::string> files_named(const std::string& dir, const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
        if (e.is_regular_file() && e.path().filename().string().rfind(prefix, 0) == 0)
            out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}

/// The store directories (`<pid>-<ns>`) under `dir`, sorted.
inline std::vector<std::string> store_dirs(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.is_directory() && e.path().filename() != "quarantine")
            out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}

/// A record whose body is recognisable by `n`, with `events` events.
inline sp::record_meta meta_of(std::uint32_t events, std::uint64_t created_ms = 1000) {
    sp::record_meta m;
    m.url = "https://collector.example/v1/events";
    m.headers = {{"Content-Type", "application/json"}, {"X-Batch", std::to_string(events)}};
    m.event_count = events;
    m.created_ms = created_ms;
    return m;
}

inline std::string body_of(std::uint64_t n, std::size_t size = 100) {
    std::string b = "{\"batch\":" + std::to_string(n) + ",\"pad\":\"";
    while (b.size() + 2 < size)
        b.push_back(static_cast<char>('a' + (n + b.size()) % 26));
    b += "\"}";
    return b;
}

inline sp::store_options options(const std::string& dir) {
    sp::store_options o;
    o.dir = dir;
    o.max_bytes = 1 << 20;
    o.segment_bytes = 64 << 10;
    o.fsync = sp::fsync_policy::every_batch;
    return o;
}

/// Everything next() returns (acked at once when `ack`).
inline std::vector<sp::record> drain(sp::store& s, bool ack = true, std::uint64_t now_ms = 1000,
                                     std::chrono::milliseconds max_age = {}) {
    std::vector<sp::record> out;
    while (auto r = s.next(now_ms, max_age)) {
        if (ack)
            s.ack({r->origin, r->id});
        out.push_back(std::move(*r));
    }
    return out;
}

}  // namespace evdispatch::test::spool_support
