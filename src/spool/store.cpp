// The spool store. On-disk decisions (docs/spool-format.md has the full description):
//
// - Files: `<dir>/<pid>-<start_ns>/` per store (start_ns: CLOCK_REALTIME at open), holding
//   `LOCK` (flock'd), `seg-<first record id, 20 digits>.evs` and `acks.log`; `acks.log.tmp` only
//   while acks.log is rewritten. Corrupt segments go to `<dir>/quarantine/<ns>-<dir>-<seg>`.
// - Segment and acks.log files start with a 16-byte header (magic, format version, CRC); a
//   version above ours makes open() throw error::spool_version before anything is changed.
// - Record ids start at 1 in each directory and only grow (a failed append consumes its id).
//   A segment is sealed when it reaches segment_bytes (or when the next frame would pass it);
//   sealed segments whose records are all settled are removed: acks.log synced, segment
//   unlinked, directory synced, then acks.log rewritten (tmp, sync, rename, directory sync)
//   without the ids of removed segments. With fsync none the syncs are skipped.
// - Adoption: siblings named `<digits>-<digits>` whose LOCK can be taken (or that have none),
//   oldest start_ns first. Headers only are read; a torn tail is cut; bytes without an intact
//   header are counted (corrupt_bytes); payload CRCs are checked when next() reads a record.
//   An adopted directory is removed once its records are all settled.
// - live_bytes: the sizes of the own directory's segment files (file headers included).
// - Disk errors never throw after construction: they set degraded() and are counted.

#include "spool/store.hpp"

#include "spool/frame.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <unordered_set>

namespace evdispatch::detail::spool {

namespace {

constexpr char lock_name[] = "LOCK";
constexpr char acks_name[] = "acks.log";
constexpr char acks_tmp_name[] = "acks.log.tmp";
constexpr char quarantine_name[] = "quarantine";

[[noreturn]] void bad_config(const std::string& what) {
    throw boost::system::system_error(make_error_code(error::invalid_config), what);
}

std::string seg_name(std::uint64_t first_id) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "seg-%020" PRIu64 ".evs", first_id);
    return buf;
}

bool all_digits(std::string_view s) {
    return !s.empty() && s.size() <= 20 &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::uint64_t> parse_seg_name(std::string_view name) {
    if (name.size() != 28 || name.substr(0, 4) != "seg-" || name.substr(24) != ".evs")
        return std::nullopt;
    const auto digits = name.substr(4, 20);
    if (!all_digits(digits))
        return std::nullopt;
    return std::strtoull(std::string(digits).c_str(), nullptr, 10);
}

// `<pid>-<start_ns>`: (start_ns, pid) for ordering, nullopt when not a store directory.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_dir_name(std::string_view name) {
    const auto dash = name.find('-');
    if (dash == std::string_view::npos || !all_digits(name.substr(0, dash)) ||
        !all_digits(name.substr(dash + 1)))
        return std::nullopt;
    return std::pair{std::strtoull(std::string(name.substr(dash + 1)).c_str(), nullptr, 10),
                     std::strtoull(std::string(name.substr(0, dash)).c_str(), nullptr, 10)};
}

std::uint64_t realtime_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

// Store directories under `dir`, oldest first.
std::vector<std::string> store_dirs(file_system& fs, const std::string& dir, error_code& ec) {
    std::vector<std::pair<std::pair<std::uint64_t, std::uint64_t>, std::string>> found;
    for (auto& e : fs.list(dir, ec))
        if (e.is_dir)
            if (auto key = parse_dir_name(e.name))
                found.emplace_back(*key, e.name);
    std::sort(found.begin(), found.end());
    std::vector<std::string> names;
    for (auto& [key, name] : found)
        names.push_back(std::move(name));
    return names;
}

// Segment names of a directory by first id.
std::vector<std::pair<std::uint64_t, std::string>> segment_files(file_system& fs,
                                                                 const std::string& dir) {
    error_code ec;
    std::vector<std::pair<std::uint64_t, std::string>> segs;
    for (auto& e : fs.list(dir, ec))
        if (!e.is_dir)
            if (auto id = parse_seg_name(e.name))
                segs.emplace_back(*id, e.name);
    std::sort(segs.begin(), segs.end());
    return segs;
}

bool read_exact(file_system& fs, int h, std::uint64_t off, std::size_t n, std::string& out) {
    out.resize(n);
    error_code ec;
    const auto got = fs.read_at(h, off, out.data(), n, ec);
    out.resize(got);
    return !ec;
}

// The header of a file (16 bytes at most read).
file_header_result file_header_of(file_system& fs, int h, std::uint32_t magic, bool& io_error) {
    std::string buf;
    io_error = !read_exact(fs, h, 0, file_header_size, buf);
    return parse_file_header(buf, magic);
}

