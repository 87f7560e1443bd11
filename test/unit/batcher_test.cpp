#include "core/batcher.hpp"
#include "support/workload.hpp"

#include <boost/json/parse.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

using namespace evdispatch;
using namespace evdispatch::detail;
using namespace std::chrono_literals;

namespace {

context_ptr make_ctx(std::string project, bool anonymize = false) {
    auto c = std::make_shared<event_context>(
        *test::make_context("http://127.0.0.1:1/v1/events", std::move(project)));
    c->anonymize_ip = anonymize;
    return c;
}

// The event lives until the end of the full expression that uses it (the batcher copies it).
event_ptr visitor_event(const context_ptr& ctx, std::size_t pad = 0, int n = 0) {
    return evdispatch::make_event(ctx, "{\"visitor_id\":\"u" + std::to_string(n) + "\",\"pad\":\"" +
                                           std::string(pad, 'x') + "\"}");
}

// Steps of a batcher scenario: add an event of context A or B (with padding), tick at a time
// offset, or flush; each step states how many batches must close and their sizes.
struct step {
    char op;                          // 'A'/'B': add to that context, 't': tick, 'f': flush
    int at_ms;                        // clock for the step
    std::size_t pad;                  // visitor padding (bytes)
    std::vector<std::size_t> closed;  // sizes of batches closed by this step, in order
};

struct scenario {
    const char* name;
    std::size_t batch_size;
    std::size_t max_bytes;
    int flush_ms;
    std::vector<step> steps;
};

}  // namespace

TEST_CASE("batcher closes batches on count, bytes, age and flush", "[unit][batcher]") {
    const std::vector<scenario> table = {
        {"count closes at batch_size",
         3,
         1 << 20,
         1000,
         {{'A', 0, 0, {}}, {'A', 1, 0, {}}, {'A', 2, 0, {3}}, {'A', 3, 0, {}}, {'f', 4, 0, {1}}}},
        {"batch_size 1 closes every event",
         1,
         1 << 20,
         1000,
         {{'A', 0, 0, {1}}, {'A', 0, 0, {1}}, {'f', 0, 0, {}}}},
        {"contexts batch separately",
         2,
         1 << 20,
         1000,
         {{'A', 0, 0, {}}, {'B', 0, 0, {}}, {'A', 0, 0, {2}}, {'B', 0, 0, {2}}}},
        {"age closes the oldest first",
         10,
         1 << 20,
         100,
         {{'A', 0, 0, {}},
          {'B', 50, 0, {}},
          {'t', 99, 0, {}},
          {'t', 100, 0, {1}},
          {'t', 149, 0, {}},
          {'t', 150, 0, {1}}}},
        {"bytes close the open batch before overflow",
         100,
         1024,
         1000,
         {{'A', 0, 300, {}}, {'A', 0, 300, {}}, {'A', 0, 300, {2}}, {'f', 0, 0, {1}}}},
        {"flush closes all",
         10,
         1 << 20,
         1000,
         {{'A', 0, 0, {}}, {'B', 0, 0, {}}, {'A', 0, 0, {}}, {'f', 0, 0, {2, 1}}}},
        {"tick with nothing open", 10, 1 << 20, 1, {{'t', 5, 0, {}}, {'f', 5, 0, {}}}},
    };
    for (const auto& sc : table) {
        DYNAMIC_SECTION(sc.name) {
            batcher b(batch_config{.batch_size = sc.batch_size,
                                   .max_batch_bytes = sc.max_bytes,
                                   .flush_interval = std::chrono::milliseconds(sc.flush_ms)});
            auto a = make_ctx("A");
            auto bctx = make_ctx("B");
            const auto t0 = clock::time_point{} + 1h;
            std::size_t open = 0;
            for (const auto& st : sc.steps) {
                std::vector<closed_batch> out;
                const auto now = t0 + std::chrono::milliseconds(st.at_ms);
                if (st.op == 'A' || st.op == 'B') {
                    REQUIRE(b.add(*visitor_event(st.op == 'A' ? a : bctx, st.pad), now, out) ==
                            add_result::added);
                    ++open;
                } else if (st.op == 't') {
                    b.tick(now, out);
                } else {
                    b.flush(out);
                }
                std::vector<std::size_t> sizes;
                for (auto& c : out) {
                    sizes.push_back(c.events);
                    open -= c.events;
                    // Every body is valid JSON with that many visitors.
                    auto v = boost::json::parse(c.body);
                    CHECK(v.at("visitors").as_array().size() == c.events);
                    CHECK(c.body.size() <= sc.max_bytes);
                    CHECK(c.created.size() == c.events);
                }
                CHECK(sizes == st.closed);
                CHECK(b.open_events() == open);
            }
        }
    }
}

