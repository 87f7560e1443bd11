#pragma once

// The collector's de-duplication set: event uuids stored as 128-bit keys in an open-addressing
// table (linear probing, 16 bytes per slot). A canonical 36-character uuid is parsed into its
// 128 bits; any other string is hashed to 128 bits with two unrelated 64-bit hashes, so a
// collision needs both to collide. Not thread-safe: the collector guards it with a mutex.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace evdispatch::detail {

/// 128 bits standing for one event uuid. {0, 0} is the nil uuid (kept outside the table).
struct uuid_key {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    friend bool operator==(const uuid_key&, const uuid_key&) = default;
};

namespace uuid_detail {

inline int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// murmur3's 64-bit finaliser.
inline std::uint64_t fmix64(std::uint64_t k) noexcept {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

// FNV-1a, byte at a time, then finalised.
inline std::uint64_t hash_a(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    return fmix64(h);
}

// Word at a time multiply-rotate with a different seed; unrelated to hash_a.
inline std::uint64_t hash_b(std::string_view s) noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ (s.size() * 0x87c37b91114253d5ULL);
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        h = std::rotl((h ^ w) * 0x4cf5ad432745937fULL, 31);
    }
    std::uint64_t tail = 0;
    if (i < s.size())
        std::memcpy(&tail, s.data() + i, s.size() - i);
    h = std::rotl((h ^ tail) * 0x4cf5ad432745937fULL, 29);
    return fmix64(h);
}

}  // namespace uuid_detail

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex, either case) into its 128 bits;
/// returns false for anything else.
inline bool parse_canonical_uuid(std::string_view s, uuid_key& out) noexcept {
    if (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
        return false;
    std::uint64_t words[2] = {0, 0};
    int nibbles = 0;
    for (std::size_t i = 0; i < 36; ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            continue;
        int v = uuid_detail::hex_value(s[i]);
        if (v < 0)
            return false;
        std::uint64_t& w = words[nibbles / 16];
        w = (w << 4) | static_cast<std::uint64_t>(v);
        ++nibbles;
    }
    out = {words[0], words[1]};
    return true;
}

/// The key of an event uuid: its bits when canonical, else a 128-bit hash of the string.
inline uuid_key make_uuid_key(std::string_view s) noexcept {
    uuid_key k;
    if (parse_canonical_uuid(s, k))
        return k;
    return {uuid_detail::hash_a(s), uuid_detail::hash_b(s)};
}

/// Open-addressing set of uuid keys. Slot {0,0} means empty; the nil key has a flag of its own.
/// Grows (doubling) before the load factor exceeds 5/8.
class uuid_set {
public:
    /// `initial_slots` is rounded up to a power of two (at least 16).
    explicit uuid_set(std::size_t initial_slots = 1024) {
        std::size_t n = 16;
        while (n < initial_slots)
            n *= 2;
        allocate(n);
    }

    /// Inserts `k`; true if it was not there before.
    bool insert(uuid_key k) {
        if (k == uuid_key{}) {
            if (has_nil_)
                return false;
            has_nil_ = true;
            ++size_;
            return true;
        }
        if ((used_ + 1) * 8 > capacity() * 5)
            grow();
        std::size_t i = slot_of(k);
        for (;;) {
            uuid_key& s = slots_[i];
            if (s == k)
                return false;
            if (s == uuid_key{}) {
                s = k;
                ++used_;
                ++size_;
                return true;
            }
            i = (i + 1) & mask_;
        }
    }

    bool contains(uuid_key k) const noexcept {
        if (k == uuid_key{})
            return has_nil_;
        std::size_t i = slot_of(k);
        for (;;) {
            const uuid_key& s = slots_[i];
            if (s == k)
                return true;
            if (s == uuid_key{})
                return false;
            i = (i + 1) & mask_;
        }
    }

    /// Distinct keys stored.
    std::size_t size() const noexcept { return size_; }
    /// Slots in the table (a power of two).
    std::size_t capacity() const noexcept { return mask_ + 1; }

private:
    // Fibonacci hashing on the top bits: spreads sequential uuids as well as random ones.
    std::size_t slot_of(uuid_key k) const noexcept {
        std::uint64_t h = (k.hi ^ std::rotl(k.lo, 32)) * 0x9e3779b97f4a7c15ULL;
        return static_cast<std::size_t>(h >> shift_);
    }

    void allocate(std::size_t n) {
        slots_ = std::make_unique<uuid_key[]>(n);  // value-initialised: all empty
        mask_ = n - 1;
        shift_ = 64 - std::countr_zero(static_cast<std::uint64_t>(n));
    }

    void grow() {
        std::unique_ptr<uuid_key[]> old = std::move(slots_);
        std::size_t old_n = capacity();
        allocate(old_n * 2);
        for (std::size_t j = 0; j < old_n; ++j) {
            uuid_key k = old[j];
            if (k == uuid_key{})
                continue;
            std::size_t i = slot_of(k);
            while (!(slots_[i] == uuid_key{}))
                i = (i + 1) & mask_;
            slots_[i] = k;
        }
    }

    std::unique_ptr<uuid_key[]> slots_;
    std::size_t mask_ = 0;
    int shift_ = 64;
    std::size_t used_ = 0;  // occupied slots (excludes the nil flag)
    std::size_t size_ = 0;
    bool has_nil_ = false;
};

}  // namespace evdispatch::detail