// A file of a newer format version in `dir`'s store directories: its path, or "".
std::string newer_version_file(file_system& fs, const std::string& dir) {
    error_code ec;
    for (const auto& name : store_dirs(fs, dir, ec)) {
        const auto sub = dir + "/" + name;
        std::vector<std::pair<std::string, std::uint32_t>> files;
        for (auto& [id, seg] : segment_files(fs, sub))
            files.emplace_back(sub + "/" + seg, segment_magic);
        files.emplace_back(sub + "/" + acks_name, acks_magic);
        for (auto& [path, magic] : files) {
            error_code oec;
            file_handle h(&fs, fs.open(path, open_mode::read, oec));
            if (!h)
                continue;
            bool io_error = false;
            if (file_header_of(fs, h.get(), magic, io_error).status == file_header_status::newer)
                return path;
        }
    }
    return {};
}

// The acked ids of a directory's acks.log; `clean`: the file exists with an intact header.
std::unordered_set<std::uint64_t> read_acks(file_system& fs, const std::string& path, bool& clean) {
    std::unordered_set<std::uint64_t> ids;
    clean = false;
    error_code ec;
    file_handle h(&fs, fs.open(path, open_mode::read, ec));
    if (!h)
        return ids;
    const auto size = fs.size(h.get(), ec);
    if (ec)
        return ids;
    std::string buf;
    if (!read_exact(fs, h.get(), 0, static_cast<std::size_t>(size), buf))
        return ids;
    const auto hdr = parse_file_header(buf, acks_magic);
    if (hdr.status != file_header_status::ok)
        return ids;
    clean = (buf.size() - file_header_size) % ack_entry_size == 0;
    const auto list = decode_acks(std::string_view(buf).substr(file_header_size));
    ids.insert(list.begin(), list.end());
    return ids;
}

// What a header-only scan of one segment file found.
struct seg_scan {
    file_header_status header = file_header_status::bad;
    bool io_error = false;
    std::uint64_t size = 0;
    std::optional<std::uint64_t> torn_at;
    std::uint64_t corrupt_bytes = 0;
    std::vector<frame_step> frames;  // complete frames, payload unchecked (header fields only)
};

seg_scan scan_segment(file_system& fs, int h) {
    seg_scan s;
    error_code ec;
    s.size = fs.size(h, ec);
    if (ec) {
        s.io_error = true;
        return s;
    }
    s.header = file_header_of(fs, h, segment_magic, s.io_error).status;
    if (s.io_error || s.header != file_header_status::ok)
        return s;
    const read_fn read = [&](std::uint64_t off, std::size_t n, std::string& out) {
        return read_exact(fs, h, off, n, out);
    };
    std::uint64_t off = file_header_size;
    while (off < s.size) {
        auto step = scan_frame(read, off, s.size);
        if (!step) {
            s.io_error = true;
            break;
        }
        if (step->kind == frame_kind::torn) {
            s.torn_at = off;
            break;
        }
        if (step->kind == frame_kind::garbage) {
            s.corrupt_bytes += step->length;
        } else {
            step->hdr.url.clear();
            step->hdr.headers.clear();
            s.frames.push_back(std::move(*step));
        }
        off += step->length;
    }
    return s;
}

}  // namespace

// ---- the store's state ------------------------------------------------------------------------

struct store::impl {
    struct rec {
        std::uint64_t id = 0;
        std::uint64_t offset = 0;
        std::uint64_t length = 0;  // frame bytes
        std::uint32_t payload_len = 0;
        std::uint32_t events = 0;
        std::uint64_t created_ms = 0;
        bool settled = false;
        bool queued = false;  // waiting for next()
    };
    struct segment {
        std::string path;
        std::uint64_t bytes = 0;  // file size
        std::vector<rec> recs;    // by id
        std::uint64_t unsettled = 0;
        bool sealed = true;
        bool keep = false;  // never removed (not fully read)
    };
    struct dir_state {
        std::string path;
        std::unique_ptr<file_lock> lock;
        std::map<std::uint64_t, segment> segs;  // by first id
        file_handle acks;
        bool acks_dirty = false;
        std::deque<std::uint64_t> queue;  // ids for next(), in order
        std::uint64_t unread = 0;         // records queued for next()
        std::uint64_t unsettled = 0;
        bool keep = false;  // holds something we do not read: never removed
        bool removed = false;
    };

    store_options opts;
    std::shared_ptr<file_system> fsp;
    file_system& fs;
    store_counters& ctr;
    bool& degraded;

    dir_state own;
    std::vector<std::unique_ptr<dir_state>> adopted;  // origin k: adopted[k - 1]
    file_handle active;  // the own directory's segment being appended to
    std::uint64_t active_first = 0;
    bool active_dirty = false;
    bool dir_dirty = false;  // own directory entries not yet synced
    bool dirty = false;
    std::chrono::steady_clock::time_point dirty_since{};
    std::uint64_t next_id = 1;
    std::uint64_t unread_records = 0;
    std::uint64_t unread_events = 0;
    std::uint64_t unread_bytes = 0;
    std::string read_path;  // the segment read_handle reads
    file_handle read_handle;
    std::string frame_buf;

