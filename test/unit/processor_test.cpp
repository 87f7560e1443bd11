// The processor with custom dispatchers (no network): accounting, process() results,
// lifecycle, completion tokens, configuration errors.

#include "support/fixtures.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

/// Completes each dispatch from its own thread's io_context, as a real client library would.
/// A rule decides each attempt: a failure (the error and result to complete with) or nullopt
/// for a 204. Checks that every body is a batch of event_count visitors, counts the events
/// handed over, and records the bodies in the order they came.
class threaded_dispatcher final : public event_dispatcher {
public:
    /// What the rule sees: the body, how many times this body has come (1 for the first
    /// attempt, 2 for its first retry...), and the call's number over all bodies (1-based).
    struct attempt {
        const std::string& body;
        int of_body;
        std::uint64_t call;
    };
    struct failure {
        error code;
        dispatch_result result;
    };
    using rule = std::function<std::optional<failure>(const attempt&)>;

    /// Null `r`: every attempt succeeds.
    explicit threaded_dispatcher(rule r = {}, std::size_t in_flight = 2)
        : rule_(std::move(r)), in_flight_(in_flight) {
        thread_ = std::thread([this] { io_.run(); });
    }
    ~threaded_dispatcher() override {
        guard_.reset();
        thread_.join();
    }
    void async_dispatch(std::shared_ptr<const log_event> ev,
                        asio::any_completion_handler<dispatch_signature> h) override {
        asio::post(io_, [this, ev, h = std::move(h)]() mutable {
            auto v = boost::json::parse(ev->body);
            const auto visitors = v.at("visitors").as_array().size();
            bodies_ok_ = bodies_ok_ && visitors == ev->event_count && ev->http_verb == "POST";
            events_ += ev->event_count;
            int of_body;
            {
                std::lock_guard lk(mu_);
                of_body = ++attempts_[ev->body];
                sent_.push_back(ev->body);
            }
            const auto call = ++calls_;  // only this thread counts
            if (rule_) {
                if (auto f = rule_(attempt{ev->body, of_body, call})) {
                    std::move(h)(make_error_code(f->code), std::move(f->result));
                    return;
                }
            }
            dispatch_result ok;
            ok.status = 204;
            std::move(h)(error_code{}, std::move(ok));
        });
    }
    std::size_t max_in_flight() const noexcept override { return in_flight_; }

    /// Whether every body so far was a batch of event_count visitors, sent with POST.
    bool bodies_ok() const noexcept { return bodies_ok_; }
    /// Events handed over, retries included.
    std::uint64_t events() const noexcept { return events_; }
    std::vector<std::string> sent() {
        std::lock_guard lk(mu_);
        return sent_;
    }

private:
    rule rule_;
    std::size_t in_flight_;
    std::atomic<bool> bodies_ok_{true};
    std::atomic<std::uint64_t> events_{0};
    std::uint64_t calls_ = 0;
    std::mutex mu_;
    std::map<std::string, int> attempts_;
    std::vector<std::string> sent_;
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_{io_.get_executor()};
    std::thread thread_;
};

/// Never completes until shutdown() (then completes everything with an error).
class black_hole_dispatcher final : public event_dispatcher {
public:
    void async_dispatch(std::shared_ptr<const log_event>,
                        asio::any_completion_handler<dispatch_signature> h) override {
        std::lock_guard lk(m_);
        held_.push_back(std::move(h));
    }
    void shutdown() noexcept override {
        std::vector<asio::any_completion_handler<dispatch_signature>> hs;
        {
            std::lock_guard lk(m_);
            hs.swap(held_);
        }
        for (auto& h : hs)
            std::move(h)(make_error_code(error::connection_lost), dispatch_result{});
        shutdowns_++;
    }
    std::size_t max_in_flight() const noexcept override { return 4; }
    std::atomic<int> shutdowns_{0};

private:
    std::mutex m_;
    std::vector<asio::any_completion_handler<dispatch_signature>> held_;
};

processor_config small_config() {
    processor_config c;
    c.endpoint = "http://127.0.0.1:9/v1/events";
    c.batch.batch_size = 10;
    c.batch.flush_interval = 50ms;
    return c;
}

}  // namespace

