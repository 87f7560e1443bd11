#pragma once

/// @file spool.hpp
/// Looking into a disk spool directory (spool_config::dir) without changing it: what
/// `evdispatch spool inspect` prints. To deliver what a spool holds, open a processor with the
/// same spool.dir (`evdispatch spool drain` does that).

#include <cstdint>
#include <string>
#include <vector>

namespace evdispatch {

/// One processor's directory in a spool.
struct spool_dir_info {
    std::string path;
    bool in_use = false;                  ///< Locked by a running process now.
    std::uint64_t segments = 0;           ///< Spool files.
    std::uint64_t records = 0;            ///< Batches not yet settled (intact).
    std::uint64_t events = 0;             ///< Their events.
    std::uint64_t bytes = 0;              ///< Their request body bytes.
    std::uint64_t acked_records = 0;      ///< Settled batches whose file is not removed yet.
    std::uint64_t oldest_created_ms = 0;  ///< Unix time (ms) of the oldest batch; 0: none.
    std::uint64_t corrupt_records = 0;    ///< Batches whose body failed its checksum.
    std::uint64_t corrupt_events = 0;     ///< Their events.
    std::uint64_t corrupt_bytes = 0;      ///< Bytes with no readable batch header.
};

/// A spool directory.
struct spool_info {
    std::vector<spool_dir_info> dirs;
    std::uint64_t quarantined_files = 0;  ///< Corrupt spool files moved to quarantine/.
    std::uint64_t quarantined_bytes = 0;
    /// Not empty when the spool was written by a newer format version (then nothing else was
    /// read): says so.
    std::string refused;

    std::uint64_t records() const noexcept {
        std::uint64_t n = 0;
        for (const auto& d : dirs)
            n += d.records;
        return n;
    }
    std::uint64_t events() const noexcept {
        std::uint64_t n = 0;
        for (const auto& d : dirs)
            n += d.events;
        return n;
    }
};

/// Reads the spool under `dir`. Throws boost::system::system_error (error::invalid_config)
/// when `dir` does not exist or cannot be read.
spool_info inspect_spool(const std::string& dir);

}  // namespace evdispatch