    impl(store_options o, std::shared_ptr<file_system> f, store_counters& c, bool& d)
        : opts(std::move(o)), fsp(std::move(f)), fs(*fsp), ctr(c), degraded(d) {}

    bool syncing() const noexcept { return opts.fsync != fsync_policy::none; }
    bool every_batch() const noexcept { return opts.fsync == fsync_policy::every_batch; }

    void mark_dirty() {
        if (!dirty) {
            dirty = true;
            dirty_since = std::chrono::steady_clock::now();
        }
    }

    void disk_error() { degraded = true; }

    // ---- opening ------------------------------------------------------------------------------

    void validate() {
        const auto& d = opts.dir;
        if (d.empty())
            bad_config("spool.dir must be set (it is empty)");
        error_code ec;
        const auto st = fs.stat(d, ec);
        if (ec)
            bad_config("spool.dir '" + d + "' cannot be read (" + ec.message() + ")");
        if (!st.exists)
            bad_config("spool.dir '" + d + "' does not exist");
        if (!st.is_dir)
            bad_config("spool.dir '" + d + "' is not a directory");
        if (!fs.writable(d))
            bad_config("spool.dir '" + d + "' is not writable");
        if (opts.segment_bytes == 0)
            bad_config("spool.segment_bytes must be at least 1 (it is 0)");
        if (opts.max_bytes < opts.segment_bytes)
            bad_config("spool.max_bytes must be at least spool.segment_bytes (" +
                       std::to_string(opts.segment_bytes) + ") (it is " +
                       std::to_string(opts.max_bytes) + ")");
    }

    void open() {
        validate();
        if (const auto newer = newer_version_file(fs, opts.dir); !newer.empty())
            throw boost::system::system_error(
                make_error_code(error::spool_version),
                "spool.dir '" + opts.dir + "' holds a spool of a newer format version (" + newer +
                    "); this build reads version " + std::to_string(format_version) +
                    " and leaves it untouched");
        error_code ec;
        const auto siblings = store_dirs(fs, opts.dir, ec);
        // The own directory. A name taken, or whose lock another store took first (it adopts
        // what it takes for an orphan), is given up for the next one.
        auto ns = realtime_ns();
        const auto pid = static_cast<std::uint64_t>(::getpid());
        for (int attempt = 0;; ++attempt, ++ns) {
            own.path = opts.dir + "/" + std::to_string(pid) + "-" + std::to_string(ns);
            fs.mkdir(own.path, ec);
            if (ec == boost::system::errc::file_exists && attempt < 100)
                continue;
            if (ec)
                throw boost::system::system_error(
                    ec, "spool.dir '" + opts.dir + "': cannot create " + own.path);
            own.lock = fs.try_lock(own.path + "/" + lock_name, ec);
            if (own.lock)
                break;
            if (ec != boost::system::errc::resource_unavailable_try_again || attempt >= 100) {
                error_code ignored;
                fs.unlink(own.path + "/" + lock_name, ignored);
                fs.rmdir(own.path, ignored);
                throw boost::system::system_error(
                    ec, "spool.dir '" + opts.dir + "': cannot lock " + own.path);
            }
        }
        if (syncing())
            fs.sync_dir(opts.dir, ec);  // failure: the directory may vanish on power loss only
        if (!opts.adopt)
            return;
        for (const auto& name : siblings) {
            const auto path = opts.dir + "/" + name;
            auto lock = fs.try_lock(path + "/" + lock_name, ec);
            if (lock)
                adopt(path, std::move(lock));
        }
    }

