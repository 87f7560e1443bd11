#include "url.hpp"

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace evdispatch::detail {

namespace {
[[noreturn]] void bad(std::string_view url, std::string_view why) {
    throw boost::system::system_error(
        make_error_code(error::invalid_url),
        "invalid endpoint URL \"" + std::string(url) + "\": " + std::string(why));
}
}  // namespace

parsed_url parse_endpoint_url(std::string_view url) {
    auto r = boost::urls::parse_uri(url);
    if (!r) bad(url, "not an absolute URI (" + r.error().message() + ")");
    const boost::urls::url_view u = *r;
    parsed_url p;
    const auto scheme = u.scheme_id();
    if (scheme == boost::urls::scheme::https)
        p.tls = true;
    else if (scheme != boost::urls::scheme::http)
        bad(url, "the scheme must be http or https");
    if (!u.has_authority() || u.encoded_host().empty()) bad(url, "no host");
    if (u.has_userinfo()) bad(url, "user information is not supported");
    p.host = u.host_address();
    const auto ht = u.host_type();
    p.host_is_ip = ht == boost::urls::host_type::ipv4 || ht == boost::urls::host_type::ipv6;
    if (ht == boost::urls::host_type::ipvfuture) bad(url, "unsupported IP literal");
    if (u.has_port()) {
        if (u.port().empty() || u.port_number() == 0) bad(url, "invalid port");
        p.port = std::string(u.port());
    } else {
        p.port = p.tls ? "443" : "80";
    }
    p.target = std::string(u.encoded_path());
    if (p.target.empty()) p.target = "/";
    if (u.has_query()) {
        p.target += '?';
        p.target += std::string(u.encoded_query());
    }
    p.host_header = std::string(u.encoded_host_and_port());
    return p;
}

}  // namespace evdispatch::detail
