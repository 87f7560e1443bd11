#include "spool/frame.hpp"

#include "spool/crc32c.hpp"

#include <algorithm>
#include <cstring>

namespace evdispatch::detail::spool {

void put_u16(std::string& out, std::uint16_t v) {
    out.push_back(static_cast<char>(v & 0xFF));
    out.push_back(static_cast<char>(v >> 8));
}
void put_u32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
std::uint16_t get_u16(const char* p) noexcept {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return static_cast<std::uint16_t>(u[0] | u[1] << 8);
}
std::uint32_t get_u32(const char* p) noexcept {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return std::uint32_t{u[0]} | std::uint32_t{u[1]} << 8 | std::uint32_t{u[2]} << 16 |
           std::uint32_t{u[3]} << 24;
}
std::uint64_t get_u64(const char* p) noexcept {
    return std::uint64_t{get_u32(p)} | std::uint64_t{get_u32(p + 4)} << 32;
}

// ---- file header ------------------------------------------------------------------------------

void encode_file_header(std::string& out, std::uint32_t magic, std::uint16_t version) {
    const auto start = out.size();
    put_u32(out, magic);
    put_u16(out, version);
    put_u16(out, 0);
    put_u32(out, 0);
    put_u32(out, crc32c(std::string_view(out).substr(start, 12)));
}

file_header_result parse_file_header(std::string_view bytes, std::uint32_t magic) noexcept {
    if (bytes.size() < file_header_size)
        return {file_header_status::short_file, 0};
    if (get_u32(bytes.data()) != magic || get_u32(bytes.data() + 12) != crc32c(bytes.substr(0, 12)))
        return {file_header_status::bad, 0};
    const auto v = get_u16(bytes.data() + 4);
    if (v == 0)
        return {file_header_status::bad, v};
    if (v > format_version)
        return {file_header_status::newer, v};
    return {file_header_status::ok, v};
}

// ---- frames -----------------------------------------------------------------------------------

namespace {

std::uint64_t meta_len(const record_meta& meta) noexcept {
    std::uint64_t n = 4 + meta.url.size() + 4;
    for (const auto& [k, v] : meta.headers)
        n += 4 + k.size() + 4 + v.size();
    return n;
}

bool is_magic_prefix(std::string_view bytes) noexcept {
    char m[4];
    for (int i = 0; i < 4; ++i)
        m[i] = static_cast<char>((record_magic >> (8 * i)) & 0xFF);
    return bytes.size() < 4 && std::memcmp(bytes.data(), m, bytes.size()) == 0;
}

}  // namespace

bool frame_fits(const record_meta& meta, std::string_view body) noexcept {
    return frame_fixed_size + meta_len(meta) + 4 <= max_header_len &&
           body.size() <= max_payload_len;
}

std::uint64_t frame_size(const record_meta& meta, std::string_view body) noexcept {
    return frame_fixed_size + meta_len(meta) + 4 + 4 + body.size();
}

void encode_frame(std::string& out, std::uint64_t id, const record_meta& meta,
                  std::string_view body) {
    const auto start = out.size();
    const auto header_len = static_cast<std::uint32_t>(frame_fixed_size + meta_len(meta) + 4);
    out.reserve(start + header_len + 4 + body.size());
    put_u32(out, record_magic);
    put_u16(out, format_version);
    put_u16(out, 0);  // flags
    put_u32(out, header_len);
    put_u32(out, static_cast<std::uint32_t>(body.size()));
    put_u32(out, meta.event_count);
    put_u64(out, id);
    put_u64(out, meta.created_ms);
    put_u32(out, static_cast<std::uint32_t>(meta.url.size()));
    out.append(meta.url);
    put_u32(out, static_cast<std::uint32_t>(meta.headers.size()));
    for (const auto& [k, v] : meta.headers) {
        put_u32(out, static_cast<std::uint32_t>(k.size()));
        out.append(k);
        put_u32(out, static_cast<std::uint32_t>(v.size()));
        out.append(v);
    }
    put_u32(out, crc32c(std::string_view(out).substr(start, header_len - 4)));
    put_u32(out, crc32c(body));
    out.append(body);
}

header_result parse_header(std::string_view b) {
    header_result r;
    if (b.size() < 4) {
        if (is_magic_prefix(b)) {
            r.status = header_status::incomplete;
            r.need = min_header_len + 4;
        }
        return r;
    }
    if (get_u32(b.data()) != record_magic)
        return r;
    if (b.size() < 12) {
        r.status = header_status::incomplete;
        r.need = min_header_len + 4;
        return r;
    }
    const auto header_len = get_u32(b.data() + 8);
    if (header_len < min_header_len || header_len > max_header_len)
        return r;
    if (b.size() < std::size_t{header_len} + 4) {
        r.status = header_status::incomplete;
        r.need = std::size_t{header_len} + 4;
        return r;
    }
    if (crc32c(b.substr(0, header_len - 4)) != get_u32(b.data() + header_len - 4))
        return r;
    auto& h = r.hdr;
    h.version = get_u16(b.data() + 4);
    h.flags = get_u16(b.data() + 6);
    h.header_len = header_len;
    h.payload_len = get_u32(b.data() + 12);
    h.event_count = get_u32(b.data() + 16);
    h.id = get_u64(b.data() + 20);
    h.created_ms = get_u64(b.data() + 28);
    if (h.version != format_version || h.payload_len > max_payload_len)
        return r;
    // The meta: length-prefixed strings, exactly filling the header.
    std::size_t pos = frame_fixed_size;
    const std::size_t end = header_len - 4;
    auto str = [&](std::string& s) {
        if (end - pos < 4)
            return false;
        const auto n = get_u32(b.data() + pos);
        pos += 4;
        if (end - pos < n)
            return false;
        s.assign(b.data() + pos, n);
        pos += n;
        return true;
    };
    if (!str(h.url) || end - pos < 4)
        return r;
    const auto count = get_u32(b.data() + pos);
    pos += 4;
    if (count > (end - pos) / 8)
        return r;
    h.headers.resize(count);
    for (auto& [k, v] : h.headers)
        if (!str(k) || !str(v))
            return r;
    if (pos != end)
        return r;
    h.payload_crc = get_u32(b.data() + header_len);
    r.status = header_status::ok;
    return r;
}

namespace {

constexpr std::size_t header_window = 4096;
constexpr std::size_t search_chunk = 64 * 1024;

// The header at `offset`, reading more when the first window is not enough.
std::optional<header_result> header_at(const read_fn& read, std::uint64_t offset,
                                       std::uint64_t size, std::string& buf) {
    const auto avail = size - offset;
    if (!read(offset, static_cast<std::size_t>(std::min<std::uint64_t>(avail, header_window)), buf))
        return std::nullopt;
    auto r = parse_header(buf);
    if (r.status == header_status::incomplete && r.need <= avail && r.need > buf.size()) {
        if (!read(offset, r.need, buf))
            return std::nullopt;
        r = parse_header(buf);
    }
    return r;
}

// The first offset in [from, size) holding an intact header, or the incomplete header (at least
// its length word) of a frame cut at the end of the data. size when none.
std::optional<std::uint64_t> next_header(const read_fn& read, std::uint64_t from,
                                         std::uint64_t size) {
    const char first = static_cast<char>(record_magic & 0xFF);
    std::string chunk;
    std::string hbuf;
    for (std::uint64_t pos = from; pos < size; pos += search_chunk) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(search_chunk, size - pos));
        if (!read(pos, n, chunk))
            return std::nullopt;
        for (std::size_t i = chunk.find(first); i != std::string::npos;
             i = chunk.find(first, i + 1)) {
            const auto at = pos + i;
            if (size - at < 4)
                break;  // a magic prefix at the very end is not a frame to resynchronise on
            if (i + 4 <= chunk.size() && get_u32(chunk.data() + i) != record_magic)
                continue;
            const auto r = header_at(read, at, size, hbuf);
            if (!r)
                return std::nullopt;
            if (r->status == header_status::ok)
                return at;
            if (r->status == header_status::incomplete && hbuf.size() >= 12)
                return at;  // cut at the end: torn, reported at its own offset
        }
    }
    return size;
}

}  // namespace