    void adopt(const std::string& path, std::unique_ptr<file_lock> lock) {
        auto d = std::make_unique<dir_state>();
        d->path = path;
        d->lock = std::move(lock);
        error_code ec;
        fs.unlink(path + "/" + acks_tmp_name, ec);
        bool acks_clean = false;
        const auto acked = read_acks(fs, path + "/" + acks_name, acks_clean);
        std::uint64_t acked_found = 0;
        for (const auto& [first, name] : segment_files(fs, path)) {
            const auto seg_path = path + "/" + name;
            file_handle h(&fs, fs.open(seg_path, open_mode::read, ec));
            if (!h) {
                d->keep = true;
                continue;
            }
            auto s = scan_segment(fs, h.get());
            h.reset();
            if (s.header == file_header_status::short_file && !s.io_error) {
                fs.unlink(seg_path, ec);  // created, never written: no record
                continue;
            }
            if (s.header == file_header_status::newer || s.io_error) {
                d->keep = true;  // left as it is
                if (s.header != file_header_status::ok)
                    continue;
            }
            if (s.header == file_header_status::bad) {
                quarantine(path, name, seg_path);
                if (fs.stat(seg_path, ec).exists)
                    d->keep = true;
                continue;
            }
            if (s.torn_at && !s.io_error) {
                file_handle w(&fs, fs.open(seg_path, open_mode::append, ec));
                if (w)
                    fs.truncate(w.get(), *s.torn_at, ec);
                if (w && !ec && syncing())
                    fs.sync(w.get(), ec);
                if (!ec)
                    s.size = *s.torn_at;
            }
            ctr.corrupt_bytes += s.corrupt_bytes;
            segment seg;
            seg.path = seg_path;
            seg.bytes = s.size;
            seg.keep = s.io_error;
            for (auto& f : s.frames) {
                rec r;
                r.id = f.hdr.id;
                r.offset = f.offset;
                r.length = f.length;
                r.payload_len = f.hdr.payload_len;
                r.events = f.hdr.event_count;
                r.created_ms = f.hdr.created_ms;
                if (!seg.recs.empty() && seg.recs.back().id >= r.id)
                    continue;  // ids only grow; a repeated id is not read twice
                if (acked.count(r.id) != 0) {
                    r.settled = true;
                    ++acked_found;
                } else {
                    r.queued = true;
                    ++seg.unsettled;
                    ++ctr.recovered_records;
                    ctr.recovered_events += r.events;
                    ++unread_records;
                    unread_events += r.events;
                    unread_bytes += r.payload_len;
                    ++d->unread;
                    d->queue.push_back(r.id);
                }
                seg.recs.push_back(r);
            }
            d->unsettled += seg.unsettled;
            d->segs.emplace(first, std::move(seg));
        }
        auto& dir = *adopted.emplace_back(std::move(d));
        // A stale or damaged acks.log is rewritten with the ids that still matter.
        const bool stale = !acks_clean || acked_found != acked.size();
        if (!collect(dir) && stale)
            rewrite_acks(dir);
        maybe_remove_dir(dir);
    }

    void quarantine(const std::string& dir, const std::string& name, const std::string& path) {
        const auto qdir = opts.dir + "/" + quarantine_name;
        error_code ec;
        fs.mkdir(qdir, ec);
        const auto slash = dir.find_last_of('/');
        char ns[24];
        std::snprintf(ns, sizeof ns, "%020" PRIu64, realtime_ns());
        const auto target = qdir + "/" + ns + "-" + dir.substr(slash + 1) + "-" + name;
        fs.rename(path, target, ec);
        if (ec)
            return;
        ++ctr.segments_quarantined;
        if (syncing()) {
            fs.sync_dir(qdir, ec);
            fs.sync_dir(dir, ec);
        }
        // The cap: the oldest (by the time prefix of their names) go first.
        std::vector<std::pair<std::string, std::uint64_t>> files;
        std::uint64_t total = 0;
        for (auto& e : fs.list(qdir, ec)) {
            if (e.is_dir)
                continue;
            const auto st = fs.stat(qdir + "/" + e.name, ec);
            files.emplace_back(e.name, st.size);
            total += st.size;
        }
        std::sort(files.begin(), files.end());
        for (const auto& [fname, size] : files) {
            if (total <= opts.quarantine_max_bytes)
                break;
            fs.unlink(qdir + "/" + fname, ec);
            if (!ec)
                total -= size;
        }
    }

    // ---- lookup -------------------------------------------------------------------------------

    dir_state* dir_of(std::uint32_t origin) {
        if (origin == 0)
            return &own;
        if (origin > adopted.size())
            return nullptr;
        return adopted[origin - 1].get();
    }

    std::pair<segment*, rec*> find(dir_state& d, std::uint64_t id) {
        auto it = d.segs.upper_bound(id);
        if (it == d.segs.begin())
            return {nullptr, nullptr};
        --it;
        auto& v = it->second.recs;
        auto r = std::lower_bound(v.begin(), v.end(), id,
                                  [](const rec& a, std::uint64_t b) { return a.id < b; });
        if (r == v.end() || r->id != id)
            return {nullptr, nullptr};
        return {&it->second, &*r};
    }

    // ---- acks and removal ---------------------------------------------------------------------

    bool write_all(int h, std::string_view bytes, std::uint64_t& written) {
        written = 0;
        while (written < bytes.size()) {
            error_code ec;
            const auto n = fs.write(h, bytes.data() + written, bytes.size() - written, ec);
            written += n;
            if (ec || n == 0)
                return false;
        }
        return true;
    }

