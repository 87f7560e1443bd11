// The spool store on the real file system (a temporary directory): appending, reading back,
// acknowledging, rotation and removal, caps, adoption, configuration errors, inspect.

#include "spool/frame.hpp"
#include "spool/store.hpp"
#include "unit/spool_test_support.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

using namespace evdispatch;
using namespace evdispatch::detail::spool;
using namespace evdispatch::test::spool_support;

namespace {

std::string what_of(const store_options& o, const std::shared_ptr<file_system>& fs,
                    boost::system::error_code& code) {
    try {
        store s(o, fs);
    } catch (const boost::system::system_error& e) {
        code = e.code();
        return e.what();
    }
    return {};
}

}  // namespace

TEST_CASE("spool: append, next, ack: byte-identical, in order, then removed", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    std::string own;
    {
        store s(options(tmp.path()), fs);
        own = s.path();
        CHECK(std::filesystem::is_directory(own));
        CHECK(std::filesystem::exists(own + "/LOCK"));
        CHECK(own.substr(0, tmp.path().size() + 1 + std::to_string(::getpid()).size() + 1) ==
              tmp.path() + "/" + std::to_string(::getpid()) + "-");
        for (std::uint32_t i = 1; i <= 10; ++i) {
            auto [ec, ref] = s.append(meta_of(i, 5000 + i), body_of(i), true);
            REQUIRE_FALSE(ec);
            CHECK(ref.origin == 0);
            CHECK(ref.id == i);
        }
        CHECK(s.unread_records() == 10);
        CHECK(s.unread_events() == 55);
        CHECK(s.unread_bytes() == 1000);
        CHECK(s.counters().records_written == 10);
        CHECK(s.counters().events_written == 55);
        CHECK(s.counters().syncs >= 10);
        CHECK(s.counters().live_bytes == 16 + s.counters().bytes_written);
        const auto recs = drain(s, false);
        REQUIRE(recs.size() == 10);
        for (std::uint32_t i = 1; i <= 10; ++i) {
            const auto& r = recs[i - 1];
            CHECK(r.id == i);
            CHECK(r.origin == 0);
            CHECK(r.body == body_of(i));
            CHECK(r.meta.event_count == i);
            CHECK(r.meta.created_ms == 5000 + i);
            CHECK(r.meta.url == meta_of(i).url);
            CHECK(r.meta.headers == meta_of(i).headers);
        }
        CHECK(s.unread_records() == 0);
        CHECK_FALSE(s.next(1000, {}));  // not returned twice
        for (const auto& r : recs)
            s.ack({r.origin, r.id});
        s.ack({0, 999});  // unknown: ignored
        s.ack({7, 1});
        CHECK_FALSE(s.degraded());
    }
    // Everything settled: the directory went with the store.
    CHECK_FALSE(std::filesystem::exists(own));
    CHECK(store_dirs(tmp.path()).empty());
}

TEST_CASE("spool: unsettled records stay for the next store, which adopts and replays them",
          "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    std::string first;
    {
        store s(options(tmp.path()), fs);
        first = s.path();
        for (std::uint32_t i = 1; i <= 6; ++i)
            REQUIRE_FALSE(s.append(meta_of(i), body_of(i), i % 2 == 0).first);
        // read_back false: never returned here, but kept on disk.
        const auto recs = drain(s, false);
        REQUIRE(recs.size() == 3);
        s.ack({0, 2});  // delivered; 4 and 6 were read but not acknowledged
        s.ack({0, 1});
    }
    REQUIRE(std::filesystem::exists(first));
    store s(options(tmp.path()), fs);
    CHECK(s.path() != first);
    CHECK(s.counters().recovered_records == 4);
    CHECK(s.counters().recovered_events == 3 + 4 + 5 + 6);
    CHECK(s.unread_records() == 4);
    const auto recs = drain(s);
    REQUIRE(recs.size() == 4);
    CHECK(recs[0].id == 3);
    CHECK(recs[1].id == 4);
    CHECK(recs[2].id == 5);
    CHECK(recs[3].id == 6);
    for (const auto& r : recs) {
        CHECK(r.origin == 1);
        CHECK(r.body == body_of(r.id));
    }
    // All settled: the adopted directory is removed.
    CHECK_FALSE(std::filesystem::exists(first));
    CHECK(store_dirs(tmp.path()) == std::vector<std::string>{s.path()});
}

