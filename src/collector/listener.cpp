#include "collector/listener.hpp"

#include "collector/session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/system_error.hpp>

namespace evdispatch::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {

// After a failed accept (out of descriptors and the like), or a failed reopen after an outage
// (the port taken meanwhile): wait this long, then try again, instead of spinning.
constexpr std::chrono::milliseconds accept_retry_delay{20};
constexpr std::chrono::milliseconds reopen_retry_delay{50};

}  // namespace

listener::listener(asio::io_context& ioc, std::shared_ptr<server_state> state)
    : ioc_(ioc)
    , acceptor_(asio::make_strand(ioc))
    , retry_(acceptor_.get_executor())
    , outage_(acceptor_.get_executor())
    , state_(std::move(state)) {}

void listener::bind(const tcp::endpoint& ep, const std::string& what) {
    error_code ec;
    open_and_listen(ep, ec);
    if (ec)
        throw boost::system::system_error(ec, "evdispatch::collector: cannot listen on " + what);
    endpoint_ = acceptor_.local_endpoint();
    port_ = endpoint_.port();
}

void listener::run() {
    asio::dispatch(acceptor_.get_executor(), [self = shared_from_this()] {
        if (self->acceptor_.is_open())
            self->do_accept();
    });
}

void listener::close_now() noexcept {
    stopped_ = true;
    close_acceptor();
    outage_.cancel();
    if (down_) {
        down_ = false;
        state_->outage_ended(down_generation_);
    }
}

void listener::pause() noexcept {
    paused_ = true;
    close_acceptor();
}

listener::error_code listener::resume() {
    paused_ = false;
    if (!wants_listening() || acceptor_.is_open())
        return {};
    error_code ec;
    open_and_listen(endpoint_, ec);
    if (ec) {
        paused_ = true;
        return ec;
    }
    do_accept();
    return {};
}

void listener::apply_faults(std::uint64_t generation, std::chrono::milliseconds refuse_for) {
    if (stopped_)
        return;
    const bool was_down = down_;
    if (down_) {
        outage_.cancel();
        ++outage_count_;
        down_ = false;
        state_->outage_ended(down_generation_);
    }
    if (refuse_for.count() > 0)
        start_outage(refuse_for, generation, nullptr);
    else if (was_down)
        reopen();
}

void listener::begin_outage(std::chrono::milliseconds length, std::uint64_t generation,
                            const std::shared_ptr<session_base>& spare) {
    // One outage at a time: a request can only begin one once the previous one has ended
    // (its fault progress is `down` until then).
    if (stopped_ || down_ || !state_->faults_current(generation))
        return;
    start_outage(length, generation, spare.get());
}

void listener::start_outage(std::chrono::milliseconds length, std::uint64_t generation,
                            const session_base* spare) {
    down_ = true;
    down_generation_ = generation;
    const std::uint64_t outage = ++outage_count_;
    close_acceptor();
    state_->outage_began();
    // Not waited for (the I/O threads run them): the sessions close on their own strands.
    for (const auto& s : state_->live_sessions(spare))
        s->post_close([] {});
    outage_.expires_after(length);
    outage_.async_wait(
        [self = shared_from_this(), outage](error_code ec) { self->on_outage_timer(outage, ec); });
}

void listener::on_outage_timer(std::uint64_t outage, error_code ec) {
    // Aborted or stale: stop() or set_faults() ended this outage already.
    if (ec || outage != outage_count_ || !down_)
        return;
    end_outage();
}

void listener::end_outage() {
    down_ = false;
    state_->outage_ended(down_generation_);
    reopen();
}

void listener::open_and_listen(const tcp::endpoint& ep, error_code& ec) {
    acceptor_.open(ep.protocol(), ec);
    if (!ec)
        acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec)
        acceptor_.bind(ep, ec);
    if (!ec)
        acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        error_code ignored;
        acceptor_.close(ignored);
    }
}

void listener::close_acceptor() noexcept {
    error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
    ++generation_;
}

void listener::reopen() {
    if (!wants_listening() || acceptor_.is_open())
        return;
    error_code ec;
    open_and_listen(endpoint_, ec);
    if (!ec)
        return do_accept();
    retry_.expires_after(reopen_retry_delay);
    retry_.async_wait([self = shared_from_this()](error_code e) {
        if (!e)
            self->reopen();
    });
}

void listener::do_accept() {
    // One server thread (the default) runs every handler in order already: a strand per
    // connection would only add executor copies and locks on the per-request path.
    asio::any_io_executor ex = state_->cfg.threads <= 1
                                   ? asio::any_io_executor(ioc_.get_executor())
                                   : asio::any_io_executor(asio::make_strand(ioc_));
    acceptor_.async_accept(
        ex, beast::bind_front_handler(&listener::on_accept, shared_from_this(), generation_));
}

void listener::on_accept(std::uint64_t generation, error_code ec, tcp::socket socket) {
    if (generation != generation_ || ec == asio::error::operation_aborted || !acceptor_.is_open())
        return;
    if (ec) {
        retry_.expires_after(accept_retry_delay);
        retry_.async_wait([self = shared_from_this(), generation](error_code e) {
            if (!e && generation == self->generation_)
                self->do_accept();
        });
        return;
    }
    state_->connections.fetch_add(1, std::memory_order_relaxed);
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const std::uint64_t epoch = state_->epoch.load();
    using collector_io::session;
    if (state_->tls) {
        std::make_shared<session<collector_io::tls_stream>>(state_, epoch, std::move(socket),
                                                            *state_->tls)
            ->run();
    } else {
        std::make_shared<session<beast::tcp_stream>>(state_, epoch, std::move(socket))->run();
    }
    do_accept();
}

}  // namespace evdispatch::detail
