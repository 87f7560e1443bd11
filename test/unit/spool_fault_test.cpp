// The spool store against disk faults and crashes, through the in-memory faulty_file_system:
// short writes, a full disk, failing fdatasync, rename and unlink, power loss and kill -9.

#include "spool/frame.hpp"
#include "spool/store.hpp"
#include "support/faulty_fs.hpp"
#include "unit/spool_test_support.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <cerrno>
#include <memory>
#include <set>
#include <string>

using namespace evdispatch;
using namespace evdispatch::detail::spool;
using namespace evdispatch::test::spool_support;
using evdispatch::test::faulty_file_system;
using fop = faulty_file_system::op;

namespace {

const std::string root = "/spool";

std::shared_ptr<faulty_file_system> make_fs() {
    auto fs = std::make_shared<faulty_file_system>();
    error_code ec;
    fs->mkdir(root, ec);
    fs->sync_dir("/", ec);
    return fs;
}

store_options fopts(fsync_policy p = fsync_policy::every_batch) {
    auto o = options(root);
    o.fsync = p;
    return o;
}

// The bodies a new store recovers (and acknowledges) after a crash; the counters in `out`.
std::vector<std::string> recover(const std::shared_ptr<faulty_file_system>& fs,
                                 store_counters* out = nullptr) {
    fs->reboot();
    store s(fopts(), fs);
    std::vector<std::string> bodies;
    for (auto& r : drain(s))
        bodies.push_back(r.body);
    if (out != nullptr)
        *out = s.counters();
    return bodies;
}

}  // namespace

TEST_CASE("spool: a short write fails the append and leaves no partial frame", "[unit][spool]") {
    auto fs = make_fs();
    auto s = std::make_unique<store>(fopts(), fs);
    REQUIRE_FALSE(s->append(meta_of(1), body_of(1), true).first);
    REQUIRE_FALSE(s->append(meta_of(2), body_of(2), true).first);
    const auto before = fs->contents(s->path() + "/seg-00000000000000000001.evs");

    SECTION("the cut succeeds: the segment goes on") {
        fs->short_write(30);
        CHECK(s->append(meta_of(3), body_of(3), true).first ==
              make_error_code(error::spool_write_failed));
        CHECK(s->degraded());
        CHECK(s->counters().write_failures == 1);
        CHECK(fs->contents(s->path() + "/seg-00000000000000000001.evs") == before);
        auto [ec, ref] = s->append(meta_of(4), body_of(4), true);
        REQUIRE_FALSE(ec);
        CHECK(ref.id == 4);  // the failed append used id 3
        CHECK_FALSE(s->degraded());
        CHECK(fs->files_under(s->path()).size() == 2);  // LOCK, one segment (no acks.log yet)
    }
    SECTION("the cut fails too: the segment is sealed, the next append starts another") {
        fs->short_write(30);
        fs->fail(fop::truncate);
        CHECK(s->append(meta_of(3), body_of(3), true).first ==
              make_error_code(error::spool_write_failed));
        CHECK(fs->contents(s->path() + "/seg-00000000000000000001.evs").size() ==
              before.size() + 30);
        REQUIRE_FALSE(s->append(meta_of(4), body_of(4), true).first);
        CHECK(fs->exists(s->path() + "/seg-00000000000000000004.evs"));
    }
    // Whatever happened, a crash and a reopen give the whole records only.
    fs->crash();
    s.reset();
    store_counters c;
    const auto got = recover(fs, &c);
    CHECK(got == std::vector<std::string>{body_of(1), body_of(2), body_of(4)});
    CHECK(c.corrupt_bytes == 0);
    CHECK(c.corrupt_records == 0);
    CHECK(c.recovered_events == 1 + 2 + 4);
}

