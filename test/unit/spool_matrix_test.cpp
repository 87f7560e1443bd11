// The corruption matrix: a spool damaged in every way a crash or a bad disk can, reopened
// (adopted) by a new store: exact records back, exact counts, never a wrong record or count.

#include "spool/frame.hpp"
#include "spool/store.hpp"
#include "support/faulty_fs.hpp"
#include "unit/spool_test_support.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

using namespace evdispatch::detail::spool;
using namespace evdispatch::test::spool_support;
using evdispatch::test::faulty_file_system;

namespace {

const std::string root = "/spool";
const std::string orphan = "/spool/4242-1000";
const std::string seg1 = orphan + "/seg-00000000000000000001.evs";

struct sample {
    std::string segment;             // the file: header, then the frames
    std::vector<std::uint64_t> off;  // frame offsets
    std::vector<std::uint64_t> len;  // frame lengths
    std::vector<std::uint32_t> events;
    std::vector<std::string> bodies;
};

// Three records in one segment, as a store writes them.
sample make_sample() {
    sample s;
    encode_file_header(s.segment, segment_magic);
    for (std::uint32_t i = 1; i <= 3; ++i) {
        const auto meta = meta_of(10 * i, 1000 + i);
        const auto body = body_of(i, 120);
        s.off.push_back(s.segment.size());
        encode_frame(s.segment, i, meta, body);
        s.len.push_back(s.segment.size() - s.off.back());
        s.events.push_back(10 * i);
        s.bodies.push_back(body);
    }
    return s;
}

struct outcome {
    std::vector<std::string> bodies;  // what next() returned
    store_counters ctr;
    std::uint64_t seg_size_after_open = 0;
};

// A new file system holding an orphan directory with `segment` (and `acks` when given), opened
// by a store that drains it.
outcome reopen(const std::string& segment, const std::string* acks = nullptr) {
    auto fs = std::make_shared<faulty_file_system>();
    error_code ec;
    fs->mkdir(root, ec);
    fs->mkdir(orphan, ec);
    fs->put(seg1, segment);
    if (acks != nullptr)
        fs->put(orphan + "/acks.log", *acks);
    auto o = options(root);
    o.fsync = fsync_policy::none;
    store s(o, fs);
    outcome out;
    out.seg_size_after_open = fs->contents(seg1).size();
    for (auto& r : drain(s))
        out.bodies.push_back(r.body);
    out.ctr = s.counters();
    return out;
}

std::string acks_of(std::initializer_list<std::uint64_t> ids) {
    std::string a;
    encode_file_header(a, acks_magic);
    for (auto id : ids)
        encode_ack(a, id);
    return a;
}

}  // namespace

TEST_CASE("spool matrix: the intact sample comes back whole", "[unit][spool]") {
    const auto s = make_sample();
    const auto r = reopen(s.segment);
    CHECK(r.bodies == s.bodies);
    CHECK(r.ctr.recovered_records == 3);
    CHECK(r.ctr.recovered_events == 60);
    CHECK(r.ctr.corrupt_bytes == 0);
}

TEST_CASE("spool matrix: the last record cut at every byte offset", "[unit][spool]") {
    const auto s = make_sample();
    for (std::uint64_t k = 0; k < s.len[2]; ++k) {
        INFO("cut " << k << " bytes into the last frame");
        const auto r = reopen(s.segment.substr(0, s.off[2] + k));
        CHECK(r.bodies == std::vector<std::string>{s.bodies[0], s.bodies[1]});
        CHECK(r.ctr.recovered_records == 2);
        CHECK(r.ctr.recovered_events == 30);
        CHECK(r.ctr.corrupt_bytes == 0);
        CHECK(r.ctr.corrupt_records == 0);
        CHECK(r.seg_size_after_open == s.off[2]);  // the torn tail was cut
    }
    // Cut inside the file header: an empty segment, removed.
    for (std::uint64_t k = 0; k < file_header_size; ++k) {
        const auto r = reopen(s.segment.substr(0, k));
        CHECK(r.bodies.empty());
        CHECK(r.ctr.segments_quarantined == 0);
    }
}

TEST_CASE("spool matrix: the last record cut at every byte offset, on the real file system",
          "[unit][spool]") {
    const auto s = make_sample();
    temp_dir tmp;
    auto fs = make_posix_file_system();
    auto o = options(tmp.path());
    o.fsync = fsync_policy::none;
    for (std::uint64_t k = 0; k < s.len[2]; ++k) {
        INFO("cut " << k);
        const auto dir = tmp.path() + "/4242-" + std::to_string(1000 + k);
        std::filesystem::create_directory(dir);
        write_file(dir + "/seg-00000000000000000001.evs", s.segment.substr(0, s.off[2] + k));
        store st(o, fs);
        CHECK(std::filesystem::file_size(dir + "/seg-00000000000000000001.evs") == s.off[2]);
        std::vector<std::string> got;
        for (auto& r : drain(st))
            got.push_back(r.body);
        CHECK(got == std::vector<std::string>{s.bodies[0], s.bodies[1]});
        CHECK(st.counters().corrupt_bytes == 0);
        CHECK_FALSE(std::filesystem::exists(dir));
    }
}

