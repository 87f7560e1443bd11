#pragma once

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), in software (slice-by-8).

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace evdispatch::detail::spool {

/// Continues a CRC32C: crc32c_extend(crc32c_extend(0, a), b) == crc32c(a + b).
std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t n) noexcept;

inline std::uint32_t crc32c(std::string_view bytes) noexcept {
    return crc32c_extend(0, bytes.data(), bytes.size());
}

}  // namespace evdispatch::detail::spool