    bool open_acks(dir_state& d) {
        if (d.acks)
            return true;
        error_code ec;
        file_handle h(&fs, fs.open(d.path + "/" + acks_name, open_mode::append, ec));
        if (!h)
            return false;
        const auto size = fs.size(h.get(), ec);
        if (ec)
            return false;
        if (size == 0) {
            std::string hdr;
            encode_file_header(hdr, acks_magic);
            std::uint64_t written = 0;
            if (!write_all(h.get(), hdr, written)) {
                fs.truncate(h.get(), 0, ec);
                return false;
            }
            if (every_batch()) {
                fs.sync(h.get(), ec);
                if (!ec)
                    fs.sync_dir(d.path, ec);
                if (ec) {
                    ++ctr.sync_failures;
                    disk_error();
                }
            } else if (syncing()) {
                d.acks_dirty = true;
                if (&d == &own)
                    dir_dirty = true;
                mark_dirty();
            }
        }
        d.acks = std::move(h);
        return true;
    }

    void append_ack(dir_state& d, std::uint64_t id) {
        if (!open_acks(d)) {
            ++ctr.ack_failures;
            disk_error();
            return;
        }
        std::string entry;
        encode_ack(entry, id);
        error_code ec;
        const auto before = fs.size(d.acks.get(), ec);
        std::uint64_t written = 0;
        if (!write_all(d.acks.get(), entry, written)) {
            ++ctr.ack_failures;
            disk_error();
            if (written > 0 && !ec)
                fs.truncate(d.acks.get(), before, ec);  // else skipped by the reader's resync
            return;
        }
        if (every_batch()) {
            fs.sync(d.acks.get(), ec);
            if (ec) {
                ++ctr.sync_failures;
                disk_error();
            } else {
                ++ctr.syncs;
            }
        } else if (syncing()) {
            d.acks_dirty = true;
            mark_dirty();
        }
    }

    // Rewrites acks.log with the acked ids of the segments that remain. False on failure (the old
    // one stays: its extra ids are harmless).
    bool rewrite_acks(dir_state& d) {
        std::string content;
        encode_file_header(content, acks_magic);
        for (const auto& [first, seg] : d.segs)
            for (const auto& r : seg.recs)
                if (r.settled)
                    encode_ack(content, r.id);
        const auto tmp = d.path + "/" + acks_tmp_name;
        error_code ec;
        {
            file_handle h(&fs, fs.open(tmp, open_mode::create_trunc, ec));
            std::uint64_t written = 0;
            if (!h || !write_all(h.get(), content, written)) {
                h.reset();
                fs.unlink(tmp, ec);
                return false;
            }
            if (syncing()) {
                fs.sync(h.get(), ec);
                if (ec) {
                    ++ctr.sync_failures;
                    h.reset();
                    fs.unlink(tmp, ec);
                    return false;
                }
            }
        }
        fs.rename(tmp, d.path + "/" + acks_name, ec);
        if (ec) {
            fs.unlink(tmp, ec);
            return false;
        }
        d.acks.reset();  // the old file is gone: appends go to the new one
        d.acks_dirty = false;
        if (syncing())
            fs.sync_dir(d.path, ec);
        return true;
    }

    // Removes the sealed segments whose records are all settled. True when acks.log was rewritten.
    bool collect(dir_state& d) {
        std::vector<std::uint64_t> done;
        for (const auto& [first, seg] : d.segs)
            if (seg.sealed && seg.unsettled == 0 && !seg.keep)
                done.push_back(first);
        if (done.empty())
            return false;
        error_code ec;
        if (syncing() && d.acks && d.acks_dirty) {
            fs.sync(d.acks.get(), ec);  // acks durable before the segment goes
            if (ec) {
                ++ctr.sync_failures;
                disk_error();
            } else {
                d.acks_dirty = false;
            }
        }
        bool removed = false;
        for (const auto first : done) {
            auto it = d.segs.find(first);
            if (read_path == it->second.path) {
                read_handle.reset();
                read_path.clear();
            }
            fs.unlink(it->second.path, ec);
            if (ec && ec != boost::system::errc::no_such_file_or_directory)
                continue;  // tried again at the next collection
            if (&d == &own)
                ctr.live_bytes -= std::min(ctr.live_bytes, it->second.bytes);
            d.segs.erase(it);
            removed = true;
        }
        if (!removed)
            return false;
        if (syncing())
            fs.sync_dir(d.path, ec);
        rewrite_acks(d);
        return true;
    }

    void maybe_remove_dir(dir_state& d) {
        if (d.removed || d.keep || !d.segs.empty() || d.unsettled != 0)
            return;
        d.acks.reset();
        error_code ec;
        fs.unlink(d.path + "/" + acks_name, ec);
        fs.unlink(d.path + "/" + acks_tmp_name, ec);
        fs.unlink(d.path + "/" + lock_name, ec);
        fs.rmdir(d.path, ec);
        if (!ec) {
            d.removed = true;
            if (syncing())
                fs.sync_dir(opts.dir, ec);
        }
        d.lock.reset();
    }

