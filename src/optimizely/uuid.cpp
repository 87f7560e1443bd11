#include "optimizely/uuid.hpp"

#include <evdispatch/optimizely/event_builder.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

namespace evdispatch {

namespace {

// xoshiro256** seeded per thread from std::random_device: no shared state, no locks.
struct uuid_rng {
    std::uint64_t s[4];
    uuid_rng() {
        std::random_device rd;
        for (auto& v : s)
            v = (std::uint64_t{rd()} << 32) ^ rd();
        if ((s[0] | s[1] | s[2] | s[3]) == 0)
            s[0] = 0x9E3779B97F4A7C15ull;
    }
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t next() {
        const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
        const std::uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
    }
};

thread_local uuid_rng tl_rng;

constexpr std::array<char, 512> make_hex_pairs() {
    constexpr char hex[] = "0123456789abcdef";
    std::array<char, 512> t{};
    for (std::size_t i = 0; i < 256; ++i) {
        t[2 * i] = hex[i >> 4];
        t[2 * i + 1] = hex[i & 0xF];
    }
    return t;
}
constexpr auto hex_pairs = make_hex_pairs();

void put_hex64(char* p, std::uint64_t w) noexcept {
    for (int i = 0; i < 8; ++i)
        std::memcpy(p + 2 * i, &hex_pairs[2 * ((w >> (56 - 8 * i)) & 0xFF)], 2);
}

}  // namespace

// 36 chars: 8-4-4-4-12 lowercase hex, version 4, variant 10.
void detail::write_random_uuid(char* buf) noexcept {
    std::uint64_t hi = tl_rng.next();
    std::uint64_t lo = tl_rng.next();
    hi = (hi & 0xFFFFFFFFFFFF0FFFull) | 0x0000000000004000ull;  // version 4
    lo = (lo & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // variant 10
    char h[32];
    put_hex64(h, hi);
    put_hex64(h + 16, lo);
    std::memcpy(buf, h, 8);
    buf[8] = '-';
    std::memcpy(buf + 9, h + 8, 4);
    buf[13] = '-';
    std::memcpy(buf + 14, h + 12, 4);
    buf[18] = '-';
    std::memcpy(buf + 19, h + 16, 4);
    buf[23] = '-';
    std::memcpy(buf + 24, h + 20, 12);
}

void append_random_uuid(std::string& out) {
    char buf[detail::uuid_chars];
    detail::write_random_uuid(buf);
    out.append(buf, detail::uuid_chars);
}

std::string random_uuid() {
    std::string s;
    s.reserve(detail::uuid_chars);
    append_random_uuid(s);
    return s;
}

}  // namespace evdispatch
