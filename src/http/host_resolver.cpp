// system_host_resolver: getaddrinfo on a detached thread per resolution (see host_resolver.hpp
// for why not Asio's resolver).

#include <evdispatch/host_resolver.hpp>

#include <boost/asio/error.hpp>
#include <boost/system/errc.hpp>

#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>

namespace evdispatch {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

// The same translation as Asio's resolver, so messages read the same.
error_code from_gai(int rc, int saved_errno) {
    switch (rc) {
        case 0:
            return {};
        case EAI_AGAIN:
            return asio::error::host_not_found_try_again;
        case EAI_BADFLAGS:
            return asio::error::invalid_argument;
        case EAI_FAIL:
            return asio::error::no_recovery;
        case EAI_FAMILY:
            return asio::error::address_family_not_supported;
        case EAI_MEMORY:
            return asio::error::no_memory;
        case EAI_NONAME:
#if defined(EAI_ADDRFAMILY)
        case EAI_ADDRFAMILY:
#endif
#if defined(EAI_NODATA) && (EAI_NODATA != EAI_NONAME)
        case EAI_NODATA:
#endif
            return asio::error::host_not_found;
        case EAI_SERVICE:
            return asio::error::service_not_found;
        case EAI_SOCKTYPE:
            return asio::error::socket_type_not_supported;
        default:  // EAI_SYSTEM
            return {saved_errno, boost::system::system_category()};
    }
}

struct lookup {
    std::string host;
    std::string port;
    asio::any_completion_handler<resolve_signature> handler;

    // Blocks in getaddrinfo for as long as the system resolver takes; then answers.
    void run() {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_protocol = IPPROTO_TCP;
        hints.ai_flags = AI_NUMERICSERV;
        addrinfo* list = nullptr;
        const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &list);
        const int saved_errno = errno;
        std::vector<tcp::endpoint> out;
        error_code ec = from_gai(rc, saved_errno);
        if (!ec) {
            for (const addrinfo* ai = list; ai; ai = ai->ai_next) {
                if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
                    ai->ai_addrlen > tcp::endpoint().capacity())
                    continue;
                tcp::endpoint ep;
                std::memcpy(ep.data(), ai->ai_addr, ai->ai_addrlen);
                ep.resize(ai->ai_addrlen);
                out.push_back(ep);
            }
            ::freeaddrinfo(list);
            if (out.empty())
                ec = asio::error::host_not_found;
        }
        std::move(handler)(ec, std::move(out));
    }
};

}  // namespace

void system_host_resolver::async_resolve(std::string host, std::string port,
                                         asio::any_completion_handler<resolve_signature> handler) {
    auto job =
        std::make_unique<lookup>(lookup{std::move(host), std::move(port), std::move(handler)});
    try {
        std::thread t([raw = job.get()] {
            const std::unique_ptr<lookup> own(raw);
            own->run();
        });
        (void)job.release();  // the thread owns it now
        // Detached: nothing ever joins a thread that may sit in getaddrinfo for a long time.
        t.detach();
    } catch (const std::system_error&) {
        if (!job)
            throw;  // (detach failed: cannot happen for a thread just started)
        // No thread could be started: the lookup is still ours, answer at once.
        namespace errc = boost::system::errc;
        std::move(job->handler)(errc::make_error_code(errc::resource_unavailable_try_again),
                                std::vector<tcp::endpoint>{});
    }
}

}  // namespace evdispatch