    void settle(dir_state& d, segment& seg, rec& r) {
        if (r.settled)
            return;
        r.settled = true;
        if (r.queued) {
            r.queued = false;
            --unread_records;
            unread_events -= r.events;
            unread_bytes -= r.payload_len;
            --d.unread;
        }
        --seg.unsettled;
        --d.unsettled;
        append_ack(d, r.id);
        if (seg.unsettled == 0 && seg.sealed) {
            collect(d);
            if (&d != &own)
                maybe_remove_dir(d);
        }
    }

    // ---- appending ----------------------------------------------------------------------------

    segment* active_segment() {
        if (!active)
            return nullptr;
        auto it = own.segs.find(active_first);
        return it == own.segs.end() ? nullptr : &it->second;
    }

    void seal_active() {
        auto* seg = active_segment();
        if (seg != nullptr) {
            if (syncing() && active_dirty) {
                error_code ec;
                fs.sync(active.get(), ec);
                if (ec) {
                    ++ctr.sync_failures;
                    disk_error();
                }
            }
            seg->sealed = true;
        }
        active.reset();
        active_dirty = false;
        if (seg != nullptr && seg->unsettled == 0)
            collect(own);
    }

    error_code start_segment() {
        const auto first = next_id;
        const auto path = own.path + "/" + seg_name(first);
        error_code ec;
        file_handle h(&fs, fs.open(path, open_mode::create_trunc, ec));
        if (!h)
            return ec;
        std::string hdr;
        encode_file_header(hdr, segment_magic);
        std::uint64_t written = 0;
        if (!write_all(h.get(), hdr, written)) {
            h.reset();
            fs.unlink(path, ec);
            return make_error_code(error::spool_write_failed);
        }
        if (every_batch()) {
            fs.sync(h.get(), ec);
            if (!ec)
                fs.sync_dir(own.path, ec);
            if (ec) {
                ++ctr.sync_failures;
                h.reset();
                fs.unlink(path, ec);
                return make_error_code(error::spool_write_failed);
            }
        } else if (syncing()) {
            dir_dirty = true;
            active_dirty = true;
            mark_dirty();
        }
        segment seg;
        seg.path = path;
        seg.bytes = file_header_size;
        seg.sealed = false;
        own.segs.emplace(first, std::move(seg));
        active = std::move(h);
        active_first = first;
        ctr.live_bytes += file_header_size;
        ctr.live_bytes_peak = std::max(ctr.live_bytes_peak, ctr.live_bytes);
        return {};
    }

    std::pair<error_code, record_ref> append(const record_meta& meta, std::string_view body,
                                             bool read_back) {
        const auto fail = [&](error_code ec) {
            ++ctr.write_failures;
            disk_error();
            return std::pair{ec, record_ref{}};
        };
        const auto frame_len = frame_size(meta, body);
        if (!frame_fits(meta, body) || frame_len + file_header_size > opts.max_bytes) {
            ++ctr.full_refusals;
            return {make_error_code(error::spool_full), {}};
        }
        if (auto* seg = active_segment();
            seg != nullptr && !seg->recs.empty() && seg->bytes + frame_len > opts.segment_bytes)
            seal_active();
        const std::uint64_t extra = active ? 0 : file_header_size;
        if (ctr.live_bytes + extra + frame_len > opts.max_bytes) {
            ++ctr.full_refusals;
            return {make_error_code(error::spool_full), {}};
        }
        if (!active)
            if (const auto ec = start_segment())
                return fail(make_error_code(error::spool_write_failed));
        auto* seg = active_segment();
        const auto id = next_id++;
        frame_buf.clear();
        encode_frame(frame_buf, id, meta, body);
        const auto before = seg->bytes;
        std::uint64_t written = 0;
        error_code ec;
        bool ok = write_all(active.get(), frame_buf, written);
        bool sync_failed = false;
        if (ok && every_batch()) {
            fs.sync(active.get(), ec);
            if (ec) {
                ++ctr.sync_failures;
                ok = false;
                sync_failed = true;
            } else {
                ++ctr.syncs;
            }
        }
        if (!ok) {
            // Cut the partial (or unsynced) frame off again; when that fails, seal the segment:
            // a later reader cuts or skips it.
            bool cut = true;
            if (written > 0) {
                fs.truncate(active.get(), before, ec);
                cut = !ec;
            }
            if (!cut) {
                seg->bytes = before + written;
                ctr.live_bytes += written;
                ctr.live_bytes_peak = std::max(ctr.live_bytes_peak, ctr.live_bytes);
            }
            if (!cut || sync_failed)
                seal_active();
            return fail(make_error_code(error::spool_write_failed));
        }
        rec r;
        r.id = id;
        r.offset = before;
        r.length = frame_len;
        r.payload_len = static_cast<std::uint32_t>(body.size());
        r.events = meta.event_count;
        r.created_ms = meta.created_ms;
        r.queued = read_back;
        seg->recs.push_back(r);
        ++seg->unsettled;
        ++own.unsettled;
        seg->bytes += frame_len;
        ctr.live_bytes += frame_len;
        ctr.live_bytes_peak = std::max(ctr.live_bytes_peak, ctr.live_bytes);
        ++ctr.records_written;
        ctr.events_written += meta.event_count;
        ctr.bytes_written += frame_len;
        if (read_back) {
            own.queue.push_back(id);
            ++own.unread;
            ++unread_records;
            unread_events += meta.event_count;
            unread_bytes += body.size();
        }
        if (opts.fsync == fsync_policy::interval) {
            active_dirty = true;
            mark_dirty();
        }
        degraded = false;
        if (seg->bytes >= opts.segment_bytes)
            seal_active();
        return {{}, record_ref{0, id}};
    }