TEST_CASE("spool matrix: every byte of a middle record's header flipped", "[unit][spool]") {
    const auto s = make_sample();
    const auto header_len = get_u32(s.segment.data() + s.off[1] + 8);
    for (std::uint64_t i = 0; i < header_len; ++i) {
        for (unsigned char mask : {0x01, 0x80, 0xFF}) {
            auto bytes = s.segment;
            bytes[s.off[1] + i] = static_cast<char>(bytes[s.off[1] + i] ^ mask);
            INFO("byte " << i << " mask " << int(mask));
            const auto r = reopen(bytes);
            // The records around it are intact; its bytes are counted, its events never guessed.
            CHECK(r.bodies == std::vector<std::string>{s.bodies[0], s.bodies[2]});
            CHECK(r.ctr.recovered_records == 2);
            CHECK(r.ctr.recovered_events == 10 + 30);
            CHECK(r.ctr.corrupt_bytes == s.len[1]);
            CHECK(r.ctr.corrupt_records == 0);
            CHECK(r.ctr.corrupt_events == 0);
        }
    }
}

TEST_CASE("spool matrix: every byte of the last record's header flipped", "[unit][spool]") {
    const auto s = make_sample();
    const auto header_len = get_u32(s.segment.data() + s.off[2] + 8);
    for (std::uint64_t i = 0; i < header_len; ++i) {
        auto bytes = s.segment;
        bytes[s.off[2] + i] = static_cast<char>(bytes[s.off[2] + i] ^ 0x01);
        INFO("byte " << i);
        const auto r = reopen(bytes);
        CHECK(r.bodies == std::vector<std::string>{s.bodies[0], s.bodies[1]});
        CHECK(r.ctr.corrupt_events == 0);
        // Counted as skipped bytes; or, when the flip makes header_len point past the end of
        // the file, not distinguishable from a torn write (docs/spool-format.md).
        if (i >= 8 && i < 12)
            CHECK((r.ctr.corrupt_bytes == s.len[2] || r.ctr.corrupt_bytes == 0));
        else
            CHECK(r.ctr.corrupt_bytes == s.len[2]);
    }
}

TEST_CASE("spool matrix: every byte of a payload (and its CRC) flipped: one corrupt record, exact",
          "[unit][spool]") {
    const auto s = make_sample();
    const auto header_len = get_u32(s.segment.data() + s.off[1] + 8);
    for (std::uint64_t i = header_len; i < s.len[1]; ++i) {
        auto bytes = s.segment;
        bytes[s.off[1] + i] = static_cast<char>(bytes[s.off[1] + i] ^ 0x20);
        INFO("byte " << i);
        const auto r = reopen(bytes);
        CHECK(r.bodies == std::vector<std::string>{s.bodies[0], s.bodies[2]});
        CHECK(r.ctr.recovered_records == 3);  // its header is intact: found, then checked
        CHECK(r.ctr.corrupt_records == 1);
        CHECK(r.ctr.corrupt_events == 20);
        CHECK(r.ctr.corrupt_bytes == 0);
    }
}

TEST_CASE("spool matrix: garbage between frames is skipped and counted", "[unit][spool]") {
    const auto s = make_sample();
    for (const std::string& junk : {std::string(1, 'x'), std::string(100, '\0'),
                                    std::string("\xC5\xD1\x5E\x7E") + std::string(60, '\x01')}) {
        auto bytes = s.segment;
        bytes.insert(s.off[1], junk);
        const auto r = reopen(bytes);
        CHECK(r.bodies == s.bodies);
        CHECK(r.ctr.corrupt_bytes == junk.size());
    }
    // Zeros at the end (a filesystem extended the file, the data never came).
    const auto r = reopen(s.segment + std::string(300, '\0'));
    CHECK(r.bodies == s.bodies);
    CHECK(r.ctr.corrupt_bytes == 300);
}

