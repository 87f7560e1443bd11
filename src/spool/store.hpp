#pragma once

// The disk spool's storage: sealed batches (the exact request bytes with their endpoint,
// headers and event count) appended as CRC32C-framed records to segment files in a directory
// owned by this process, acknowledged when settled, and read back for replay. Directories of
// processes that are gone (restart, crash, pre-fork workers) are adopted and replayed.
//
// Single-threaded: one store is used by one thread at a time (the processor's spool thread).
// No Asio. All I/O goes through spool::file_system, so tests inject faults and crashes.
//
// On disk (docs/spool-format.md has the byte layout and the rules; docs/delivery.md, "Disk
// spool", the guarantees):
//   <dir>/<pid>-<start_ns>/LOCK            flock'd while a store owns the directory
//   <dir>/<pid>-<start_ns>/seg-<first id, 20 digits>.evs   records, appended
//   <dir>/<pid>-<start_ns>/acks.log        ids of settled records (CRC-framed), appended
//   <dir>/quarantine/                      corrupt segments moved aside (capped)
// A segment is removed once each of its records is settled; acks.log is rewritten (to a
// temporary name, then renamed) without the ids of removed segments. Order: ack durable ->
// unlink segment -> sync directory. A missing segment or a stale ack is tolerated at open.

#include "spool/file_system.hpp"

#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace evdispatch::detail::spool {

/// When appended bytes are made durable (fdatasync of the segment).
enum class fsync_policy {
    none,      ///< Never by the spool (the kernel writes back; survives kill -9, not power loss).
    interval,  ///< By sync_due()/sync(), at most `fsync_interval` after the append.
    every_batch,  ///< Before append() returns.
};

struct store_options {
    std::string dir;                           ///< Parent directory (must exist).
    std::uint64_t max_bytes = 1ull << 30;      ///< Segment bytes on disk, own dir.
    std::uint64_t segment_bytes = 8ull << 20;  ///< A segment is sealed past this.
    fsync_policy fsync = fsync_policy::interval;
    std::chrono::milliseconds fsync_interval{1000};
    std::uint64_t quarantine_max_bytes = 64ull << 20;  ///< Oldest quarantined files go first.
    bool adopt = true;  ///< Adopt the directories of processes that are gone, at open.
};

/// What a record carries besides its body. The body is the exact HTTP request body.
struct record_meta {
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::uint32_t event_count = 0;
    std::uint64_t created_ms = 0;  ///< Unix time (ms) the batch was sealed.
};

struct record {
    std::uint64_t id = 0;      ///< Unique within the directory it was read from (see origin).
    std::uint32_t origin = 0;  ///< 0: this store's own directory; k > 0: the k-th adopted one.
    record_meta meta;
    std::string body;
};

/// A record's identity for ack(): ids are unique per directory only.
struct record_ref {
    std::uint32_t origin = 0;
    std::uint64_t id = 0;
    friend bool operator==(const record_ref&, const record_ref&) = default;
};

/// Counters of a store (plain words; the processor copies them into its metrics).
struct store_counters {
    std::uint64_t records_written = 0;
    std::uint64_t events_written = 0;
    std::uint64_t bytes_written = 0;   ///< Frame bytes appended.
    std::uint64_t write_failures = 0;  ///< append() calls that failed (disk error).
    std::uint64_t full_refusals = 0;   ///< append() calls refused: max_bytes reached.
    std::uint64_t syncs = 0;
    std::uint64_t sync_failures = 0;
    std::uint64_t ack_failures = 0;  ///< Acks that could not be written to acks.log.
    std::uint64_t live_bytes = 0;    ///< Segment bytes on disk in the own directory.
    std::uint64_t live_bytes_peak = 0;
    std::uint64_t recovered_records = 0;  ///< Intact, unacknowledged records found in adopted dirs.
    std::uint64_t recovered_events = 0;
    std::uint64_t corrupt_records = 0;  ///< Header intact, payload CRC bad: skipped.
    std::uint64_t corrupt_events = 0;   ///< Their event counts (exact: the header CRC held).
    std::uint64_t corrupt_bytes = 0;    ///< Bytes skipped where no intact header was found.
    std::uint64_t segments_quarantined = 0;
    std::uint64_t expired_records = 0;  ///< Skipped at read: older than max_age (see next()).
    std::uint64_t expired_events = 0;
};

