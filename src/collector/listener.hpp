#pragma once

// The collector's listening socket: accepts connections and starts a session for each, on the
// acceptor's strand. It listens unless the user paused it (pause_listening()) or an outage of
// the faults is in progress (down_after, refuse_for); an outage ends by the listener's own
// timer, which then listens again on the same port.

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

    // Starts accepting (once a server thread runs), unless paused or in an outage.
    void run();

    // The rest runs on the acceptor's strand, or when no server thread runs.

    // stop(): closes the acceptor for good and ends the outage clock.
    void close_now() noexcept;

    // pause_listening(): closes the acceptor until resume().
    void pause() noexcept;

    // resume_listening(): listens again unless an outage is in progress (then its end will).
    // On failure the listener stays paused.
    error_code resume();

    // set_faults(): ends an outage in progress (and listens again, unless paused), then
    // begins one of `refuse_for` if it is more than 0. `generation` is the new faults'.
    void apply_faults(std::uint64_t generation, std::chrono::milliseconds refuse_for);

    // A request began an outage (server_state::on_outage): closes the acceptor and every
    // session but `spare` for `length`. Ignored when the faults of `generation` have been
    // replaced, or when stopped.
    void begin_outage(std::chrono::milliseconds length, std::uint64_t generation,
                      const std::shared_ptr<session_base>& spare);

private:
    void start_outage(std::chrono::milliseconds length, std::uint64_t generation,
                      const session_base* spare);
    void end_outage();
    void on_outage_timer(std::uint64_t outage, error_code ec);

    bool wants_listening() const noexcept { return !stopped_ && !paused_ && !down_; }
    void open_and_listen(const tcp::endpoint& ep, error_code& ec);
    void close_acceptor() noexcept;
    // Listens again after an outage; if the port is taken, tries again shortly.
    void reopen();
    void do_accept();
    void on_accept(std::uint64_t generation, error_code ec, tcp::socket socket);

    boost::asio::io_context& ioc_;
    tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;   // accept errors, reopening after an outage
    boost::asio::steady_timer outage_;  // end of the current outage
    std::shared_ptr<server_state> state_;
    tcp::endpoint endpoint_;
    unsigned short port_ = 0;
    // On the acceptor's strand:
    std::uint64_t generation_ = 0;  // bumped when the acceptor closes: older accepts are stale
    bool stopped_ = false;
    bool paused_ = false;
    bool down_ = false;                  // an outage is in progress
    std::uint64_t down_generation_ = 0;  // the faults' generation of that outage
    std::uint64_t outage_count_ = 0;     // tells a stale outage timer from the current one
};

}  // namespace evdispatch::detail
