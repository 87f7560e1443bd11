#include "spool/file_system.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace evdispatch::detail::spool {

namespace {

error_code last_error() {
    return {errno, boost::system::system_category()};
}

class posix_lock final : public file_lock {
public:
    explicit posix_lock(int fd) : fd_(fd) {}
    ~posix_lock() override { ::close(fd_); }  // closing the description releases the flock

private:
    int fd_;
};

class posix_file_system final : public file_system {
public:
    int open(const std::string& path, open_mode mode, error_code& ec) override {
        int flags = O_CLOEXEC;
        switch (mode) {
            case open_mode::read:
                flags |= O_RDONLY;
                break;
            case open_mode::append:
                flags |= O_WRONLY | O_CREAT | O_APPEND;
                break;
            case open_mode::create_trunc:
                flags |= O_WRONLY | O_CREAT | O_TRUNC | O_APPEND;
                break;
        }
        int fd;
        do {
            fd = ::open(path.c_str(), flags, 0644);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0)
            ec = last_error();
        else
            ec.clear();
        return fd;
    }

    void close(int h) noexcept override { ::close(h); }

    std::size_t write(int h, const char* data, std::size_t n, error_code& ec) override {
        ec.clear();
        for (;;) {
            const auto r = ::write(h, data, n);
            if (r >= 0)
                return static_cast<std::size_t>(r);
            if (errno != EINTR) {
                ec = last_error();
                return 0;
            }
        }
    }

    std::size_t read_at(int h, std::uint64_t offset, char* out, std::size_t n,
                        error_code& ec) override {
        ec.clear();
        std::size_t done = 0;
        while (done < n) {
            const auto r = ::pread(h, out + done, n - done, static_cast<off_t>(offset + done));
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                ec = last_error();
                break;
            }
            if (r == 0)
                break;
            done += static_cast<std::size_t>(r);
        }
        return done;
    }

    void sync(int h, error_code& ec) override {
        if (::fdatasync(h) != 0)
            ec = last_error();
        else
            ec.clear();
    }

    std::uint64_t size(int h, error_code& ec) override {
        struct stat st {};
        if (::fstat(h, &st) != 0) {
            ec = last_error();
            return 0;
        }
        ec.clear();
        return static_cast<std::uint64_t>(st.st_size);
    }

    void truncate(int h, std::uint64_t size, error_code& ec) override {
        if (::ftruncate(h, static_cast<off_t>(size)) != 0)
            ec = last_error();
        else
            ec.clear();
    }

    void rename(const std::string& from, const std::string& to, error_code& ec) override {
        if (::rename(from.c_str(), to.c_str()) != 0)
            ec = last_error();
        else
            ec.clear();
    }

    void unlink(const std::string& path, error_code& ec) override {
        if (::unlink(path.c_str()) != 0)
            ec = last_error();
        else
            ec.clear();
    }

    void mkdir(const std::string& path, error_code& ec) override {
        if (::mkdir(path.c_str(), 0755) != 0)
            ec = last_error();
        else
            ec.clear();
    }

    void rmdir(const std::string& path, error_code& ec) override {
        if (::rmdir(path.c_str()) != 0)
            ec = last_error();
        else
            ec.clear();
    }

    void sync_dir(const std::string& path, error_code& ec) override {
        const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            ec = last_error();
            return;
        }
        if (::fsync(fd) != 0)
            ec = last_error();
        else
            ec.clear();
        ::close(fd);
    }

    std::vector<dir_entry> list(const std::string& path, error_code& ec) override {
        std::vector<dir_entry> out;
        DIR* d = ::opendir(path.c_str());
        if (d == nullptr) {
            ec = last_error();
            return out;
        }
        ec.clear();
        while (const dirent* e = ::readdir(d)) {
            const std::string name = e->d_name;
            if (name == "." || name == "..")
                continue;
            bool is_dir = e->d_type == DT_DIR;
            if (e->d_type == DT_UNKNOWN) {
                struct stat st {};
                is_dir = ::stat((path + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
            }
            out.push_back({name, is_dir});
        }
        ::closedir(d);
        return out;
    }

    file_status stat(const std::string& path, error_code& ec) override {
        struct stat st {};
        ec.clear();
        if (::stat(path.c_str(), &st) != 0) {
            if (errno != ENOENT && errno != ENOTDIR)
                ec = last_error();
            return {};
        }
        return {true, S_ISDIR(st.st_mode), static_cast<std::uint64_t>(st.st_size)};
    }

    bool writable(const std::string& path) override {
        return ::access(path.c_str(), W_OK | X_OK) == 0;
    }

    std::unique_ptr<file_lock> try_lock(const std::string& path, error_code& ec) override {
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            ec = last_error();
            return nullptr;
        }
        int r;
        do {
            r = ::flock(fd, LOCK_EX | LOCK_NB);
        } while (r != 0 && errno == EINTR);
        if (r != 0) {
            ec = last_error();
            ::close(fd);
            return nullptr;
        }
        ec.clear();
        return std::make_unique<posix_lock>(fd);
    }

    bool lock_held(const std::string& path) override {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return false;
        // A shared lock conflicts with a holder's exclusive one only; released at once.
        const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        ::close(fd);
        return held;
    }
};

}  // namespace

std::shared_ptr<file_system> make_posix_file_system() {
    return std::make_shared<posix_file_system>();
}

}  // namespace evdispatch::detail::spool