TEST_CASE("spool: a full disk degrades the store, counted; appends succeed once space returns",
          "[unit][spool]") {
    auto fs = make_fs();
    store s(fopts(), fs);
    REQUIRE_FALSE(s.append(meta_of(1), body_of(1), true).first);
    fs->set_space(500);
    int ok = 0, failed = 0;
    for (int i = 0; i < 10; ++i) {
        const auto ec = s.append(meta_of(1), body_of(10 + i, 200), true).first;
        if (ec) {
            CHECK(ec == make_error_code(error::spool_write_failed));
            ++failed;
        } else {
            ++ok;
        }
    }
    CHECK(ok == 1);  // ~290 bytes per frame: one fits, the second is cut at the limit
    CHECK(failed == 9);
    CHECK(s.degraded());
    CHECK(s.counters().write_failures == 9);
    CHECK(s.counters().records_written == 2);
    fs->set_space(std::nullopt);
    REQUIRE_FALSE(s.append(meta_of(1), body_of(99), true).first);
    CHECK_FALSE(s.degraded());
    const auto recs = drain(s);
    REQUIRE(recs.size() == 3);
    CHECK(recs[0].body == body_of(1));
    CHECK(recs[1].body == body_of(10, 200));
    CHECK(recs[2].body == body_of(99));
    // The live bytes are the file's size: the cut frame is not counted.
    CHECK(s.counters().live_bytes ==
          fs->contents(s.path() + "/seg-00000000000000000001.evs").size());
}

TEST_CASE("spool: EIO on fdatasync fails the append (every_batch), counted, never thrown",
          "[unit][spool]") {
    auto fs = make_fs();
    auto s = std::make_unique<store>(fopts(), fs);
    REQUIRE_FALSE(s->append(meta_of(1), body_of(1), true).first);
    fs->fail(fop::sync, EIO, 1, "seg-");
    CHECK(s->append(meta_of(2), body_of(2), true).first ==
          make_error_code(error::spool_write_failed));
    CHECK(s->counters().sync_failures == 1);
    CHECK(s->counters().write_failures == 1);
    CHECK(s->degraded());
    // The segment was sealed after the failed sync: the next append starts a new one.
    REQUIRE_FALSE(s->append(meta_of(3), body_of(3), true).first);
    CHECK_FALSE(s->degraded());
    CHECK(fs->exists(s->path() + "/seg-00000000000000000003.evs"));
    // An ack whose sync fails: counted, the store goes on.
    fs->fail(fop::sync, EIO, 1, "acks.log");
    s->ack({0, 1});
    CHECK(s->counters().sync_failures == 2);
    CHECK_NOTHROW(s->sync());
    fs->crash();
    CHECK_NOTHROW(s.reset());  // the destructor meets a dead disk
    const auto got = recover(fs);
    // 1 was acked (durably or not: at worst it comes back), 2 failed, 3 is there.
    CHECK(std::set<std::string>(got.begin(), got.end()).count(body_of(3)) == 1);
    CHECK(std::set<std::string>(got.begin(), got.end()).count(body_of(2)) == 0);
}

TEST_CASE("spool: failing rename and unlink are tolerated", "[unit][spool]") {
    auto fs = make_fs();
    auto o = fopts();
    o.segment_bytes = 600;
    auto s = std::make_unique<store>(o, fs);
    std::vector<record_ref> refs;
    for (std::uint32_t i = 1; i <= 12; ++i) {
        auto [ec, ref] = s->append(meta_of(1), body_of(i, 200), true);
        REQUIRE_FALSE(ec);
        refs.push_back(ref);
    }
    fs->fail(fop::rename, EIO, -1);         // acks.log is never rewritten
    fs->fail(fop::unlink, EIO, 3, "seg-");  // the first removals fail
    for (std::size_t i = 0; i < 8; ++i)
        s->ack(refs[i]);
    CHECK_FALSE(s->degraded());
    CHECK_FALSE(fs->exists(s->path() + "/acks.log.tmp"));
    const auto recs = drain(*s);
    CHECK(recs.size() == 4);  // 9 … 12 (acked by drain)
    fs->clear_faults();
    REQUIRE_FALSE(s->append(meta_of(1), body_of(50), false).first);
    fs->crash();
    s.reset();
    store_counters c;
    const auto got = recover(fs, &c);
    // Nothing acked comes back; the unacked append does.
    CHECK(got == std::vector<std::string>{body_of(50)});
    CHECK(c.corrupt_bytes == 0);
}

