#include "support/fixtures.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <catch2/catch.hpp>

namespace evdispatch::test {

io_fixture::io_fixture()
    : guard_(std::make_unique<
             boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
          io_.get_executor()))
    , done_future_(done_.get_future().share()) {
    thread_ = std::thread([this] {
        io_.run();
        done_.set_value();
    });
}

void io_fixture::release() {
    guard_.reset();
}

bool io_fixture::finished() const {
    return done_future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

io_fixture::~io_fixture() {
    release();
    const bool ran_out =
        done_future_.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    if (!ran_out)
        io_.stop();
    thread_.join();
    // A fixture that still had work after its test is a leak of handlers or timers.
    CHECK(ran_out);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return pred();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

std::pair<boost::system::error_code, close_report> close_and_wait(
    batch_event_processor& p, std::chrono::steady_clock::duration deadline) {
    // Shared: if the wait gives up, the handler may still run later.
    auto pr = std::make_shared<std::promise<std::pair<boost::system::error_code, close_report>>>();
    auto f = pr->get_future();
    p.async_close(deadline, [pr](boost::system::error_code ec, close_report r) {
        pr->set_value({ec, std::move(r)});
    });
    REQUIRE(f.wait_for(deadline + std::chrono::seconds(60)) == std::future_status::ready);
    return f.get();
}

unsigned short refused_port() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    const auto port = a.local_endpoint().port();
    a.close();
    return port;
}

}  // namespace evdispatch::test