TEST_CASE("accounting balances at every snapshot under load and after close",
          "[unit][accounting]") {
    const std::uint64_t fail_every = GENERATE(0, 3);
    test::io_fixture fx;
    threaded_dispatcher::rule every_nth;  // fail every fail_every-th call
    if (fail_every != 0)
        every_nth = [fail_every](const threaded_dispatcher::attempt& a)
            -> std::optional<threaded_dispatcher::failure> {
            if (a.call % fail_every != 0)
                return std::nullopt;
            return threaded_dispatcher::failure{error::dispatcher_failed,
                                                {.message = "scripted failure"}};
        };
    auto d = std::make_shared<threaded_dispatcher>(every_nth);
    std::atomic<std::uint64_t> reported_events{0};
    processor_hooks hooks;
    hooks.dispatcher = d;
    hooks.on_batch_result = [&](const batch_result& r) { reported_events += r.events; };
    auto cfg = small_config();
    cfg.queue_capacity = 256;
    cfg.retry.max_attempts = 1;  // failures are final here: drops must be accounted
    batch_event_processor p(fx.executor(), cfg, hooks);
    event_builder b(test::make_context(cfg.endpoint));

    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> snapshots{0}, unbalanced{0};
    std::thread watcher([&] {
        while (!stop.load()) {
            auto m = p.metrics();
            ++snapshots;
            if (!m.balanced())
                ++unbalanced;
        }
    });
    std::atomic<std::uint64_t> accepted{0}, full{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < 4; ++t) {
        producers.emplace_back([&, t] {
            for (int i = 0; i < 5000; ++i) {
                switch (p.process(test::make_impression(b, t * 100000 + i))) {
                    case process_result::accepted:
                        ++accepted;
                        break;
                    case process_result::dropped_queue_full:
                        ++full;
                        break;
                    default:
                        FAIL_CHECK("unexpected process result");
                }
            }
        });
    }
    for (auto& t : producers)
        t.join();
    auto report = p.async_close(10s, asio::use_future).get();
    stop = true;
    watcher.join();

    const auto& m = report.metrics;
    CHECK(unbalanced == 0);
    CHECK(snapshots > 0);
    CHECK(m.balanced());
    CHECK(m.pending == 0);
    CHECK(m.accepted == accepted);
    CHECK(m.dropped_for(drop_reason::queue_full) == full);
    CHECK(m.submitted() == 20000);
    CHECK(m.accepted == m.delivered + m.dropped_after_accept());
    CHECK(report.delivered == m.delivered);
    CHECK(d->bodies_ok());
    CHECK(d->events() == m.accepted);  // every accepted event was handed over exactly once
    CHECK(reported_events == m.accepted);
    if (fail_every == 0) {
        CHECK(m.delivered == m.accepted);
    } else {
        CHECK(m.dropped_for(drop_reason::dispatcher_failed) > 0);
        CHECK(m.delivered + m.dropped_for(drop_reason::dispatcher_failed) == m.accepted);
    }
    CHECK(p.process(test::make_impression(b, 1)) == process_result::dropped_closed);
    CHECK(p.metrics().dropped_for(drop_reason::closed) == 1);
}

TEST_CASE("process() reports a full queue and a null event", "[unit][accounting]") {
    // The strand's executor is not running yet, so nothing drains.
    asio::io_context io;
    auto d = std::make_shared<threaded_dispatcher>();
    auto cfg = small_config();
    cfg.queue_capacity = 8;
    batch_event_processor p(io.get_executor(), cfg, {.dispatcher = d});
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 8; ++i)
        CHECK(p.process(test::make_impression(b, i)) == process_result::accepted);
    CHECK(p.process(test::make_impression(b, 8)) == process_result::dropped_queue_full);
    CHECK(p.process(test::make_impression(b, 9)) == process_result::dropped_queue_full);
    CHECK(p.process(nullptr) == process_result::invalid_event);
    auto m = p.metrics();
    CHECK(m.accepted == 8);
    CHECK(m.queue_depth == 8);
    CHECK(m.pending == 8);
    CHECK(m.dropped_for(drop_reason::queue_full) == 2);
    CHECK(m.balanced());

    std::optional<error_code> flushed;
    p.async_flush([&](error_code ec) { flushed = ec; });
    auto guard = asio::make_work_guard(io);
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (!flushed && std::chrono::steady_clock::now() < end)
        io.run_one_for(100ms);
    REQUIRE(flushed);
    CHECK(!*flushed);
    m = p.metrics();
    CHECK(m.delivered == 8);
    CHECK(m.pending == 0);
    CHECK(m.balanced());
}

