// Transport limits against real sockets: connection recycling (requests, idle time), the
// response size cap, and an endless response cut off by the request timeout.

#include "support/fixtures.hpp"

#include <evdispatch/evdispatch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// A deliberately bad HTTP server on 127.0.0.1: reads one request head per connection, then
// answers with a body far larger than announced limits, or trickles a body forever.
class bad_server {
public:
    enum class mode { huge_body, endless_body };
    explicit bad_server(mode m)
        : mode_(m), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
        thread_ = std::thread([this] { serve(); });
    }
    ~bad_server() {
        stop_ = true;
        // Wake the blocking accept with a connection of our own, then let the thread end.
        boost::system::error_code ec;
        asio::io_context io;
        tcp::socket wake(io);
        wake.connect(acceptor_.local_endpoint(), ec);
        thread_.join();
        acceptor_.close(ec);
    }
    std::string url() const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) +
               "/v1/events";
    }
    std::atomic<int> requests{0};

private:
    void serve() {
        while (!stop_) {
            boost::system::error_code ec;
            tcp::socket s(io_);
            acceptor_.accept(s, ec);
            if (ec || stop_)
                return;
            asio::streambuf buf;
            asio::read_until(s, buf, "\r\n\r\n", ec);
            if (ec)
                continue;
            ++requests;
            if (mode_ == mode::huge_body) {
                std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n";
                asio::write(s, asio::buffer(head), ec);
                std::string chunk(64 * 1024, 'x');
                for (int i = 0; i < 160 && !ec && !stop_; ++i)
                    asio::write(s, asio::buffer(chunk), ec);
            } else {
                std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                asio::write(s, asio::buffer(head), ec);
                // One byte every 50 ms, bounded: 10 s at most.
                for (int i = 0; i < 200 && !ec && !stop_; ++i) {
                    asio::write(s, asio::buffer(std::string("1\r\nx\r\n")), ec);
                    std::this_thread::sleep_for(50ms);
                }
            }
        }
    }
    mode mode_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace

TEST_CASE("connections are recycled after max_requests_per_connection",
          "[integration][transport]") {
    collector col;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 5;
    cfg.http.max_connections = 1;
    cfg.http.max_requests_per_connection = 2;
    batch_event_processor p(cfg);
    event_builder b(test::make_context(col.url()));
    for (int round = 0; round < 6; ++round) {
        for (int i = 0; i < 5; ++i)
            p.process(test::make_impression(b, round * 5 + i));
        p.async_flush(asio::use_future).get();
    }
    auto [ec, r] = test::close_and_wait(p, 5s);
    CHECK_FALSE(ec);
    CHECK(r.delivered == 30);
    CHECK(r.metrics.connections_opened == 3);  // 6 requests, 2 per connection
    CHECK(col.stats().connections == 3);
}

TEST_CASE("an idle connection older than idle_timeout is not reused", "[integration][transport]") {
    collector col;
    processor_config cfg;
    cfg.endpoint = col.url();
    cfg.batch.batch_size = 5;
    cfg.http.max_connections = 1;
    cfg.http.idle_timeout = 100ms;
    batch_event_processor p(cfg);
    event_builder b(test::make_context(col.url()));
    for (int i = 0; i < 5; ++i)
        p.process(test::make_impression(b, i));
    p.async_flush(asio::use_future).get();
    for (int i = 5; i < 10; ++i)
        p.process(test::make_impression(b, i));
    p.async_flush(asio::use_future).get();  // reused: young enough
    std::this_thread::sleep_for(300ms);
    for (int i = 10; i < 15; ++i)
        p.process(test::make_impression(b, i));
    p.async_flush(asio::use_future).get();  // too old: a new connection
    auto [ec, r] = test::close_and_wait(p, 5s);
    CHECK_FALSE(ec);
    CHECK(r.delivered == 15);
    CHECK(r.metrics.connections_opened == 2);
}

TEST_CASE("a response larger than max_response_bytes fails the batch without retry",
          "[integration][transport]") {
    bad_server srv(bad_server::mode::huge_body);
    std::string message;
    processor_hooks hooks;
    hooks.on_batch_result = [&](const batch_result& r) { message = std::string(r.message); };
    processor_config cfg;
    cfg.endpoint = srv.url();
    cfg.batch.batch_size = 5;
    cfg.http.max_response_bytes = 64 * 1024;
    batch_event_processor p(cfg, hooks);
    event_builder b(test::make_context(srv.url()));
    for (int i = 0; i < 5; ++i)
        p.process(test::make_impression(b, i));
    auto [ec, r] = test::close_and_wait(p, 10s);
    CHECK_FALSE(ec);  // dropped for the response, not by the close deadline
    CHECK(r.delivered == 0);
    CHECK(r.dropped[std::size_t(drop_reason::network_error)] == 5);
    CHECK(r.metrics.requests == 1);  // an oversized response is not retried
    CHECK(srv.requests == 1);
}

TEST_CASE("an endless response body is cut off by the request timeout",
          "[integration][transport]") {
    bad_server srv(bad_server::mode::endless_body);
    processor_config cfg;
    cfg.endpoint = srv.url();
    cfg.batch.batch_size = 5;
    cfg.http.request_timeout = 300ms;
    cfg.retry.max_attempts = 2;
    cfg.retry.base_backoff = 10ms;
    batch_event_processor p(cfg);
    event_builder b(test::make_context(srv.url()));
    for (int i = 0; i < 5; ++i)
        p.process(test::make_impression(b, i));
    const auto t0 = std::chrono::steady_clock::now();
    auto [ec, r] = test::close_and_wait(p, 10s);
    CHECK_FALSE(ec);  // the request timeout ended it, not the close deadline
    CHECK(r.delivered == 0);
    CHECK(r.dropped[std::size_t(drop_reason::timeout)] == 5);
    CHECK(r.metrics.requests == 2);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);  // bounded by the timeouts, not the server
}