    // ---- reading ------------------------------------------------------------------------------

    // Reads and checks a record's frame; false when it is unreadable or corrupt.
    bool read_record(segment& seg, const rec& r, record& out) {
        error_code ec;
        if (read_path != seg.path) {
            read_handle = file_handle(&fs, fs.open(seg.path, open_mode::read, ec));
            read_path = read_handle ? seg.path : std::string();
            if (!read_handle)
                return false;
        }
        if (!read_exact(fs, read_handle.get(), r.offset, static_cast<std::size_t>(r.length),
                        frame_buf) ||
            frame_buf.size() != r.length)
            return false;
        auto h = parse_header(frame_buf);
        if (h.status != header_status::ok || h.hdr.id != r.id || h.hdr.frame_len() != r.length)
            return false;
        std::string_view payload;
        if (check_frame(frame_buf, h.hdr, payload) != frame_kind::good)
            return false;
        out.id = r.id;
        out.meta.url = std::move(h.hdr.url);
        out.meta.headers = std::move(h.hdr.headers);
        out.meta.event_count = h.hdr.event_count;
        out.meta.created_ms = h.hdr.created_ms;
        out.body.assign(payload);
        return true;
    }

    std::optional<record> next(std::uint64_t now_ms, std::chrono::milliseconds max_age) {
        for (std::uint32_t origin = 0; origin <= adopted.size(); ++origin) {
            auto& d = *dir_of(origin);
            while (!d.queue.empty()) {
                const auto id = d.queue.front();
                d.queue.pop_front();
                auto [seg, r] = find(d, id);
                if (r == nullptr || !r->queued)
                    continue;
                r->queued = false;
                --unread_records;
                unread_events -= r->events;
                unread_bytes -= r->payload_len;
                --d.unread;
                if (max_age.count() > 0 &&
                    now_ms > r->created_ms + static_cast<std::uint64_t>(max_age.count())) {
                    ++ctr.expired_records;
                    ctr.expired_events += r->events;
                    settle(d, *seg, *r);
                    continue;
                }
                record out;
                if (!read_record(*seg, *r, out)) {
                    ++ctr.corrupt_records;
                    ctr.corrupt_events += r->events;
                    settle(d, *seg, *r);
                    continue;
                }
                out.origin = origin;
                return out;
            }
        }
        return std::nullopt;
    }

    // A record handed out (or appended without read_back) goes back to the queue, in id order.
    void release(record_ref ref) {
        if (ref.origin > adopted.size())
            return;
        auto& d = *dir_of(ref.origin);
        auto [seg, r] = find(d, ref.id);
        if (r == nullptr || r->settled || r->queued)
            return;
        r->queued = true;
        ++d.unread;
        ++unread_records;
        unread_events += r->events;
        unread_bytes += r->payload_len;
        auto it = std::lower_bound(d.queue.begin(), d.queue.end(), ref.id);
        d.queue.insert(it, ref.id);
    }

    // ---- syncing and closing ------------------------------------------------------------------

    void sync() {
        if (!syncing())
            return;
        bool failed = false;
        bool did = false;
        error_code ec;
        if (active && active_dirty) {
            fs.sync(active.get(), ec);
            did = true;
            if (ec)
                failed = true;
            else
                active_dirty = false;
        }
        for (std::uint32_t origin = 0; origin <= adopted.size(); ++origin) {
            auto& d = *dir_of(origin);
            if (d.acks && d.acks_dirty) {
                fs.sync(d.acks.get(), ec);
                did = true;
                if (ec)
                    failed = true;
                else
                    d.acks_dirty = false;
            }
        }
        if (dir_dirty) {
            fs.sync_dir(own.path, ec);
            did = true;
            if (ec)
                failed = true;
            else
                dir_dirty = false;
        }
        if (failed) {
            ++ctr.sync_failures;
            disk_error();
        } else {
            dirty = false;
            if (did)
                ++ctr.syncs;
        }
    }

    void close() noexcept {
        try {
            sync();
            active.reset();
            read_handle.reset();
            if (own.unsettled == 0) {
                for (auto& [first, seg] : own.segs)
                    seg.sealed = true;
                collect(own);
                maybe_remove_dir(own);
            }
            for (auto& d : adopted)
                d->acks.reset();
            adopted.clear();
            own.acks.reset();
            own.lock.reset();
        } catch (...) {
            // Nothing leaves a destructor (an allocation failure at worst).
        }
    }
};

