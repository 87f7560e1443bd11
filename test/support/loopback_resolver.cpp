#include "support/loopback_resolver.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ip/address_v4.hpp>

#include <charconv>
#include <utility>

namespace evdispatch::test {

void loopback_resolver::async_resolve(
    std::string host, std::string port,
    boost::asio::any_completion_handler<resolve_signature> handler) {
    using boost::asio::ip::tcp;
    {
        std::lock_guard lk(mu_);
        hosts_.push_back(std::move(host));
    }
    ++calls_;
    unsigned number = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (ec != std::errc{} || end != port.data() + port.size() || number == 0 || number > 65535) {
        std::move(handler)(boost::asio::error::invalid_argument, std::vector<tcp::endpoint>{});
        return;
    }
    std::move(handler)(boost::system::error_code{},
                       std::vector<tcp::endpoint>{{boost::asio::ip::address_v4::loopback(),
                                                   static_cast<unsigned short>(number)}});
}

std::vector<std::string> loopback_resolver::hosts() const {
    std::lock_guard lk(mu_);
    return hosts_;
}

}  // namespace evdispatch::test
