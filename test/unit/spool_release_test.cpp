// The store's release(): a record handed out by next() (or appended without read_back) goes
// back to the unread ones, in id order, counted per directory (own, adopted). The processor
// releases a batch when it must leave memory again (its endpoint went down after it was read
// back, or mode always moves it out of memory).

#include "spool/file_system.hpp"
#include "spool_test_support.hpp"

#include <catch2/catch.hpp>

using namespace evdispatch::test::spool_support;
namespace sp = evdispatch::detail::spool;

TEST_CASE("spool: release returns records to the unread ones, in id order", "[unit][spool]") {
    temp_dir dir;
    sp::store s(options(dir.path()), sp::make_posix_file_system());
    std::vector<sp::record_ref> refs;
    for (std::uint64_t i = 1; i <= 4; ++i)
        refs.push_back(s.append(meta_of(3), body_of(i), i % 2 == 1).second);
    // Records 1 and 3 were appended read_back; 2 and 4 not (mode always: in memory too).
    CHECK(s.unread_own_records() == 2);
    CHECK(s.unread_adopted_records() == 0);
    auto first = s.next(1000, {});
    REQUIRE(first);
    CHECK(first->id == refs[0].id);
    CHECK(s.unread_own_records() == 1);

    // Released: 4 (never read back), then 1 (handed out): they come back in id order.
    s.release(refs[3]);
    s.release(refs[0]);
    s.release(refs[0]);  // twice changes nothing
    CHECK(s.unread_own_records() == 3);
    CHECK(s.unread_events() == 9);
    auto back = drain(s, false);
    REQUIRE(back.size() == 3);
    CHECK(back[0].id == refs[0].id);
    CHECK(back[1].id == refs[2].id);
    CHECK(back[2].id == refs[3].id);
    CHECK(back[2].body == body_of(4));
    CHECK(s.unread_own_records() == 0);

    // A settled record is not released; an unknown ref is ignored.
    s.ack(refs[1]);
    s.release(refs[1]);
    s.release({0, 999});
    s.release({7, 1});
    CHECK(s.unread_records() == 0);
}

TEST_CASE("spool: adopted records count as adopted, and can be released too", "[unit][spool]") {
    temp_dir dir;
    {
        sp::store first(options(dir.path()), sp::make_posix_file_system());
        for (std::uint64_t i = 1; i <= 3; ++i)
            REQUIRE_FALSE(first.append(meta_of(2), body_of(i), false).first);
    }
    sp::store s(options(dir.path()), sp::make_posix_file_system());
    CHECK(s.counters().recovered_records == 3);
    CHECK(s.unread_adopted_records() == 3);
    CHECK(s.unread_own_records() == 0);
    auto r = s.next(1000, {});
    REQUIRE(r);
    CHECK(r->origin == 1);
    CHECK(s.unread_adopted_records() == 2);
    s.release({r->origin, r->id});
    CHECK(s.unread_adopted_records() == 3);
    CHECK(drain(s).size() == 3);
    CHECK(s.unread_records() == 0);
}
