#pragma once

// Random version-4 uuids from a per-thread generator: no shared state, no locks, so producer
// threads build events without contending. The public random_uuid/append_random_uuid
// (event_builder.hpp) are made here too.

#include <cstddef>

namespace evdispatch::detail {

/// Length of a uuid in text: 8-4-4-4-12 hex digits and 4 hyphens.
inline constexpr std::size_t uuid_chars = 36;

/// Writes a random v4 uuid (lowercase hex, hyphenated, variant 10) into `out[0..36)`.
void write_random_uuid(char* out) noexcept;

}  // namespace evdispatch::detail