TEST_CASE("flush settles everything accepted before it", "[unit][lifecycle]") {
    test::io_fixture fx;
    auto d = std::make_shared<threaded_dispatcher>();
    auto cfg = small_config();
    cfg.batch.batch_size = 1000;
    cfg.batch.flush_interval = 60s;  // only the flush can close the batch
    batch_event_processor p(fx.executor(), cfg, {.dispatcher = d});
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 123; ++i)
        REQUIRE(p.process(test::make_impression(b, i)) == process_result::accepted);
    p.async_flush(asio::use_future).get();
    auto m = p.metrics();
    CHECK(m.delivered == 123);
    CHECK(m.pending == 0);
    CHECK(m.batches_delivered == 1);
    // A second flush with nothing pending completes too.
    p.async_flush(asio::use_future).get();
    auto r = p.async_close(1s, asio::use_future).get();
    CHECK(r.delivered == 123);
    CHECK_FALSE(r.deadline_passed);
}

TEST_CASE("several flushes and durable waits outstanding complete in any order",
          "[unit][lifecycle]") {
    // Regression: the shell kept their handlers in a vector, and erasing one before another
    // moved the latter by assignment, which Boost 1.81's any_completion_handler turns into
    // endless recursion (a crash once two waits completed in one turn).
    test::io_fixture fx;
    auto d = std::make_shared<threaded_dispatcher>();
    auto cfg = small_config();
    cfg.batch.batch_size = 1000;
    cfg.batch.flush_interval = 60s;
    batch_event_processor p(fx.executor(), cfg, {.dispatcher = d});
    event_builder b(test::make_context(cfg.endpoint));
    std::vector<std::future<void>> waits;
    for (int i = 0; i < 8; ++i) {
        REQUIRE(p.process(test::make_impression(b, i)) == process_result::accepted);
        waits.push_back(p.async_wait_durable(asio::use_future));
    }
    waits.push_back(p.async_flush(asio::use_future));  // closes the batch: all complete
    for (auto& w : waits)
        w.get();
    CHECK(p.metrics().delivered == 8);
    // Nothing pending: a durable wait completes at once.
    p.async_wait_durable(asio::use_future).get();
    (void)p.async_close(1s, asio::use_future).get();
    std::promise<error_code> late;
    p.async_wait_durable([&](error_code ec) { late.set_value(ec); });
    CHECK(late.get_future().get() == error::closed);
}

TEST_CASE("completion tokens: callback, use_future, use_awaitable", "[unit][lifecycle]") {
    test::io_fixture fx;
    auto d = std::make_shared<threaded_dispatcher>();
    auto cfg = small_config();
    batch_event_processor p(fx.executor(), cfg, {.dispatcher = d});
    event_builder b(test::make_context(cfg.endpoint));
    p.process(test::make_impression(b, 1));

    std::promise<error_code> cb;
    p.async_flush([&](error_code ec) { cb.set_value(ec); });
    CHECK(!cb.get_future().get());

    p.process(test::make_impression(b, 2));
    std::promise<std::uint64_t> aw;
    asio::co_spawn(
        fx.executor(),
        [&]() -> asio::awaitable<void> {
            co_await p.async_flush(asio::use_awaitable);
            auto report = co_await p.async_close(2s, asio::use_awaitable);
            aw.set_value(report.delivered);
        },
        asio::detached);
    CHECK(aw.get_future().get() == 2);
    // Close again: completes with the same report.
    auto again = p.async_close(1s, asio::use_future).get();
    CHECK(again.delivered == 2);
    // A flush after close completes at once, saying the processor is closed.
    std::promise<error_code> late;
    p.async_flush([&](error_code ec) { late.set_value(ec); });
    CHECK(late.get_future().get() == error::closed);
}

