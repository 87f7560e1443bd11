#pragma once

// The collector's listening socket: accepts connections and starts a session for each, on the
// acceptor's strand. It listens unless the user paused it (pause_listening()).

#include "collector/server_state.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace evdispatch::detail {

class listener : public std::enable_shared_from_this<listener> {
public:
    using tcp = boost::asio::ip::tcp;
    using error_code = boost::system::error_code;

    listener(boost::asio::io_context& ioc, std::shared_ptr<server_state> state);

    // Binds and listens. Throws system_error with `what` naming the address on failure.
    void bind(const tcp::endpoint& ep, const std::string& what);

    unsigned short port() const noexcept { return port_; }

    boost::asio::any_io_executor executor() { return acceptor_.get_executor(); }

    // Starts accepting (once a server thread runs).
    void run();

    // The rest runs on the acceptor's strand, or when no server thread runs.

    // stop(): closes the acceptor for good.
    void close_now() noexcept;

    // pause_listening(): closes the acceptor until resume().
    void pause() noexcept;

    // resume_listening(): listens again on the same endpoint. On failure the listener stays
    // paused.
    error_code resume();

private:
    bool wants_listening() const noexcept { return !stopped_ && !paused_; }
    void open_and_listen(const tcp::endpoint& ep, error_code& ec);
    void close_acceptor() noexcept;
    void do_accept();
    void on_accept(std::uint64_t generation, error_code ec, tcp::socket socket);

    boost::asio::io_context& ioc_;
    tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;  // accept errors
    std::shared_ptr<server_state> state_;
    tcp::endpoint endpoint_;
    unsigned short port_ = 0;
    // On the acceptor's strand:
    std::uint64_t generation_ = 0;  // bumped when the acceptor closes: older accepts are stale
    bool stopped_ = false;
    bool paused_ = false;
};

}  // namespace evdispatch::detail