TEST_CASE("spool: after a power loss, every append that returned success (every_batch) is back",
          "[unit][spool]") {
    auto fs = make_fs();
    auto o = fopts();
    o.segment_bytes = 1000;
    auto s = std::make_unique<store>(o, fs);
    std::vector<std::string> expect;
    for (std::uint32_t i = 1; i <= 30; ++i) {
        REQUIRE_FALSE(s->append(meta_of(i), body_of(i, 150), i % 2 == 0).first);
        expect.push_back(body_of(i, 150));
    }
    // Half of them read and acknowledged (durably: every_batch).
    std::set<std::string> acked;
    for (int k = 0; k < 8; ++k) {
        auto r = s->next(1000, {});
        REQUIRE(r);
        s->ack({r->origin, r->id});
        acked.insert(r->body);
    }
    fs->crash();
    s.reset();
    store_counters c;
    const auto got = recover(fs, &c);
    std::vector<std::string> want;
    for (const auto& b : expect)
        if (acked.count(b) == 0)
            want.push_back(b);
    CHECK(got == want);
    CHECK(c.recovered_records == want.size());
    CHECK(c.corrupt_bytes == 0);
    CHECK(c.corrupt_records == 0);
}

TEST_CASE("spool: with fsync none, a power loss gives back a prefix, never a partial frame",
          "[unit][spool]") {
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
        auto fs = make_fs();
        auto o = fopts(fsync_policy::none);
        o.segment_bytes = 800;
        auto s = std::make_unique<store>(o, fs);
        std::vector<std::string> appended;
        for (std::uint32_t i = 1; i <= 20; ++i) {
            REQUIRE_FALSE(s->append(meta_of(i), body_of(i, 120), true).first);
            appended.push_back(body_of(i, 120));
        }
        if (seed % 2 == 0)
            fs->crash_partial(seed);  // writeback cut in the middle
        else
            fs->crash();  // nothing was synced: nothing comes back
        s.reset();
        store_counters c;
        const auto got = recover(fs, &c);
        INFO("seed " << seed);
        REQUIRE(got.size() <= appended.size());
        if (seed % 2 == 1)
            CHECK(got.empty());
        // Each segment keeps a prefix: in order, whole records, nothing counted as corrupt.
        std::size_t j = 0;
        for (const auto& b : got) {
            while (j < appended.size() && appended[j] != b)
                ++j;
            CHECK(j < appended.size());
        }
        CHECK(c.corrupt_bytes == 0);
        CHECK(c.corrupt_records == 0);
    }
}

TEST_CASE("spool: a kill -9 loses nothing whatever the fsync policy", "[unit][spool]") {
    for (auto p : {fsync_policy::none, fsync_policy::interval, fsync_policy::every_batch}) {
        auto fs = make_fs();
        auto s = std::make_unique<store>(fopts(p), fs);
        for (std::uint32_t i = 1; i <= 5; ++i)
            REQUIRE_FALSE(s->append(meta_of(i), body_of(i), true).first);
        auto r = s->next(1000, {});
        s->ack({r->origin, r->id});
        fs->kill();
        s.reset();
        CHECK(recover(fs) ==
              std::vector<std::string>{body_of(2), body_of(3), body_of(4), body_of(5)});
    }
}