TEST_CASE("spool matrix: acks.log: acked records excluded, stale ids and a torn tail tolerated",
          "[unit][spool]") {
    const auto s = make_sample();
    SECTION("acked records are not replayed; ids of missing records ignored") {
        const auto acks = acks_of({2, 17, 99, 2});
        const auto r = reopen(s.segment, &acks);
        CHECK(r.bodies == std::vector<std::string>{s.bodies[0], s.bodies[2]});
        CHECK(r.ctr.recovered_records == 2);
        CHECK(r.ctr.recovered_events == 40);
    }
    SECTION("a torn last entry: that ack is lost, the record comes back") {
        const auto full = acks_of({1, 3});
        for (std::size_t k = 0; k < ack_entry_size; ++k) {
            const auto acks = full.substr(0, full.size() - ack_entry_size + k);
            const auto r = reopen(s.segment, &acks);
            CHECK(r.bodies == std::vector<std::string>{s.bodies[1], s.bodies[2]});
        }
    }
    SECTION("an acks.log with a damaged header counts as no ack at all") {
        auto acks = acks_of({1});
        acks[0] = 'Z';
        CHECK(reopen(s.segment, &acks).bodies == s.bodies);
    }
    SECTION("every record acked: the directory is removed at once") {
        const auto acks = acks_of({1, 2, 3});
        const auto r = reopen(s.segment, &acks);
        CHECK(r.bodies.empty());
        CHECK(r.ctr.recovered_records == 0);
    }
}

TEST_CASE("spool matrix: a missing middle segment and a stale acks.log", "[unit][spool]") {
    auto fs = std::make_shared<faulty_file_system>();
    error_code ec;
    fs->mkdir(root, ec);
    auto o = options(root);
    o.segment_bytes = 500;  // one record per segment
    o.adopt = false;
    std::string dir;
    {
        store s(o, fs);
        for (std::uint32_t i = 1; i <= 6; ++i)
            REQUIRE_FALSE(s.append(meta_of(i), body_of(i, 200), true).first);
        // Acks for 1 and 2, then their segments vanish behind the store's back.
        auto a = s.next(0, {});
        auto b = s.next(0, {});
        s.ack({0, a->id});
        s.ack({0, b->id});
        dir = s.path();
    }
    const auto files = fs->files_under(dir);
    CHECK(fs->exists(dir + "/seg-00000000000000000003.evs"));
    fs->remove(dir + "/seg-00000000000000000004.evs");  // the middle one
    // A stale acks.log: ids of records whose segments no longer exist.
    std::string stale;
    encode_file_header(stale, acks_magic);
    for (std::uint64_t id : {1ull, 2ull, 3ull})
        encode_ack(stale, id);
    fs->put(dir + "/acks.log", stale);
    o.adopt = true;
    store s(o, fs);
    CHECK(s.counters().recovered_records == 2);  // 5 and 6 (3 is acked)
    std::vector<std::uint64_t> ids;
    for (auto& r : drain(s, false))
        ids.push_back(r.id);
    CHECK(ids == std::vector<std::uint64_t>{5, 6});
    // The stale acks.log was rewritten with the ids that still matter only.
    CHECK_FALSE(fs->exists(dir + "/seg-00000000000000000003.evs"));  // all acked: removed
    const auto acks = fs->contents(dir + "/acks.log");
    CHECK(decode_acks(std::string_view(acks).substr(file_header_size)).empty());
    CHECK(s.unread_records() == 0);
}

TEST_CASE("spool matrix: inspect counts corrupt records, events and bytes, changing nothing",
          "[unit][spool]") {
    const auto s = make_sample();
    auto bytes = s.segment;
    const auto header_len = get_u32(bytes.data() + s.off[1] + 8);
    bytes[s.off[1] + header_len + 10] ^= 0x01;  // record 2's payload
    const std::string junk(37, '#');
    bytes.insert(s.off[2], junk);                       // before record 3
    bytes += s.segment.substr(s.off[2], s.len[2] / 2);  // a torn copy of record 3
    auto fs = std::make_shared<faulty_file_system>();
    error_code ec;
    fs->mkdir(root, ec);
    fs->mkdir(orphan, ec);
    fs->put(seg1, bytes);
    fs->put(orphan + "/acks.log", acks_of({1}));
    const auto rep = inspect(root, *fs);
    REQUIRE(rep.dirs.size() == 1);
    const auto& d = rep.dirs[0];
    CHECK(d.path == orphan);
    CHECK_FALSE(d.locked);
    CHECK(d.segments == 1);
    CHECK(d.records == 1);  // record 3
    CHECK(d.events == 30);
    CHECK(d.bytes == s.bodies[2].size());
    CHECK(d.acked_records == 1);
    CHECK(d.oldest_created_ms == 1003);
    CHECK(d.corrupt_records == 1);
    CHECK(d.corrupt_events == 20);
    CHECK(d.corrupt_bytes == junk.size());
    CHECK(fs->contents(seg1) == bytes);
    CHECK_FALSE(fs->exists(orphan + "/LOCK"));
}
