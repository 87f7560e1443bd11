#include "core/gzip.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <new>

namespace evdispatch::detail {

namespace {

// Owns a z_stream set up for gzip decoding.
class inflater {
public:
    inflater() {
        // 16 + MAX_WBITS: a gzip header and trailer, no raw deflate and no zlib wrapper.
        ok_ = inflateInit2(&zs_, 16 + MAX_WBITS) == Z_OK;
    }
    ~inflater() {
        if (ok_)
            inflateEnd(&zs_);
    }
    inflater(const inflater&) = delete;
    inflater& operator=(const inflater&) = delete;

    bool ok() const noexcept { return ok_; }
    z_stream& stream() noexcept { return zs_; }

private:
    z_stream zs_{};
    bool ok_ = false;
};

std::string zlib_message(const z_stream& zs, int rc) {
    if (zs.msg != nullptr)
        return zs.msg;
    return "zlib error " + std::to_string(rc);
}

}  // namespace

std::string gzip_compress(std::string_view in, int level) {
    z_stream zs{};
    // 16 + MAX_WBITS: a gzip header and trailer; memLevel 8 is zlib's default.
    if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::bad_alloc();
    std::string out(deflateBound(&zs, static_cast<uLong>(in.size())), '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    // deflateBound is enough for one Z_FINISH call.
    const int rc = deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    if (rc != Z_STREAM_END)
        throw std::bad_alloc();
    return out;
}

gunzip_status gunzip(std::string_view in, std::size_t max_out, std::string& out,
                     std::string& error) {
    out.clear();
    inflater inf;
    if (!inf.ok()) {
        error = "gzip: cannot start the decoder";
        return gunzip_status::invalid;
    }
    z_stream& zs = inf.stream();
    // zlib counts in uInt: feed at most UINT_MAX bytes at a time (bodies are far smaller).
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(std::min<std::size_t>(in.size(), UINT_MAX));
    if (in.empty()) {
        error = "gzip: empty body";
        return gunzip_status::invalid;
    }
    // Grow the output as it comes, up to one byte past the cap (which tells "too large").
    std::size_t produced = 0;
    for (;;) {
        if (produced == out.size()) {
            if (out.size() > max_out)
                return gunzip_status::too_large;
            const std::size_t grow = std::max<std::size_t>(16 * 1024, out.size());
            out.resize(std::min(out.size() + grow, max_out + 1));
        }
        zs.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
        zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, UINT_MAX));
        const uInt before = zs.avail_out;
        const int rc = inflate(&zs, Z_NO_FLUSH);
        produced += before - zs.avail_out;
        if (produced > max_out) {
            out.resize(max_out);
            return gunzip_status::too_large;
        }
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            // Another gzip member follows (RFC 1952 allows several).
            if (inflateReset(&zs) != Z_OK) {
                error = "gzip: " + zlib_message(zs, Z_STREAM_ERROR);
                return gunzip_status::invalid;
            }
            continue;
        }
        if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
            error = "gzip: the body ends before the gzip stream does";
            return gunzip_status::invalid;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            error = "gzip: " + zlib_message(zs, rc);
            return gunzip_status::invalid;
        }
    }
    out.resize(produced);
    return gunzip_status::ok;
}

}  // namespace evdispatch::detail