TEST_CASE("deferred is the default token and starts only when invoked", "[unit][lifecycle]") {
    test::io_fixture fx;
    auto d = std::make_shared<threaded_dispatcher>();
    auto cfg = small_config();
    cfg.batch.flush_interval = 60s;  // only a flush sends
    auto p = std::make_unique<batch_event_processor>(fx.executor(), cfg,
                                                     processor_hooks{.dispatcher = d});
    event_builder b(test::make_context(cfg.endpoint));
    p->process(test::make_impression(b, 1));
    auto flush = p->async_flush();  // deferred: nothing starts yet
    auto flush2 = p->async_flush(asio::deferred);
    std::this_thread::sleep_for(50ms);
    CHECK(p->metrics().delivered == 0);
    std::promise<error_code> done;
    std::move(flush)([&](error_code ec) { done.set_value(ec); });
    CHECK(!done.get_future().get());
    CHECK(p->metrics().delivered == 1);
    // The operation holds the shared state: started after the processor is gone, it completes.
    auto close = p->async_close(1s);
    p.reset();
    std::promise<error_code> after;
    std::move(flush2)([&](error_code ec) { after.set_value(ec); });
    CHECK(after.get_future().get() == error::closed);
    std::promise<std::uint64_t> closed;
    std::move(close)([&](error_code, close_report r) { closed.set_value(r.delivered); });
    CHECK(closed.get_future().get() == 1);
}

TEST_CASE("async_flush supports terminal cancellation", "[unit][lifecycle]") {
    test::io_fixture fx;
    auto d = std::make_shared<black_hole_dispatcher>();  // nothing is ever delivered
    auto cfg = small_config();
    batch_event_processor p(fx.executor(), cfg, {.dispatcher = d});
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 10; ++i)
        p.process(test::make_impression(b, i));
    asio::cancellation_signal sig;
    std::promise<error_code> done;
    p.async_flush(
        asio::bind_cancellation_slot(sig.slot(), [&](error_code ec) { done.set_value(ec); }));
    auto fut = done.get_future();
    CHECK(fut.wait_for(100ms) == std::future_status::timeout);  // waits for the black hole
    // Partial cancellation is not supported: nothing happens.
    asio::post(fx.executor(), [&] { sig.emit(asio::cancellation_type::partial); });
    CHECK(fut.wait_for(100ms) == std::future_status::timeout);
    asio::post(fx.executor(), [&] { sig.emit(asio::cancellation_type::terminal); });
    CHECK(fut.get() == asio::error::operation_aborted);
    CHECK(p.metrics().in_flight_events == 10);  // the events are still on their way
    auto [ec, r] = test::close_and_wait(p, 100ms);
    CHECK(ec == error::close_deadline);
    CHECK(r.dropped[std::size_t(drop_reason::close_deadline)] == 10);
}

TEST_CASE("close deadline drops what is in flight, with the reason", "[unit][lifecycle]") {
    test::io_fixture fx;
    auto d = std::make_shared<black_hole_dispatcher>();
    std::atomic<std::uint64_t> deadline_events{0};
    processor_hooks hooks;
    hooks.dispatcher = d;
    hooks.on_batch_result = [&](const batch_result& r) {
        if (!r.delivered && r.reason == drop_reason::close_deadline)
            deadline_events += r.events;
    };
    auto cfg = small_config();
    batch_event_processor p(fx.executor(), cfg, hooks);
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 95; ++i)
        p.process(test::make_impression(b, i));
    const auto t0 = std::chrono::steady_clock::now();
    auto [ec, r] = test::close_and_wait(p, 200ms);
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(ec == error::close_deadline);
    CHECK(r.deadline_passed);
    CHECK(r.delivered == 0);
    CHECK(r.not_delivered == 95);
    CHECK(r.dropped[std::size_t(drop_reason::close_deadline)] == 95);
    CHECK(r.metrics.pending == 0);
    CHECK(r.metrics.balanced());
    CHECK(deadline_events == 95);
    CHECK(d->shutdowns_ >= 1);
    CHECK(took >= 200ms);
}

