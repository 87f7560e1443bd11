// The spool's encoding: CRC32C, record frames, file headers and acks.log entries.

#include "spool/crc32c.hpp"
#include "spool/frame.hpp"
#include "unit/spool_test_support.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace evdispatch::detail::spool;
using namespace evdispatch::test::spool_support;

TEST_CASE("spool: crc32c of the known vectors", "[unit][spool]") {
    CHECK(crc32c("") == 0u);
    CHECK(crc32c("123456789") == 0xE3069283u);
    CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
    CHECK(crc32c(std::string(32, '\xFF')) == 0x62A8AB43u);
    std::string inc, dec;
    for (int i = 0; i < 32; ++i) {
        inc.push_back(static_cast<char>(i));
        dec.push_back(static_cast<char>(31 - i));
    }
    CHECK(crc32c(inc) == 0x46DD794Eu);
    CHECK(crc32c(dec) == 0x113FDB5Cu);
    // Extending in pieces (any split, through the 8-byte path and the tail) gives the same.
    const std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
        const auto a = crc32c_extend(0, text.data(), cut);
        CHECK(crc32c_extend(a, text.data() + cut, text.size() - cut) == crc32c(text));
    }
}

TEST_CASE("spool: little-endian words whatever the host", "[unit][spool]") {
    std::string b;
    put_u16(b, 0x0102);
    put_u32(b, 0x03040506);
    put_u64(b, 0x0708090A0B0C0D0Eull);
    CHECK(b == std::string("\x02\x01\x06\x05\x04\x03\x0E\x0D\x0C\x0B\x0A\x09\x08\x07", 14));
    CHECK(get_u16(b.data()) == 0x0102);
    CHECK(get_u32(b.data() + 2) == 0x03040506u);
    CHECK(get_u64(b.data() + 6) == 0x0708090A0B0C0D0Eull);
}

TEST_CASE("spool: a frame round trip, byte layout", "[unit][spool]") {
    const auto meta = meta_of(7, 1234567);
    const auto body = body_of(3, 300);
    std::string buf;
    encode_frame(buf, 42, meta, body);
    REQUIRE(buf.size() == frame_size(meta, body));
    CHECK(get_u32(buf.data()) == record_magic);
    CHECK(static_cast<unsigned char>(buf[0]) == 0xC5);
    CHECK(get_u16(buf.data() + 4) == format_version);
    CHECK(get_u32(buf.data() + 12) == body.size());
    CHECK(get_u32(buf.data() + 16) == 7u);
    CHECK(get_u64(buf.data() + 20) == 42u);
    CHECK(get_u64(buf.data() + 28) == 1234567u);
    const auto header_len = get_u32(buf.data() + 8);
    CHECK(get_u32(buf.data() + header_len - 4) ==
          crc32c(std::string_view(buf).substr(0, header_len - 4)));
    CHECK(get_u32(buf.data() + header_len) == crc32c(body));
    CHECK(buf.substr(header_len + 4) == body);

    std::string_view payload;
    const auto s = decode_frame(buf, 100, &payload);
    REQUIRE(s.kind == frame_kind::good);
    CHECK(s.offset == 100);
    CHECK(s.length == buf.size());
    CHECK(s.hdr.id == 42);
    CHECK(s.hdr.event_count == 7);
    CHECK(s.hdr.created_ms == 1234567);
    CHECK(s.hdr.url == meta.url);
    CHECK(s.hdr.headers == meta.headers);
    CHECK(payload == body);

    SECTION("empty meta and body") {
        std::string b2;
        encode_frame(b2, 1, record_meta{}, "");
        CHECK(b2.size() == min_header_len + 4);
        const auto s2 = decode_frame(b2, 0);
        CHECK(s2.kind == frame_kind::good);
        CHECK(s2.hdr.payload_len == 0);
    }
}

TEST_CASE("spool: every truncation of a frame is torn, never a record", "[unit][spool]") {
    std::string buf;
    encode_frame(buf, 9, meta_of(5), body_of(1, 200));
    for (std::size_t k = 0; k < buf.size(); ++k) {
        const auto s = decode_frame(std::string_view(buf).substr(0, k), 0);
        INFO("cut at " << k);
        CHECK(s.kind == frame_kind::torn);
        CHECK(s.length == k);
    }
    // After a good frame: the good one first, then the torn rest.
    std::string two;
    encode_frame(two, 1, meta_of(1), body_of(1));
    const auto first = two.size();
    two += buf;
    for (std::size_t k = first; k < two.size(); ++k) {
        const auto s = decode_frame(std::string_view(two).substr(0, k), 0);
        CHECK(s.kind == frame_kind::good);
        CHECK(s.length == first);
        const auto rest = decode_frame(std::string_view(two).substr(first, k - first), first);
        CHECK(rest.kind == frame_kind::torn);
    }
}