TEST_CASE("spool: fsync interval: what sync() made durable survives a power loss",
          "[unit][spool]") {
    auto fs = make_fs();
    auto s = std::make_unique<store>(fopts(fsync_policy::interval), fs);
    for (std::uint32_t i = 1; i <= 5; ++i)
        REQUIRE_FALSE(s->append(meta_of(i), body_of(i), true).first);
    s->sync_due(std::chrono::steady_clock::now() + std::chrono::seconds(5));
    CHECK(s->counters().syncs == 1);
    for (std::uint32_t i = 6; i <= 8; ++i)
        REQUIRE_FALSE(s->append(meta_of(i), body_of(i), true).first);
    fs->crash();
    s.reset();
    CHECK(recover(fs) ==
          std::vector<std::string>{body_of(1), body_of(2), body_of(3), body_of(4), body_of(5)});
}

TEST_CASE("spool: a directory locked by another process is left alone", "[unit][spool]") {
    auto fs = make_fs();
    std::string other;
    {
        store s(fopts(), fs);
        REQUIRE_FALSE(s.append(meta_of(3), body_of(1), false).first);
        other = s.path();
    }
    fs->hold_lock(other + "/LOCK");
    {
        store s(fopts(), fs);
        CHECK(s.counters().recovered_records == 0);
        CHECK(drain(s).empty());
        const auto rep = inspect(root, *fs);
        REQUIRE(rep.dirs.size() == 2);
        CHECK(rep.dirs[0].path == other);
        CHECK(rep.dirs[0].locked);
        CHECK(rep.dirs[0].records == 1);
        CHECK(rep.dirs[0].events == 3);
        CHECK(rep.dirs[1].locked);  // the store's own
    }
    fs->hold_lock(other + "/LOCK", false);
    store s(fopts(), fs);
    CHECK(s.counters().recovered_records == 1);
    CHECK(inspect(root, *fs).dirs.size() == 2);
}

TEST_CASE("spool: a corrupt segment file goes to quarantine, capped, oldest first",
          "[unit][spool]") {
    auto fs = make_fs();
    auto o = fopts();
    o.quarantine_max_bytes = 2500;
    o.adopt = false;
    std::vector<std::string> dirs;
    for (int k = 0; k < 3; ++k) {
        store s(o, fs);
        for (std::uint32_t i = 1; i <= 5; ++i)
            REQUIRE_FALSE(s.append(meta_of(i), body_of(i, 200), false).first);
        dirs.push_back(s.path());
    }
    // Each directory: its segment's file header damaged.
    for (const auto& d : dirs) {
        const auto path = d + "/seg-00000000000000000001.evs";
        auto bytes = fs->contents(path);
        bytes[2] = 'X';
        fs->put(path, bytes);
    }
    o.adopt = true;
    store s(o, fs);
    CHECK(s.counters().segments_quarantined == 3);
    CHECK(s.counters().recovered_records == 0);
    const auto q = fs->files_under(root + "/quarantine");
    // About 1.3 KiB each, 2 500 bytes at most: the newest one stays.
    REQUIRE(q.size() == 1);
    CHECK(q[0].find(dirs[2].substr(root.size() + 1)) != std::string::npos);
    for (const auto& d : dirs)
        CHECK_FALSE(fs->exists(d));  // nothing left in them: removed
    const auto rep = inspect(root, *fs);
    CHECK(rep.quarantined_files == 1);
    CHECK(rep.quarantined_bytes == fs->contents(q[0]).size());
}

TEST_CASE("spool: construction errors on the seam: read-only, failing mkdir", "[unit][spool]") {
    auto fs = make_fs();
    fs->set_read_only(root);
    CHECK_THROWS_WITH(store(fopts(), fs), Catch::Contains("spool.dir '/spool' is not writable"));
    fs->set_read_only(root, false);
    fs->fail(fop::mkdir, EACCES);
    CHECK_THROWS_AS(store(fopts(), fs), boost::system::system_error);
    fs->fail(fop::lock, EIO, 200);
    CHECK_THROWS_AS(store(fopts(), fs), boost::system::system_error);
    fs->clear_faults();
    CHECK(fs->dirs_under(root).empty());
    store s(fopts(), fs);
    CHECK(fs->dirs_under(root).size() == 1);
}