TEST_CASE("an owning processor's destructor closes within its deadline", "[unit][lifecycle]") {
    auto d = std::make_shared<black_hole_dispatcher>();
    auto cfg = small_config();
    cfg.destructor_close_timeout = 150ms;
    std::atomic<std::uint64_t> dropped{0};
    processor_hooks hooks;
    hooks.dispatcher = d;
    hooks.on_batch_result = [&](const batch_result& r) {
        if (!r.delivered)
            dropped += r.events;
    };
    const auto t0 = std::chrono::steady_clock::now();
    {
        batch_event_processor p(cfg, hooks);
        event_builder b(test::make_context(cfg.endpoint));
        for (int i = 0; i < 30; ++i)
            p.process(test::make_impression(b, i));
    }
    CHECK(dropped == 30);  // reported, not lost silently
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("an owning processor delivers on its own thread", "[unit][lifecycle]") {
    auto d = std::make_shared<threaded_dispatcher>();
    auto cfg = small_config();
    batch_event_processor p(cfg, {.dispatcher = d});
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 1000; ++i)
        p.process(test::make_impression(b, i));
    auto r = p.async_close(5s, asio::use_future).get();
    CHECK(r.delivered == 1000);
    CHECK(r.metrics.batches_delivered == 100);
}

TEST_CASE("invalid configuration is refused with a message naming the field", "[unit][config]") {
    struct row {
        const char* name;
        std::function<void(processor_config&)> change;
        error expected;
        const char* needle;
    };
    const std::vector<row> rows = {
        {"batch_size 0", [](auto& c) { c.batch.batch_size = 0; }, error::invalid_config,
         "batch.batch_size"},
        {"capacity 0", [](auto& c) { c.queue_capacity = 0; }, error::invalid_config,
         "queue_capacity"},
        {"capacity 1", [](auto& c) { c.queue_capacity = 1; }, error::invalid_config,
         "queue_capacity"},
        {"flush 0", [](auto& c) { c.batch.flush_interval = 0ms; }, error::invalid_config,
         "flush_interval"},
        {"tiny batch bytes", [](auto& c) { c.batch.max_batch_bytes = 10; }, error::invalid_config,
         "max_batch_bytes"},
        {"no connections", [](auto& c) { c.http.max_connections = 0; }, error::invalid_config,
         "max_connections"},
        {"bad url", [](auto& c) { c.endpoint = "not a url"; }, error::invalid_url, "not a url"},
        {"ftp url", [](auto& c) { c.endpoint = "ftp://127.0.0.1/x"; }, error::invalid_url,
         "scheme"},
        {"no host", [](auto& c) { c.endpoint = "http:///v1/events"; }, error::invalid_url, "host"},
        {"port out of range", [](auto& c) { c.endpoint = "http://127.0.0.1:99999/v1/events"; },
         error::invalid_url, "port 99999 is out of range"},
        {"empty port", [](auto& c) { c.endpoint = "http://127.0.0.1:/v1/events"; },
         error::invalid_url, "empty port"},
        {"port not a number", [](auto& c) { c.endpoint = "http://127.0.0.1:80a/v1/events"; },
         error::invalid_url, "is not a number"},
        {"negative dns_ttl", [](auto& c) { c.http.dns_ttl = -1ms; }, error::invalid_config,
         "http.dns_ttl"},
    };
    for (const auto& r : rows) {
        DYNAMIC_SECTION(r.name) {
            asio::io_context io;
            processor_config c;
            c.endpoint = "http://127.0.0.1:9/v1/events";
            r.change(c);
            try {
                batch_event_processor p(io.get_executor(), c);
                FAIL("constructor accepted " << r.name);
            } catch (const boost::system::system_error& e) {
                CHECK(e.code() == r.expected);
                CHECK_THAT(e.what(), Catch::Contains(r.needle));
            }
        }
    }
}