/// A store's directory, for `evdispatch spool inspect` (reads only; takes no lock).
struct dir_report {
    std::string path;
    bool locked = false;  ///< Held by a live process now.
    std::uint64_t segments = 0;
    std::uint64_t records = 0;  ///< Intact and not acknowledged.
    std::uint64_t events = 0;
    std::uint64_t bytes = 0;  ///< Payload bytes of those records.
    std::uint64_t acked_records = 0;
    std::uint64_t oldest_created_ms = 0;  ///< 0 when no record.
    std::uint64_t corrupt_records = 0;
    std::uint64_t corrupt_events = 0;
    std::uint64_t corrupt_bytes = 0;
};
struct spool_report {
    std::vector<dir_report> dirs;
    std::uint64_t quarantined_files = 0;
    std::uint64_t quarantined_bytes = 0;
    /// Set when the directory holds a spool of a newer format version (nothing else is read).
    std::string refused;
};

/// Reads a spool directory (the `dir` of store_options) without changing anything.
/// Throws boost::system::system_error when `dir` cannot be read.
spool_report inspect(const std::string& dir, file_system& fs);

class store {
public:
    /// Creates `<dir>/<pid>-<start_ns>/`, locks it, and (adopt) takes over the sibling
    /// directories whose lock is free, scanning their segments (headers only; a torn tail is
    /// cut, a corrupt segment is moved to quarantine/). Throws boost::system::system_error
    /// (error::invalid_config) naming the field: `spool.dir` missing, not a directory or not
    /// writable; `spool.max_bytes` below `spool.segment_bytes`; `spool.segment_bytes` 0; a
    /// directory written by a newer format version (left untouched).
    store(store_options opts, std::shared_ptr<file_system> fs);
    /// Syncs (unless fsync is none), releases the lock; removes the own directory when it holds
    /// no unsettled record. Never throws.
    ~store();
    store(const store&) = delete;
    store& operator=(const store&) = delete;

    /// Appends one record. `read_back`: the record is returned by next() later (mode
    /// overflow: the batch leaves memory); otherwise it stays on disk only for a later process
    /// to recover if this one dies (mode always: the batch is also in memory). Returns its ref,
    /// or: error::spool_full (max_bytes reached; nothing written), error::spool_write_failed
    /// (the disk refused: ENOSPC, EIO, a short write; the partial frame is cut off again when
    /// possible, otherwise the segment is sealed and a new one started).
    /// With fsync every_batch the record is durable when this returns without error.
    std::pair<boost::system::error_code, record_ref> append(const record_meta& meta,
                                                            std::string_view body, bool read_back);

    /// The next record to replay: own read_back records first (in append order), then the
    /// adopted directories' records (oldest directory first). Records older than `max_age`
    /// (by created_ms against `now_ms`) are skipped and counted in expired_*; they are
    /// settled (acknowledged) here. Corrupt records are skipped and counted. nullopt when none.
    /// A record returned by next() is not returned again by this store.
    std::optional<record> next(std::uint64_t now_ms, std::chrono::milliseconds max_age);

    /// Returns a record handed out by next(), or appended with read_back false, to the
    /// unread records: a later next() returns it again (its memory copy was dropped). An
    /// unknown or settled ref is ignored.
    void release(record_ref r);

    /// Records (own read_back ones and adopted ones) not yet returned by next(), and their
    /// events and body bytes.
    std::uint64_t unread_records() const noexcept;
    /// Of unread_records(): those of the own directory, and those of adopted ones.
    std::uint64_t unread_own_records() const noexcept;
    std::uint64_t unread_adopted_records() const noexcept;
    std::uint64_t unread_events() const noexcept;
    std::uint64_t unread_bytes() const noexcept;

    /// Marks a record settled (delivered, or dropped for good). The ack is appended to
    /// acks.log (synced with the fsync policy); segments whose records are all settled are
    /// removed. An unknown ref is ignored.
    void ack(record_ref r);

    /// With fsync interval: syncs what was appended or acknowledged since the last sync when
    /// fsync_interval has passed since then (`now`: a steady clock reading). Cheap otherwise.
    void sync_due(std::chrono::steady_clock::time_point now);
    /// Syncs now (any policy but none).
    void sync();

    /// Whether appends are refused after a disk error; cleared by the next append that
    /// succeeds (the caller retries appends later, e.g. once a second).
    bool degraded() const noexcept { return degraded_; }

    const store_counters& counters() const noexcept { return ctr_; }
    /// The own directory.
    const std::string& path() const noexcept { return path_; }

private:
    struct impl;
    std::unique_ptr<impl> impl_;
    store_counters ctr_;
    std::string path_;
    bool degraded_ = false;
};

}  // namespace evdispatch::detail::spool