std::optional<frame_step> scan_frame(const read_fn& read, std::uint64_t offset,
                                     std::uint64_t size) {
    frame_step s;
    s.offset = offset;
    if (offset >= size) {
        s.kind = frame_kind::torn;
        return s;
    }
    std::string buf;
    auto r = header_at(read, offset, size, buf);
    if (!r)
        return std::nullopt;
    if (r->status == header_status::ok) {
        s.hdr = std::move(r->hdr);
        if (offset + s.hdr.frame_len() > size) {
            s.kind = frame_kind::torn;
            s.length = size - offset;
        } else {
            s.kind = frame_kind::good;
            s.length = s.hdr.frame_len();
        }
        return s;
    }
    // No intact header here: resynchronise on the next one.
    const auto next = next_header(read, offset + 1, size);
    if (!next)
        return std::nullopt;
    if (*next < size) {
        s.kind = frame_kind::garbage;
        s.length = *next - offset;
        return s;
    }
    s.kind = r->status == header_status::incomplete ? frame_kind::torn : frame_kind::garbage;
    s.length = size - offset;
    return s;
}

frame_kind check_frame(std::string_view frame, frame_header& hdr, std::string_view& payload) {
    payload = frame.substr(std::size_t{hdr.header_len} + 4, hdr.payload_len);
    return crc32c(payload) == hdr.payload_crc ? frame_kind::good : frame_kind::payload_bad;
}

frame_step decode_frame(std::string_view buf, std::uint64_t offset, std::string_view* payload) {
    const read_fn read = [&](std::uint64_t off, std::size_t n, std::string& out) {
        off -= offset;
        out.assign(buf.substr(static_cast<std::size_t>(off), n));
        return true;
    };
    auto s = *scan_frame(read, offset, offset + buf.size());
    if (s.kind == frame_kind::good) {
        std::string_view p;
        s.kind = check_frame(buf.substr(0, static_cast<std::size_t>(s.length)), s.hdr, p);
        if (payload != nullptr && s.kind == frame_kind::good)
            *payload = p;
    }
    return s;
}

// ---- acks -------------------------------------------------------------------------------------

void encode_ack(std::string& out, std::uint64_t id) {
    const auto start = out.size();
    put_u64(out, id);
    put_u32(out, crc32c(std::string_view(out).substr(start, 8)));
}

std::vector<std::uint64_t> decode_acks(std::string_view body) {
    std::vector<std::uint64_t> ids;
    std::size_t pos = 0;
    while (body.size() - pos >= ack_entry_size) {
        if (crc32c(body.substr(pos, 8)) == get_u32(body.data() + pos + 8)) {
            ids.push_back(get_u64(body.data() + pos));
            pos += ack_entry_size;
        } else {
            ++pos;
        }
    }
    return ids;
}

}  // namespace evdispatch::detail::spool