TEST_CASE("failed attempts are retried with the same body until delivered", "[unit][retry]") {
    auto d = std::make_shared<threaded_dispatcher>(
        [](const threaded_dispatcher::attempt& a) -> std::optional<threaded_dispatcher::failure> {
            if (a.of_body == 1)
                return threaded_dispatcher::failure{error::http_status, {.status = 503}};
            if (a.of_body == 2)
                return threaded_dispatcher::failure{error::connection_lost, {}};
            return std::nullopt;
        });
    std::vector<unsigned> attempts;
    std::mutex mu;
    processor_hooks hooks;
    hooks.dispatcher = d;
    hooks.on_batch_result = [&](const batch_result& r) {
        std::lock_guard lk(mu);
        attempts.push_back(r.attempts);
        CHECK(r.delivered);
    };
    auto cfg = small_config();
    cfg.retry.base_backoff = 5ms;
    cfg.health.failure_threshold = 0;  // the retry policy alone (health: pipeline_core_test)
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 30; ++i)
        p.process(test::make_impression(b, i));
    auto r = p.async_close(10s, asio::use_future).get();
    CHECK(r.delivered == 30);
    CHECK(r.metrics.retries == 6);  // 3 batches x 2 failed attempts
    CHECK(r.metrics.requests == 9);
    std::lock_guard lk(mu);
    CHECK(attempts == std::vector<unsigned>{3, 3, 3});
    // Each body was sent three times, byte for byte (same uuids).
    auto sent = d->sent();
    std::map<std::string, int> times;
    for (auto& s : sent)
        ++times[s];
    CHECK(times.size() == 3);
    for (auto& [body, n] : times)
        CHECK(n == 3);
}

TEST_CASE("a batch waiting for its retry does not block the batches behind it", "[unit][retry]") {
    // The first batch (visitor user-0) answers 503 with Retry-After 400 ms twice.
    auto d = std::make_shared<threaded_dispatcher>(
        [](const threaded_dispatcher::attempt& a) -> std::optional<threaded_dispatcher::failure> {
            if (a.body.find("\"user-0\"") == std::string::npos || a.of_body > 2)
                return std::nullopt;
            return threaded_dispatcher::failure{error::http_status,
                                                {.status = 503, .retry_after = 400ms}};
        });
    std::vector<std::uint64_t> order;
    std::mutex mu;
    processor_hooks hooks;
    hooks.dispatcher = d;
    hooks.on_batch_result = [&](const batch_result& r) {
        std::lock_guard lk(mu);
        order.push_back(r.batch_id);
    };
    auto cfg = small_config();
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 100; ++i)
        p.process(test::make_impression(b, i));
    auto r = p.async_close(10s, asio::use_future).get();
    CHECK(r.delivered == 100);
    std::lock_guard lk(mu);
    REQUIRE(order.size() == 10);
    CHECK(order.back() == 1);  // the retried batch finished last; the 9 others went past it
}

TEST_CASE("retries give up with the reason of the last failure", "[unit][retry]") {
    auto d = std::make_shared<threaded_dispatcher>(
        [](const threaded_dispatcher::attempt&) -> std::optional<threaded_dispatcher::failure> {
            return threaded_dispatcher::failure{error::http_status, {.status = 500}};
        });
    auto cfg = small_config();
    cfg.retry.max_attempts = 3;
    cfg.retry.base_backoff = 1ms;
    cfg.health.failure_threshold = 0;  // the retry policy alone
    std::atomic<unsigned> last_attempts{0};
    processor_hooks hooks;
    hooks.dispatcher = d;
    hooks.on_batch_result = [&](const batch_result& r) { last_attempts = r.attempts; };
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(cfg.endpoint));
    for (int i = 0; i < 10; ++i)
        p.process(test::make_impression(b, i));
    auto r = p.async_close(10s, asio::use_future).get();
    CHECK(r.delivered == 0);
    CHECK(r.dropped[std::size_t(drop_reason::server_error)] == 10);
    CHECK(last_attempts == 3);
    CHECK(r.metrics.pending == 0);
}