TEST_CASE("spool: own records come before adopted ones, oldest directory first", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    for (std::uint32_t run = 1; run <= 2; ++run) {
        store s(options(tmp.path()), fs);
        if (run == 2)
            drain(s, false);  // read, never acknowledged: stays
        REQUIRE_FALSE(s.append(meta_of(run), body_of(100 + run), false).first);
    }
    store s(options(tmp.path()), fs);
    REQUIRE_FALSE(s.append(meta_of(9), body_of(900), true).first);
    const auto recs = drain(s);
    REQUIRE(recs.size() == 3);
    CHECK(recs[0].origin == 0);
    CHECK(recs[0].body == body_of(900));
    CHECK(recs[1].body == body_of(101));
    CHECK(recs[2].body == body_of(102));
    CHECK(recs[1].origin < recs[2].origin);
}

TEST_CASE("spool: segments rotate, and go once their records are settled", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    auto o = options(tmp.path());
    o.segment_bytes = 1000;  // a few frames each
    store s(o, fs);
    std::vector<record_ref> refs;
    for (std::uint32_t i = 1; i <= 40; ++i) {
        auto [ec, ref] = s.append(meta_of(1), body_of(i, 150), false);
        REQUIRE_FALSE(ec);
        refs.push_back(ref);
    }
    const auto segs = files_named(s.path(), "seg-");
    REQUIRE(segs.size() >= 8);
    CHECK(std::filesystem::path(segs[0]).filename() == "seg-00000000000000000001.evs");
    std::uint64_t on_disk = 0;
    for (const auto& f : segs) {
        on_disk += std::filesystem::file_size(f);
        CHECK(std::filesystem::file_size(f) <= 1000 + 400);
    }
    CHECK(s.counters().live_bytes == on_disk);
    CHECK(s.counters().live_bytes_peak == on_disk);
    // Acknowledge all but the last: every sealed segment goes; acks.log keeps only live ids.
    for (std::size_t i = 0; i + 1 < refs.size(); ++i)
        s.ack(refs[i]);
    const auto left = files_named(s.path(), "seg-");
    CHECK(left.size() == 1);
    CHECK(s.counters().live_bytes == std::filesystem::file_size(left[0]));
    const auto acks = read_file(s.path() + "/acks.log");
    CHECK(acks.size() < file_header_size + 12 * 10);
    CHECK((acks.size() - file_header_size) % 12 == 0);
    CHECK_FALSE(std::filesystem::exists(s.path() + "/acks.log.tmp"));
    CHECK_FALSE(s.degraded());
}

TEST_CASE("spool: a record larger than segment_bytes gets a segment of its own", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    auto o = options(tmp.path());
    o.segment_bytes = 1000;
    store s(o, fs);
    REQUIRE_FALSE(s.append(meta_of(1), body_of(1, 100), true).first);
    REQUIRE_FALSE(s.append(meta_of(2), body_of(2, 5000), true).first);
    REQUIRE_FALSE(s.append(meta_of(3), body_of(3, 100), true).first);
    CHECK(files_named(s.path(), "seg-").size() == 3);
    const auto recs = drain(s);
    REQUIRE(recs.size() == 3);
    CHECK(recs[1].body == body_of(2, 5000));
    CHECK(files_named(s.path(), "seg-").size() == 1);  // the sealed ones went
}

TEST_CASE("spool: max_bytes refuses with spool_full, never blocks, and frees as acks come",
          "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    auto o = options(tmp.path());
    o.segment_bytes = 1000;
    o.max_bytes = 3000;
    store s(o, fs);
    std::vector<record_ref> refs;
    error_code ec;
    for (int i = 0; i < 100; ++i) {
        auto r = s.append(meta_of(1), body_of(i, 200), true);
        if (r.first) {
            ec = r.first;
            break;
        }
        refs.push_back(r.second);
    }
    CHECK(ec == make_error_code(error::spool_full));
    CHECK(s.counters().full_refusals == 1);
    CHECK(s.counters().write_failures == 0);
    CHECK_FALSE(s.degraded());
    CHECK(s.counters().live_bytes <= 3000);
    CHECK(s.counters().live_bytes_peak <= 3000);
    const auto written = s.counters().records_written;
    CHECK(written == refs.size());
    // A body larger than the whole spool: refused as well.
    CHECK(s.append(meta_of(1), std::string(5000, 'x'), true).first ==
          make_error_code(error::spool_full));
    const auto recs = drain(s);
    CHECK(recs.size() == refs.size());
    CHECK(s.counters().live_bytes < 1000 + 16);
    CHECK_FALSE(s.append(meta_of(1), body_of(1, 200), true).first);
}

