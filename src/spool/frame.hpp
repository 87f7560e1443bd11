#pragma once

// The spool's on-disk encoding (docs/spool-format.md): file headers, record frames and ack
// entries, all little-endian whatever the host. Pure functions over bytes; the classification of
// a frame works through a reader so the store scans files without loading them.

#include "spool/store.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace evdispatch::detail::spool {

inline constexpr std::uint16_t format_version = 1;
/// File magics, as the first four bytes of the file: "EVSG" (segment), "EVAK" (acks.log).
inline constexpr std::uint32_t segment_magic = 0x47535645;
inline constexpr std::uint32_t acks_magic = 0x4B415645;
inline constexpr std::size_t file_header_size = 16;
/// Record magic: bytes C5 D1 5E 7E (not ASCII, so rarely inside a JSON body).
inline constexpr std::uint32_t record_magic = 0x7E5ED1C5;
/// Bytes of a frame header before the url: magic, version, flags, header_len, payload_len,
/// event_count, record_id, created_ms.
inline constexpr std::size_t frame_fixed_size = 36;
/// The smallest header: fixed part, url length, header count, header CRC.
inline constexpr std::uint32_t min_header_len = frame_fixed_size + 4 + 4 + 4;
inline constexpr std::uint32_t max_header_len = 1u << 20;
inline constexpr std::uint32_t max_payload_len = 1u << 30;
inline constexpr std::size_t ack_entry_size = 12;

// ---- little-endian words ----------------------------------------------------------------------
void put_u16(std::string& out, std::uint16_t v);
void put_u32(std::string& out, std::uint32_t v);
void put_u64(std::string& out, std::uint64_t v);
std::uint16_t get_u16(const char* p) noexcept;
std::uint32_t get_u32(const char* p) noexcept;
std::uint64_t get_u64(const char* p) noexcept;

// ---- file header: magic u32 | version u16 | flags u16 | reserved u32 | crc32c(bytes 0-11) u32
void encode_file_header(std::string& out, std::uint32_t magic,
                        std::uint16_t version = format_version);
enum class file_header_status {
    ok,
    short_file,  ///< Fewer than 16 bytes (a file whose creation was cut short).
    bad,         ///< Wrong magic or CRC.
    newer,       ///< Intact, of a version above format_version.
};
struct file_header_result {
    file_header_status status = file_header_status::bad;
    std::uint16_t version = 0;
};
file_header_result parse_file_header(std::string_view bytes, std::uint32_t magic) noexcept;

// ---- record frames ----------------------------------------------------------------------------
struct frame_header {
    std::uint16_t version = 0;
    std::uint16_t flags = 0;
    std::uint32_t header_len = 0;  ///< Bytes from the magic through the header CRC.
    std::uint32_t payload_len = 0;
    std::uint32_t event_count = 0;
    std::uint64_t id = 0;
    std::uint64_t created_ms = 0;
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::uint32_t payload_crc = 0;
    /// header_len + payload CRC + payload.
    std::uint64_t frame_len() const noexcept { return std::uint64_t{header_len} + 4 + payload_len; }
};

/// Appends the frame of a record to `out`. The caller checks the sizes (frame_fits).
void encode_frame(std::string& out, std::uint64_t id, const record_meta& meta,
                  std::string_view body);
/// Whether meta and body fit the frame's limits (header and payload lengths).
bool frame_fits(const record_meta& meta, std::string_view body) noexcept;
/// The frame length encode_frame produces.
std::uint64_t frame_size(const record_meta& meta, std::string_view body) noexcept;

enum class header_status { ok, incomplete, bad };
struct header_result {
    header_status status = header_status::bad;
    std::size_t need = 0;  ///< incomplete: the bytes needed to decide.
    frame_header hdr;
};
/// Parses a frame header (and the payload CRC after it) at the start of `bytes`.
header_result parse_header(std::string_view bytes);

enum class frame_kind {
    good,         ///< A complete frame, header and (when checked) payload intact.
    payload_bad,  ///< Header intact (its event count exact), payload CRC wrong.
    torn,         ///< Incomplete at the end of the data (cut write): `length` bytes to the end.
    garbage,      ///< No intact header here: `length` bytes skipped to the next intact one.
};
struct frame_step {
    frame_kind kind = frame_kind::torn;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    frame_header hdr;  ///< good, payload_bad
};

/// Reads up to `n` bytes at `offset` into `out` (fewer at the end); false on an I/O error.
using read_fn = std::function<bool(std::uint64_t offset, std::size_t n, std::string& out)>;

/// Classifies the bytes at `offset` of data `size` bytes long by their header only (the payload
/// is not read: `good` means the header is intact and the frame complete). nullopt on a read
/// error. Garbage ends at the next offset holding an intact header (or the incomplete header of a
/// frame cut at the end); torn is reported only when no intact header follows.
std::optional<frame_step> scan_frame(const read_fn& read, std::uint64_t offset, std::uint64_t size);

/// Classifies the frame at the start of `buf` (the data from file offset `offset` to its end),
/// payload CRC included; `payload` receives the body of a good frame.
frame_step decode_frame(std::string_view buf, std::uint64_t offset,
                        std::string_view* payload = nullptr);

/// Checks a complete frame's bytes (as scan_frame found them): good or payload_bad.
frame_kind check_frame(std::string_view frame, frame_header& hdr, std::string_view& payload);

// ---- acks.log entries: record id u64 | crc32c(the 8 id bytes) u32 ------------------------------
void encode_ack(std::string& out, std::uint64_t id);
/// The ids of the intact entries of an acks.log body (after the file header). An entry whose
/// CRC fails is skipped by resynchronising one byte further; a torn last entry is ignored.
std::vector<std::uint64_t> decode_acks(std::string_view body);

}  // namespace evdispatch::detail::spool
