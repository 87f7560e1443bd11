#pragma once

// An in-memory spool::file_system for tests, with injectable faults (failing calls, short
// writes, a disk that fills up), a crash that loses what was not synced, and locks "held by
// another process".

#include "spool/file_system.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace evdispatch::test {

class faulty_file_system final : public detail::spool::file_system {
public:
    enum class op {
        open,
        write,
        read,
        sync,
        size,
        truncate,
        rename,
        unlink,
        mkdir,
        rmdir,
        sync_dir,
        list,
        lock
    };

    /// Holds "/" only.
    faulty_file_system();
    ~faulty_file_system() override;

    // ---- faults -------------------------------------------------------------------------------
    /// The next `count` calls of `o` (on a path containing `path_part`, when given) fail with
    /// errno `err`; count -1: every call until clear_faults().
    void fail(op o, int err = 5 /* EIO */, int count = 1, std::string path_part = {});
    /// The next write writes only its first `keep` bytes (and reports that); the write after it
    /// fails with `err`.
    void short_write(std::size_t keep, int err = 5 /* EIO */);
    /// Bytes that can still be written (all files together); a write past them is cut at the
    /// limit, the next one fails with ENOSPC. nullopt: no limit.
    void set_space(std::optional<std::uint64_t> bytes);
    void clear_faults();
    /// A directory where writable() says no.
    void set_read_only(const std::string& dir, bool read_only = true);
    /// The lock of `path` (a LOCK file) held by another process: try_lock fails, lock_held says
    /// yes (the file is created when missing).
    void hold_lock(const std::string& path, bool held = true);
    /// Whether the directory entries need sync_dir to survive a crash (default true).
    void set_dir_durability(bool on) { dir_durability_ = on; }

    // ---- crashes ------------------------------------------------------------------------------
    /// Power loss: every byte not fdatasync'd and every entry not synced (when dir durability is
    /// on) is lost, open files and locks are gone, and every call fails (EIO) until reboot().
    void crash();
    /// Like crash(), but each file keeps a random part (a prefix) of its unsynced appended bytes,
    /// and the directory entries survive: writeback cut in the middle.
    void crash_partial(std::uint64_t seed);
    /// A killed process: nothing is lost (the page cache survives); files and locks are gone,
    /// every call fails until reboot().
    void kill();
    void reboot();
    bool down() const noexcept { return down_; }

    // ---- looking and meddling (no faults apply) ------------------------------------------------
    bool exists(const std::string& path) const;
    bool is_dir(const std::string& path) const;
    std::string contents(const std::string& path) const;
    /// Replaces a file's contents, durable at once (the parent directory must exist).
    void put(const std::string& path, const std::string& data);
    void remove(const std::string& path);
    /// The files (not directories) under `dir`, recursively, sorted.
    std::vector<std::string> files_under(const std::string& dir) const;
    std::vector<std::string> dirs_under(const std::string& dir) const;
    int calls(op o) const;
    std::size_t open_files() const noexcept { return handles_.size(); }

    // ---- file_system ---------------------------------------------------------------------------
    int open(const std::string& path, detail::spool::open_mode mode,
             detail::spool::error_code& ec) override;
    void close(int h) noexcept override;
    std::size_t write(int h, const char* data, std::size_t n,
                      detail::spool::error_code& ec) override;
    std::size_t read_at(int h, std::uint64_t offset, char* out, std::size_t n,
                        detail::spool::error_code& ec) override;
    void sync(int h, detail::spool::error_code& ec) override;
    std::uint64_t size(int h, detail::spool::error_code& ec) override;
    void truncate(int h, std::uint64_t size, detail::spool::error_code& ec) override;
    void rename(const std::string& from, const std::string& to,
                detail::spool::error_code& ec) override;
    void unlink(const std::string& path, detail::spool::error_code& ec) override;
    void mkdir(const std::string& path, detail::spool::error_code& ec) override;
    void rmdir(const std::string& path, detail::spool::error_code& ec) override;
    void sync_dir(const std::string& path, detail::spool::error_code& ec) override;
    std::vector<detail::spool::dir_entry> list(const std::string& path,
                                               detail::spool::error_code& ec) override;
    detail::spool::file_status stat(const std::string& path,
                                    detail::spool::error_code& ec) override;
    bool writable(const std::string& path) override;
    std::unique_ptr<detail::spool::file_lock> try_lock(const std::string& path,
                                                       detail::spool::error_code& ec) override;
    bool lock_held(const std::string& path) override;

private:
    struct file_data {
        std::string data;
        std::string durable;
    };
    struct node {
        bool dir = false;
        std::shared_ptr<file_data> file;
    };
    struct handle {
        std::shared_ptr<file_data> file;
        bool writable = false;
        std::string path;
    };
    struct fault {
        op o;
        int err;
        int count;
        std::string path_part;
    };
    class lock;

    bool injected(op o, const std::string& path, detail::spool::error_code& ec);
    handle* get(int h, detail::spool::error_code& ec);
    static std::string parent(const std::string& path);
    void lose(bool entries, bool partial, std::uint64_t seed);
    void release(const std::string& path, std::uint64_t id);

    std::map<std::string, node> live_;
    std::map<std::string, node> durable_;  // entries as of their directory's last sync
    std::map<int, handle> handles_;
    int next_handle_ = 3;
    std::vector<fault> faults_;
    std::optional<std::size_t> short_keep_;
    int short_err_ = 0;
    int pending_err_ = 0;
    std::optional<std::uint64_t> space_;
    std::set<std::string> read_only_;
    std::set<std::string> held_;
    std::map<std::string, std::uint64_t> locks_;
    std::uint64_t next_lock_ = 1;
    std::map<op, int> calls_;
    bool dir_durability_ = true;
    bool down_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace evdispatch::test