// ---- store ------------------------------------------------------------------------------------

store::store(store_options opts, std::shared_ptr<file_system> fs)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(fs), ctr_, degraded_)) {
    impl_->open();
    path_ = impl_->own.path;
}

store::~store() {
    if (impl_)
        impl_->close();
}

std::pair<boost::system::error_code, record_ref> store::append(const record_meta& meta,
                                                               std::string_view body,
                                                               bool read_back) {
    try {
        return impl_->append(meta, body, read_back);
    } catch (const std::bad_alloc&) {
        ++ctr_.write_failures;
        degraded_ = true;
        return {make_error_code(error::spool_write_failed), {}};
    }
}

std::optional<record> store::next(std::uint64_t now_ms, std::chrono::milliseconds max_age) {
    return impl_->next(now_ms, max_age);
}

std::uint64_t store::unread_records() const noexcept {
    return impl_->unread_records;
}
std::uint64_t store::unread_own_records() const noexcept {
    return impl_->own.unread;
}
std::uint64_t store::unread_adopted_records() const noexcept {
    return impl_->unread_records - impl_->own.unread;
}
void store::release(record_ref r) {
    try {
        impl_->release(r);
    } catch (...) {
        degraded_ = true;  // an allocation failure: the record stays where it was
    }
}
std::uint64_t store::unread_events() const noexcept {
    return impl_->unread_events;
}
std::uint64_t store::unread_bytes() const noexcept {
    return impl_->unread_bytes;
}

void store::ack(record_ref r) {
    auto* d = impl_->dir_of(r.origin);
    if (d == nullptr || d->removed)
        return;
    auto [seg, rec] = impl_->find(*d, r.id);
    if (rec == nullptr || rec->settled)
        return;
    impl_->settle(*d, *seg, *rec);
}

void store::sync_due(std::chrono::steady_clock::time_point now) {
    if (impl_->opts.fsync == fsync_policy::interval && impl_->dirty &&
        now - impl_->dirty_since >= impl_->opts.fsync_interval)
        impl_->sync();
}

void store::sync() {
    impl_->sync();
}

// ---- inspect ----------------------------------------------------------------------------------

spool_report inspect(const std::string& dir, file_system& fs) {
    spool_report rep;
    error_code ec;
    const auto names = store_dirs(fs, dir, ec);
    if (ec)
        throw boost::system::system_error(ec, "spool.dir '" + dir + "' cannot be read");
    if (const auto newer = newer_version_file(fs, dir); !newer.empty()) {
        rep.refused = "spool.dir '" + dir + "' holds a spool of a newer format version (" + newer +
                      "); this build reads version " + std::to_string(format_version);
        return rep;
    }
    std::string buf;
    for (const auto& name : names) {
        dir_report d;
        d.path = dir + "/" + name;
        d.locked = fs.lock_held(d.path + "/" + lock_name);
        bool clean = false;
        const auto acked = read_acks(fs, d.path + "/" + acks_name, clean);
        for (const auto& [first, seg] : segment_files(fs, d.path)) {
            ++d.segments;
            file_handle h(&fs, fs.open(d.path + "/" + seg, open_mode::read, ec));
            if (!h)
                continue;
            const auto s = scan_segment(fs, h.get());
            if (s.header == file_header_status::bad)
                d.corrupt_bytes += s.size;
            d.corrupt_bytes += s.corrupt_bytes;
            for (const auto& f : s.frames) {
                if (acked.count(f.hdr.id) != 0) {
                    ++d.acked_records;
                    continue;
                }
                bool good =
                    read_exact(fs, h.get(), f.offset, static_cast<std::size_t>(f.length), buf) &&
                    buf.size() == f.length;
                if (good) {
                    auto hdr = f.hdr;
                    std::string_view payload;
                    good = check_frame(buf, hdr, payload) == frame_kind::good;
                }
                if (good) {
                    ++d.records;
                    d.events += f.hdr.event_count;
                    d.bytes += f.hdr.payload_len;
                    if (d.oldest_created_ms == 0 || f.hdr.created_ms < d.oldest_created_ms)
                        d.oldest_created_ms = f.hdr.created_ms;
                } else {
                    ++d.corrupt_records;
                    d.corrupt_events += f.hdr.event_count;
                }
            }
        }
        rep.dirs.push_back(std::move(d));
    }
    const auto qdir = dir + "/" + quarantine_name;
    for (const auto& e : fs.list(qdir, ec)) {
        if (e.is_dir)
            continue;
        ++rep.quarantined_files;
        rep.quarantined_bytes += fs.stat(qdir + "/" + e.name, ec).size;
    }
    return rep;
}

}  // namespace evdispatch::detail::spool
