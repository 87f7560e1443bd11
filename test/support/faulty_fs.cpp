#include "support/faulty_fs.hpp"

#include <algorithm>
#include <cerrno>
#include <random>

namespace evdispatch::test {

using detail::spool::dir_entry;
using detail::spool::error_code;
using detail::spool::file_status;
using detail::spool::open_mode;

namespace {

error_code errno_code(int e) {
    return {e, boost::system::system_category()};
}

}  // namespace

class faulty_file_system::lock final : public detail::spool::file_lock {
public:
    lock(faulty_file_system* fs, std::weak_ptr<bool> alive, std::string path, std::uint64_t id)
        : fs_(fs), alive_(std::move(alive)), path_(std::move(path)), id_(id) {}
    ~lock() override {
        if (alive_.lock())
            fs_->release(path_, id_);
    }

private:
    faulty_file_system* fs_;
    std::weak_ptr<bool> alive_;
    std::string path_;
    std::uint64_t id_;
};

faulty_file_system::faulty_file_system() {
    live_["/"] = node{true, nullptr};
    durable_["/"] = node{true, nullptr};
}

faulty_file_system::~faulty_file_system() = default;

// ---- faults -----------------------------------------------------------------------------------

void faulty_file_system::fail(op o, int err, int count, std::string path_part) {
    faults_.push_back({o, err, count, std::move(path_part)});
}

void faulty_file_system::short_write(std::size_t keep, int err) {
    short_keep_ = keep;
    short_err_ = err;
}

void faulty_file_system::set_space(std::optional<std::uint64_t> bytes) {
    space_ = bytes;
}

void faulty_file_system::clear_faults() {
    faults_.clear();
    short_keep_.reset();
    pending_err_ = 0;
    space_.reset();
}

void faulty_file_system::set_read_only(const std::string& dir, bool read_only) {
    if (read_only)
        read_only_.insert(dir);
    else
        read_only_.erase(dir);
}

void faulty_file_system::hold_lock(const std::string& path, bool held) {
    if (held) {
        held_.insert(path);
        if (live_.count(path) == 0 && live_.count(parent(path)) != 0) {
            live_[path] = node{false, std::make_shared<file_data>()};
            durable_[path] = live_[path];
        }
    } else {
        held_.erase(path);
    }
}

bool faulty_file_system::injected(op o, const std::string& path, error_code& ec) {
    ++calls_[o];
    if (down_) {
        ec = errno_code(EIO);
        return true;
    }
    for (auto it = faults_.begin(); it != faults_.end(); ++it) {
        if (it->o != o || (!it->path_part.empty() && path.find(it->path_part) == std::string::npos))
            continue;
        ec = errno_code(it->err);
        if (it->count > 0 && --it->count == 0)
            faults_.erase(it);
        return true;
    }
    ec.clear();
    return false;
}

// ---- crashes ----------------------------------------------------------------------------------

void faulty_file_system::lose(bool entries, bool partial, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    handles_.clear();
    locks_.clear();
    std::map<std::string, node> next;
    const auto& source = entries ? durable_ : live_;
    for (const auto& [path, n] : source)  // sorted: a parent comes before its children
        if (path == "/" || next.count(parent(path)) != 0)
            next[path] = n;
    std::set<file_data*> seen;
    for (auto& [path, n] : next) {
        if (n.dir || !seen.insert(n.file.get()).second)
            continue;
        auto& f = *n.file;
        if (partial && f.data.size() > f.durable.size() &&
            f.data.compare(0, f.durable.size(), f.durable) == 0) {
            const auto extra = f.data.size() - f.durable.size();
            f.durable = f.data.substr(0, f.durable.size() + rng() % (extra + 1));
        }
        f.data = f.durable;
    }
    live_ = next;
    durable_ = next;
    down_ = true;
}

void faulty_file_system::crash() {
    lose(dir_durability_, false, 0);
}

void faulty_file_system::crash_partial(std::uint64_t seed) {
    lose(false, true, seed);
}

void faulty_file_system::kill() {
    handles_.clear();
    locks_.clear();
    down_ = true;
}

void faulty_file_system::reboot() {
    down_ = false;
}

// ---- looking ----------------------------------------------------------------------------------

bool faulty_file_system::exists(const std::string& path) const {
    return live_.count(path) != 0;
}

bool faulty_file_system::is_dir(const std::string& path) const {
    auto it = live_.find(path);
    return it != live_.end() && it->second.dir;
}

std::string faulty_file_system::contents(const std::string& path) const {
    auto it = live_.find(path);
    return it == live_.end() || it->second.dir ? std::string() : it->second.file->data;
}

void faulty_file_system::put(const std::string& path, const std::string& data) {
    auto& n = live_[path];
    if (!n.file)
        n.file = std::make_shared<file_data>();
    n.dir = false;
    n.file->data = data;
    n.file->durable = data;
    durable_[path] = n;
}

void faulty_file_system::remove(const std::string& path) {
    live_.erase(path);
    durable_.erase(path);
}

std::vector<std::string> faulty_file_system::files_under(const std::string& dir) const {
    std::vector<std::string> out;
    for (const auto& [path, n] : live_)
        if (!n.dir && path.rfind(dir + "/", 0) == 0)
            out.push_back(path);
    return out;
}

std::vector<std::string> faulty_file_system::dirs_under(const std::string& dir) const {
    std::vector<std::string> out;
    for (const auto& [path, n] : live_)
        if (n.dir && path.rfind(dir + "/", 0) == 0)
            out.push_back(path);
    return out;
}

int faulty_file_system::calls(op o) const {
    auto it = calls_.find(o);
    return it == calls_.end() ? 0 : it->second;
}

std::string faulty_file_system::parent(const std::string& path) {
    const auto slash = path.find_last_of('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// ---- file_system ------------------------------------------------------------------------------

int faulty_file_system::open(const std::string& path, open_mode mode, error_code& ec) {
    if (injected(op::open, path, ec))
        return -1;
    auto it = live_.find(path);
    if (mode == open_mode::read) {
        if (it == live_.end()) {
            ec = errno_code(ENOENT);
            return -1;
        }
    } else if (it == live_.end()) {
        auto p = live_.find(parent(path));
        if (p == live_.end() || !p->second.dir) {
            ec = errno_code(ENOENT);
            return -1;
        }
        it = live_.emplace(path, node{false, std::make_shared<file_data>()}).first;
    }
    if (it->second.dir) {
        ec = errno_code(EISDIR);
        return -1;
    }
    if (mode == open_mode::create_trunc)
        it->second.file->data.clear();
    const int h = next_handle_++;
    handles_[h] = handle{it->second.file, mode != open_mode::read, path};
    return h;
}

void faulty_file_system::close(int h) noexcept {
    handles_.erase(h);
}

faulty_file_system::handle* faulty_file_system::get(int h, error_code& ec) {
    auto it = handles_.find(h);
    if (it == handles_.end()) {
        ec = errno_code(down_ ? EIO : EBADF);
        return nullptr;
    }
    return &it->second;
}

std::size_t faulty_file_system::write(int h, const char* data, std::size_t n, error_code& ec) {
    auto* f = get(h, ec);
    if (f == nullptr || injected(op::write, f->path, ec))
        return 0;
    if (!f->writable) {
        ec = errno_code(EBADF);
        return 0;
    }
    if (pending_err_ != 0) {
        ec = errno_code(std::exchange(pending_err_, 0));
        return 0;
    }
    std::size_t k = n;
    if (short_keep_) {
        k = std::min(k, *short_keep_);
        short_keep_.reset();
        pending_err_ = short_err_;
    }
    if (space_) {
        if (*space_ == 0 && k > 0) {
            ec = errno_code(ENOSPC);
            return 0;
        }
        k = static_cast<std::size_t>(std::min<std::uint64_t>(k, *space_));
        *space_ -= k;
    }
    f->file->data.append(data, k);
    return k;
}

std::size_t faulty_file_system::read_at(int h, std::uint64_t offset, char* out, std::size_t n,
                                        error_code& ec) {
    auto* f = get(h, ec);
    if (f == nullptr || injected(op::read, f->path, ec))
        return 0;
    const auto& d = f->file->data;
    if (offset >= d.size())
        return 0;
    const auto k = std::min<std::size_t>(n, d.size() - static_cast<std::size_t>(offset));
    std::copy_n(d.data() + offset, k, out);
    return k;
}

void faulty_file_system::sync(int h, error_code& ec) {
    auto* f = get(h, ec);
    if (f == nullptr || injected(op::sync, f->path, ec))
        return;
    f->file->durable = f->file->data;
}

std::uint64_t faulty_file_system::size(int h, error_code& ec) {
    auto* f = get(h, ec);
    if (f == nullptr || injected(op::size, f->path, ec))
        return 0;
    return f->file->data.size();
}

void faulty_file_system::truncate(int h, std::uint64_t size, error_code& ec) {
    auto* f = get(h, ec);
    if (f == nullptr || injected(op::truncate, f->path, ec))
        return;
    if (!f->writable) {
        ec = errno_code(EBADF);
        return;
    }
    f->file->data.resize(static_cast<std::size_t>(size));
}

void faulty_file_system::rename(const std::string& from, const std::string& to, error_code& ec) {
    if (injected(op::rename, from, ec))
        return;
    auto it = live_.find(from);
    auto p = live_.find(parent(to));
    if (it == live_.end() || p == live_.end()) {
        ec = errno_code(ENOENT);
        return;
    }
    if (it->second.dir) {
        ec = errno_code(EISDIR);  // not needed by the spool
        return;
    }
    auto t = live_.find(to);
    if (t != live_.end() && t->second.dir) {
        ec = errno_code(EISDIR);
        return;
    }
    live_[to] = it->second;
    live_.erase(from);
    if (!dir_durability_) {
        durable_[to] = live_[to];
        durable_.erase(from);
    }
}

void faulty_file_system::unlink(const std::string& path, error_code& ec) {
    if (injected(op::unlink, path, ec))
        return;
    auto it = live_.find(path);
    if (it == live_.end()) {
        ec = errno_code(ENOENT);
        return;
    }
    if (it->second.dir) {
        ec = errno_code(EISDIR);
        return;
    }
    live_.erase(it);
    if (!dir_durability_)
        durable_.erase(path);
}

void faulty_file_system::mkdir(const std::string& path, error_code& ec) {
    if (injected(op::mkdir, path, ec))
        return;
    if (live_.count(path) != 0) {
        ec = errno_code(EEXIST);
        return;
    }
    auto p = live_.find(parent(path));
    if (p == live_.end() || !p->second.dir) {
        ec = errno_code(ENOENT);
        return;
    }
    live_[path] = node{true, nullptr};
    if (!dir_durability_)
        durable_[path] = live_[path];
}

void faulty_file_system::rmdir(const std::string& path, error_code& ec) {
    if (injected(op::rmdir, path, ec))
        return;
    auto it = live_.find(path);
    if (it == live_.end()) {
        ec = errno_code(ENOENT);
        return;
    }
    if (!it->second.dir) {
        ec = errno_code(ENOTDIR);
        return;
    }
    auto child = live_.upper_bound(path + "/");
    if (child != live_.end() && child->first.rfind(path + "/", 0) == 0) {
        ec = errno_code(ENOTEMPTY);
        return;
    }
    live_.erase(it);
    if (!dir_durability_)
        durable_.erase(path);
}

void faulty_file_system::sync_dir(const std::string& path, error_code& ec) {
    if (injected(op::sync_dir, path, ec))
        return;
    auto it = live_.find(path);
    if (it == live_.end() || !it->second.dir) {
        ec = errno_code(ENOENT);
        return;
    }
    std::set<std::string> names;
    for (const auto* m : {&live_, &durable_})
        for (const auto& [p, n] : *m)
            if (p != "/" && parent(p) == path)
                names.insert(p);
    for (const auto& p : names) {
        auto l = live_.find(p);
        if (l == live_.end())
            durable_.erase(p);
        else
            durable_[p] = l->second;
    }
}

std::vector<dir_entry> faulty_file_system::list(const std::string& path, error_code& ec) {
    std::vector<dir_entry> out;
    if (injected(op::list, path, ec))
        return out;
    auto it = live_.find(path);
    if (it == live_.end()) {
        ec = errno_code(ENOENT);
        return out;
    }
    if (!it->second.dir) {
        ec = errno_code(ENOTDIR);
        return out;
    }
    const auto prefix = path == "/" ? std::string("/") : path + "/";
    for (auto c = live_.upper_bound(prefix); c != live_.end() && c->first.rfind(prefix, 0) == 0;
         ++c) {
        const auto name = c->first.substr(prefix.size());
        if (name.find('/') == std::string::npos)
            out.push_back({name, c->second.dir});
    }
    return out;
}

file_status faulty_file_system::stat(const std::string& path, error_code& ec) {
    ec.clear();
    if (down_) {
        ec = errno_code(EIO);
        return {};
    }
    auto it = live_.find(path);
    if (it == live_.end())
        return {};
    return {true, it->second.dir, it->second.dir ? 0 : it->second.file->data.size()};
}

bool faulty_file_system::writable(const std::string& path) {
    return !down_ && is_dir(path) && read_only_.count(path) == 0;
}

std::unique_ptr<detail::spool::file_lock> faulty_file_system::try_lock(const std::string& path,
                                                                       error_code& ec) {
    if (injected(op::lock, path, ec))
        return nullptr;
    if (live_.count(path) == 0) {
        auto p = live_.find(parent(path));
        if (p == live_.end() || !p->second.dir) {
            ec = errno_code(ENOENT);
            return nullptr;
        }
        live_[path] = node{false, std::make_shared<file_data>()};
    }
    if (held_.count(path) != 0 || locks_.count(path) != 0) {
        ec = errno_code(EWOULDBLOCK);
        return nullptr;
    }
    const auto id = next_lock_++;
    locks_[path] = id;
    return std::make_unique<lock>(this, alive_, path, id);
}

bool faulty_file_system::lock_held(const std::string& path) {
    return live_.count(path) != 0 && (held_.count(path) != 0 || locks_.count(path) != 0);
}

void faulty_file_system::release(const std::string& path, std::uint64_t id) {
    auto it = locks_.find(path);
    if (it != locks_.end() && it->second == id)
        locks_.erase(it);
}

}  // namespace evdispatch::test