TEST_CASE("batcher drops an event larger than max_batch_bytes and keeps the rest",
          "[unit][batcher]") {
    batcher b(batch_config{.batch_size = 10, .max_batch_bytes = 1024});
    auto a = make_ctx("A");
    std::vector<closed_batch> out;
    REQUIRE(b.add(*visitor_event(a, 10), {}, out) == add_result::added);
    CHECK(b.add(*visitor_event(a, 2000), {}, out) == add_result::too_large);
    CHECK(out.empty());
    CHECK(b.open_events() == 1);
    b.flush(out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].events == 1);
}

TEST_CASE("batcher envelope carries the whole context", "[unit][batcher]") {
    auto c = make_ctx("p\"1", true);
    batcher b(batch_config{.batch_size = 2});
    std::vector<closed_batch> out;
    b.add(*visitor_event(c, 0, 1), {}, out);
    b.add(*visitor_event(c, 0, 2), {}, out);
    REQUIRE(out.size() == 1);
    auto v = boost::json::parse(out[0].body).as_object();
    CHECK(v.at("account_id") == "12001");
    CHECK(v.at("project_id") == "p\"1");
    CHECK(v.at("revision") == "42");
    CHECK(v.at("client_name") == "evdispatch-cpp");
    CHECK(v.at("client_version").as_string() == version());
    CHECK(v.at("anonymize_ip") == true);
    CHECK(v.at("enrich_decisions") == true);
    auto& vis = v.at("visitors").as_array();
    REQUIRE(vis.size() == 2);
    CHECK(vis[0].at("visitor_id") == "u1");  // order of acceptance
    CHECK(vis[1].at("visitor_id") == "u2");
    CHECK(out[0].id == 1);
}

TEST_CASE("batcher: equal contexts share a batch even as different objects", "[unit][batcher]") {
    auto c1 = make_ctx("A");
    auto c2 = make_ctx("A");
    auto c3 = make_ctx("A", true);  // anonymize_ip differs: a different batch
    batcher b(batch_config{.batch_size = 10});
    std::vector<closed_batch> out;
    b.add(*visitor_event(c1), {}, out);
    b.add(*visitor_event(c2), {}, out);
    b.add(*visitor_event(c3), {}, out);
    CHECK(b.open_batches() == 2);
    b.flush(out);
    REQUIRE(out.size() == 2);
    CHECK(out[0].events + out[1].events == 3);
}

TEST_CASE("batcher next_deadline follows the oldest open batch", "[unit][batcher]") {
    batcher b(batch_config{.batch_size = 10, .flush_interval = 250ms});
    CHECK_FALSE(b.next_deadline());
    std::vector<closed_batch> out;
    const auto t0 = clock::time_point{} + 1h;
    b.add(*visitor_event(make_ctx("A")), t0, out);
    b.add(*visitor_event(make_ctx("B")), t0 + 100ms, out);
    REQUIRE(b.next_deadline());
    CHECK(*b.next_deadline() == t0 + 250ms);
    b.tick(t0 + 250ms, out);
    CHECK(*b.next_deadline() == t0 + 350ms);
}

TEST_CASE("batcher rejects invalid limits", "[unit][batcher]") {
    CHECK_THROWS_AS(batcher(batch_config{.batch_size = 0}), boost::system::system_error);
    CHECK_THROWS(batcher(batch_config{.flush_interval = 0ms}));
    CHECK_THROWS(batcher(batch_config{.max_batch_bytes = 100}));
}