TEST_CASE("spool: next() skips and settles records older than max_age", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    store s(options(tmp.path()), fs);
    for (std::uint32_t i = 1; i <= 5; ++i)
        REQUIRE_FALSE(s.append(meta_of(i, i * 1000), body_of(i), true).first);
    // now 10 000, max_age 7 000: created before 3 000 expire (1 000 and 2 000).
    const auto recs = drain(s, true, 10000, std::chrono::milliseconds(7000));
    REQUIRE(recs.size() == 3);
    CHECK(recs[0].id == 3);
    CHECK(s.counters().expired_records == 2);
    CHECK(s.counters().expired_events == 3);
    // max_age 0: no limit.
    REQUIRE_FALSE(s.append(meta_of(1, 1), body_of(1), true).first);
    CHECK(drain(s, true, 1000000000, std::chrono::milliseconds(0)).size() == 1);
}

TEST_CASE("spool: fsync interval syncs through sync_due once the interval passed",
          "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    auto o = options(tmp.path());
    o.fsync = fsync_policy::interval;
    o.fsync_interval = std::chrono::milliseconds(500);
    store s(o, fs);
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE_FALSE(s.append(meta_of(1), body_of(1), true).first);
    CHECK(s.counters().syncs == 0);
    s.sync_due(t0);
    CHECK(s.counters().syncs == 0);
    s.sync_due(t0 + std::chrono::seconds(2));
    CHECK(s.counters().syncs == 1);
    s.sync_due(t0 + std::chrono::seconds(4));  // nothing new
    CHECK(s.counters().syncs == 1);
    s.ack({0, 1});
    s.sync();
    CHECK(s.counters().syncs == 2);

    SECTION("none never syncs") {
        temp_dir tmp2;
        o.dir = tmp2.path();
        o.fsync = fsync_policy::none;
        store n(o, fs);
        REQUIRE_FALSE(n.append(meta_of(1), body_of(1), true).first);
        n.sync();
        n.sync_due(t0 + std::chrono::hours(1));
        CHECK(n.counters().syncs == 0);
    }
}

TEST_CASE("spool: configuration errors name the field", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    boost::system::error_code code;
    auto o = options(tmp.path());

    o.dir = "";
    CHECK_THAT(what_of(o, fs, code), Catch::Contains("spool.dir"));
    CHECK(code == make_error_code(error::invalid_config));

    o.dir = tmp.path() + "/missing";
    CHECK_THAT(what_of(o, fs, code), Catch::Contains("spool.dir '" + o.dir + "' does not exist"));
    CHECK(code == make_error_code(error::invalid_config));

    write_file(tmp.path() + "/file", "x");
    o.dir = tmp.path() + "/file";
    CHECK_THAT(what_of(o, fs, code), Catch::Contains("is not a directory"));
    CHECK(code == make_error_code(error::invalid_config));

    if (::geteuid() != 0) {  // root writes anywhere
        const auto ro = tmp.path() + "/ro";
        std::filesystem::create_directory(ro);
        ::chmod(ro.c_str(), 0500);
        o.dir = ro;
        CHECK_THAT(what_of(o, fs, code), Catch::Contains("spool.dir '" + ro + "' is not writable"));
        CHECK(code == make_error_code(error::invalid_config));
        ::chmod(ro.c_str(), 0700);
    }

    o = options(tmp.path());
    o.segment_bytes = 0;
    CHECK_THAT(what_of(o, fs, code), Catch::Contains("spool.segment_bytes"));
    CHECK(code == make_error_code(error::invalid_config));

    o = options(tmp.path());
    o.max_bytes = o.segment_bytes - 1;
    CHECK_THAT(what_of(o, fs, code), Catch::Contains("spool.max_bytes"));
    CHECK(code == make_error_code(error::invalid_config));

    // Nothing was created by the refused stores.
    CHECK(files_named(tmp.path(), "LOCK").empty());
}