TEST_CASE("spool: a flipped byte makes a frame garbage or payload_bad, never another record",
          "[unit][spool]") {
    std::string a, b;
    encode_frame(a, 1, meta_of(3), body_of(1, 150));
    encode_frame(b, 2, meta_of(4), body_of(2, 150));
    const auto header_len = get_u32(a.data() + 8);
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto buf = a + b;
        buf[i] = static_cast<char>(buf[i] ^ 0x5A);
        const auto s = decode_frame(buf, 0);
        INFO("byte " << i);
        if (i < header_len) {
            // No intact header: skipped to the next one, exactly.
            CHECK(s.kind == frame_kind::garbage);
            CHECK(s.length == a.size());
            const auto next = decode_frame(std::string_view(buf).substr(a.size()), a.size());
            CHECK(next.kind == frame_kind::good);
            CHECK(next.hdr.id == 2);
        } else {
            // The header holds: the event count is exact.
            CHECK(s.kind == frame_kind::payload_bad);
            CHECK(s.hdr.event_count == 3);
            CHECK(s.length == a.size());
        }
    }
}

TEST_CASE("spool: garbage before a frame is skipped and counted", "[unit][spool]") {
    std::string frame;
    encode_frame(frame, 5, meta_of(2), body_of(5));
    const std::string junk = std::string("\xC5\xD1\x5E\x7E", 4) + "not a frame at all";
    const auto s = decode_frame(junk + frame, 0);
    CHECK(s.kind == frame_kind::garbage);
    CHECK(s.length == junk.size());
    // Garbage to the end: all of it.
    const auto g = decode_frame(std::string(50, 'x'), 0);
    CHECK(g.kind == frame_kind::garbage);
    CHECK(g.length == 50);
    // Zeros (a filesystem's hole) are garbage too.
    CHECK(decode_frame(std::string(20, '\0'), 0).kind == frame_kind::garbage);
}

TEST_CASE("spool: file headers: version, magic, short files", "[unit][spool]") {
    std::string h;
    encode_file_header(h, segment_magic);
    REQUIRE(h.size() == file_header_size);
    CHECK(h.substr(0, 4) == "EVSG");
    CHECK(parse_file_header(h, segment_magic).status == file_header_status::ok);
    CHECK(parse_file_header(h, acks_magic).status == file_header_status::bad);
    CHECK(parse_file_header(h.substr(0, 15), segment_magic).status ==
          file_header_status::short_file);
    auto flipped = h;
    flipped[9] ^= 1;
    CHECK(parse_file_header(flipped, segment_magic).status == file_header_status::bad);
    std::string newer;
    encode_file_header(newer, segment_magic, format_version + 1);
    const auto r = parse_file_header(newer, segment_magic);
    CHECK(r.status == file_header_status::newer);
    CHECK(r.version == format_version + 1);
}

TEST_CASE("spool: acks.log entries: torn tail ignored, a bad entry skipped", "[unit][spool]") {
    std::string body;
    for (std::uint64_t id : {1ull, 2ull, 3ull, 1000000000000ull})
        encode_ack(body, id);
    CHECK(decode_acks(body) == std::vector<std::uint64_t>{1, 2, 3, 1000000000000ull});
    for (std::size_t k = 0; k < ack_entry_size; ++k)
        CHECK(decode_acks(body.substr(0, 3 * ack_entry_size + k)) ==
              std::vector<std::uint64_t>{1, 2, 3});
    auto bad = body;
    bad[ack_entry_size + 3] ^= 0x10;  // entry 2
    CHECK(decode_acks(bad) == std::vector<std::uint64_t>{1, 3, 1000000000000ull});
    // A partial entry in the middle (a cut write, then more appends): resynchronised.
    const auto partial = body.substr(0, 12) + body.substr(12, 5) + body.substr(24);
    CHECK(decode_acks(partial) == std::vector<std::uint64_t>{1, 3, 1000000000000ull});
}
