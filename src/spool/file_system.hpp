#pragma once

// The spool's file-system seam: every byte the spool reads or writes goes through a
// file_system, so tests substitute one that injects faults (short writes, ENOSPC, EIO on
// fdatasync, failing rename/unlink) and crashes (bytes not yet synced are lost).
//
// Errors are reported through boost::system::error_code (errno values in system_category);
// no function of a file_system throws.

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace evdispatch::detail::spool {

using boost::system::error_code;

/// How a file is opened.
enum class open_mode {
    read,          ///< Existing file, read only.
    append,        ///< Created when missing, written at its end.
    create_trunc,  ///< Created when missing, emptied, written at its end.
};

/// A held lock; released when destroyed.
class file_lock {
public:
    virtual ~file_lock() = default;
};

struct dir_entry {
    std::string name;
    bool is_dir = false;
};

struct file_status {
    bool exists = false;
    bool is_dir = false;
    std::uint64_t size = 0;
};

class file_system {
public:
    virtual ~file_system() = default;

    /// Opens `path`; returns a handle (>= 0), or -1 with `ec` set.
    virtual int open(const std::string& path, open_mode mode, error_code& ec) = 0;
    virtual void close(int h) noexcept = 0;
    /// Writes at the end of the file; returns the bytes written (possibly fewer than `n`).
    virtual std::size_t write(int h, const char* data, std::size_t n, error_code& ec) = 0;
    /// Reads up to `n` bytes at `offset`; fewer at the end of the file.
    virtual std::size_t read_at(int h, std::uint64_t offset, char* out, std::size_t n,
                                error_code& ec) = 0;
    /// fdatasync.
    virtual void sync(int h, error_code& ec) = 0;
    virtual std::uint64_t size(int h, error_code& ec) = 0;
    virtual void truncate(int h, std::uint64_t size, error_code& ec) = 0;

    virtual void rename(const std::string& from, const std::string& to, error_code& ec) = 0;
    virtual void unlink(const std::string& path, error_code& ec) = 0;
    virtual void mkdir(const std::string& path, error_code& ec) = 0;
    virtual void rmdir(const std::string& path, error_code& ec) = 0;
    /// fsync of a directory: its entries (created, renamed, removed names) become durable.
    virtual void sync_dir(const std::string& path, error_code& ec) = 0;
    /// The entries of a directory, without "." and "..", in no particular order.
    virtual std::vector<dir_entry> list(const std::string& path, error_code& ec) = 0;
    /// exists == false (and no error) when nothing is at `path`.
    virtual file_status stat(const std::string& path, error_code& ec) = 0;
    /// Whether this process may create files in the directory `path`.
    virtual bool writable(const std::string& path) = 0;

    /// Takes an exclusive, non-blocking lock on the file `path` (created when missing).
    /// nullptr with `ec` == errc::resource_unavailable_try_again (EWOULDBLOCK) when someone
    /// holds it, or another error.
    virtual std::unique_ptr<file_lock> try_lock(const std::string& path, error_code& ec) = 0;
    /// Whether someone holds the lock on the existing file `path` now (false when it does not
    /// exist). Creates nothing and takes nothing that a try_lock would notice for longer than
    /// the probe itself.
    virtual bool lock_held(const std::string& path) = 0;
};

/// A handle that closes its file when destroyed.
class file_handle {
public:
    file_handle() = default;
    file_handle(file_system* fs, int h) noexcept : fs_(h >= 0 ? fs : nullptr), h_(h) {}
    file_handle(file_handle&& o) noexcept : fs_(std::exchange(o.fs_, nullptr)), h_(o.h_) {}
    file_handle& operator=(file_handle&& o) noexcept {
        if (this != &o) {
            reset();
            fs_ = std::exchange(o.fs_, nullptr);
            h_ = o.h_;
        }
        return *this;
    }
    file_handle(const file_handle&) = delete;
    file_handle& operator=(const file_handle&) = delete;
    ~file_handle() { reset(); }

    void reset() noexcept {
        if (fs_ != nullptr)
            fs_->close(h_);
        fs_ = nullptr;
        h_ = -1;
    }
    explicit operator bool() const noexcept { return fs_ != nullptr; }
    int get() const noexcept { return h_; }

private:
    file_system* fs_ = nullptr;
    int h_ = -1;
};

/// The real one: open/write/pread/fdatasync/flock, O_CLOEXEC.
std::shared_ptr<file_system> make_posix_file_system();

}  // namespace evdispatch::detail::spool