TEST_CASE("spool: a spool of a newer format version is refused and left untouched",
          "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    {
        store s(options(tmp.path()), fs);
        REQUIRE_FALSE(s.append(meta_of(3), body_of(1), true).first);
    }
    const auto seg = files_named(tmp.path(), "seg-").at(0);
    auto bytes = read_file(seg);
    std::string newer;
    encode_file_header(newer, segment_magic, format_version + 1);
    bytes.replace(0, file_header_size, newer);
    write_file(seg, bytes);
    const auto before = store_dirs(tmp.path());

    boost::system::error_code code;
    CHECK_THAT(what_of(options(tmp.path()), fs, code), Catch::Contains("newer format version"));
    CHECK(code == make_error_code(error::spool_version));
    CHECK(read_file(seg) == bytes);
    CHECK(store_dirs(tmp.path()) == before);
    const auto rep = inspect(tmp.path(), *fs);
    CHECK_THAT(rep.refused, Catch::Contains(seg));
    CHECK(rep.dirs.empty());
    CHECK(read_file(seg) == bytes);
}

TEST_CASE("spool: a directory whose LOCK is held is not adopted; an orphan is", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    auto o = options(tmp.path());
    store live(o, fs);
    REQUIRE_FALSE(live.append(meta_of(2), body_of(1), true).first);
    // An orphan: a directory of a process that is gone, without a LOCK file even.
    std::string orphan_path;
    {
        store gone(o, fs);  // adopts nothing: `live` holds its lock (flock, same process)
        CHECK(gone.counters().recovered_records == 0);
        REQUIRE_FALSE(gone.append(meta_of(5), body_of(2), false).first);
        orphan_path = gone.path();
    }
    std::filesystem::remove(orphan_path + "/LOCK");
    {
        store s(o, fs);
        CHECK(s.counters().recovered_records == 1);
        CHECK(s.counters().recovered_events == 5);
        const auto recs = drain(s);
        REQUIRE(recs.size() == 1);
        CHECK(recs[0].body == body_of(2));
        CHECK(std::filesystem::exists(live.path()));
        CHECK_FALSE(std::filesystem::exists(orphan_path));
    }
    // adopt = false: nothing is taken.
    o.adopt = false;
    {
        store gone(o, fs);
        REQUIRE_FALSE(gone.append(meta_of(5), body_of(2), false).first);
    }
    store s(o, fs);
    CHECK(s.counters().recovered_records == 0);
}

TEST_CASE("spool: inspect counts what was appended minus what was acknowledged", "[unit][spool]") {
    temp_dir tmp;
    auto fs = make_posix_file_system();
    auto o = options(tmp.path());
    o.segment_bytes = 2000;
    store s(o, fs);
    std::uint64_t events = 0, bytes = 0, records = 0;
    for (std::uint32_t i = 1; i <= 30; ++i) {
        const auto body = body_of(i, 100 + i);
        auto [ec, ref] = s.append(meta_of(i, 10000 + i), body, true);
        REQUIRE_FALSE(ec);
        if (i % 3 == 0) {
            s.ack(ref);  // every segment keeps unacknowledged records: none is removed
        } else {
            ++records;
            events += i;
            bytes += body.size();
        }
    }
    const auto before = read_file(files_named(tmp.path(), "seg-").at(0));
    const auto rep = inspect(tmp.path(), *fs);
    REQUIRE(rep.dirs.size() == 1);
    const auto& d = rep.dirs[0];
    CHECK(d.path == s.path());
    CHECK(d.locked);
    CHECK(d.records == records);
    CHECK(d.events == events);
    CHECK(d.bytes == bytes);
    CHECK(d.acked_records == 10);
    CHECK(d.oldest_created_ms == 10001);
    CHECK(d.corrupt_records == 0);
    CHECK(d.corrupt_bytes == 0);
    CHECK(d.segments == files_named(s.path(), "seg-").size());
    CHECK(rep.quarantined_files == 0);
    CHECK(rep.refused.empty());
    // Reading changed nothing, and took no lock that stays.
    CHECK(read_file(files_named(tmp.path(), "seg-").at(0)) == before);
    CHECK_THROWS_AS(inspect(tmp.path() + "/missing", *fs), boost::system::system_error);
}
