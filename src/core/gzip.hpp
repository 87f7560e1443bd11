#pragma once

// gzip (RFC 1952): compressing sealed batches (http_config::compression) and decoding request
// bodies sent with `Content-Encoding: gzip` (collector, relay) with a bound on the decoded
// size. zlib does the work.

#include <cstddef>
#include <string>
#include <string_view>

namespace evdispatch::detail {

// `in` as one gzip member at `level` (1 fastest .. 9 smallest).
std::string gzip_compress(std::string_view in, int level);

enum class gunzip_status {
    ok,         // `out` holds the decoded bytes
    too_large,  // decoding would pass `max_out` bytes (a decompression bomb stops here)
    invalid,    // not gzip, corrupt, or cut short; `error` says which
};

// Decodes `in` (one gzip member or several, one after the other) into `out`, stopping as soon
// as more than `max_out` bytes would come out.
gunzip_status gunzip(std::string_view in, std::size_t max_out, std::string& out,
                     std::string& error);

}  // namespace evdispatch::detail
