#include <evdispatch/endpoint_url.hpp>

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>
#include <optional>

namespace evdispatch {

namespace {
[[noreturn]] void bad(std::string_view url, std::string_view why) {
    throw boost::system::system_error(
        make_error_code(error::invalid_url),
        "invalid endpoint URL \"" + std::string(url) + "\": " + std::string(why));
}

// The authority as written ("host[:port]" after any "userinfo@"), up to the path, query or
// fragment; empty when there is no "//". Read from the text itself: Boost.URL 1.81 ends the
// authority at the first character a port cannot hold and takes the rest as the path
// ("http://h:8a/x" parses as port "8", path "a/x"), so its port cannot be trusted alone.
std::string_view raw_authority(std::string_view url) {
    const auto sep = url.find("://");
    if (sep == std::string_view::npos)
        return {};
    auto a = url.substr(sep + 3);
    a = a.substr(0, std::min(a.find_first_of("/?#"), a.size()));
    if (const auto at = a.rfind('@'); at != std::string_view::npos)
        a.remove_prefix(at + 1);
    return a;
}

// Boost.URL reports only where parsing stopped: name the usual mistakes instead.
[[noreturn]] void not_a_uri(std::string_view url, std::string_view boost_reason) {
    if (url.find("://") == std::string_view::npos)
        bad(url, "not an absolute URL: expected http://host[:port]/path or https://...");
    const auto a = raw_authority(url);
    if (!a.empty() && a.front() == '[' && a.find(']') == std::string_view::npos)
        bad(url, "unclosed '[' in an IPv6 address (write http://[::1]:8080/path)");
    bad(url, "not a valid URL (" + std::string(boost_reason) + ")");
}

// The port as written: from the authority's text after the host. Returns the number, or
// nullopt when the URL has none (default port).
std::optional<std::uint16_t> port_of(std::string_view url) {
    auto a = raw_authority(url);
    std::string_view rest;
    if (!a.empty() && a.front() == '[') {
        rest = a.substr(a.find(']') + 1);  // the ']' is there: Boost.URL parsed the host
    } else if (const auto colon = a.find(':'); colon != std::string_view::npos) {
        rest = a.substr(colon);
    }
    if (rest.empty())
        return std::nullopt;
    if (rest.front() != ':')
        bad(url, "unexpected text after the host: \"" + std::string(rest) + "\"");
    const auto text = rest.substr(1);
    if (text.empty())
        bad(url, "empty port: write a number from 1 to 65535 after the ':', or leave both out");
    if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        bad(url, "the port \"" + std::string(text) + "\" is not a number (1-65535)");
    std::uint32_t n = 0;
    for (char c : text) {
        n = n * 10 + static_cast<std::uint32_t>(c - '0');
        if (n > 65535)
            break;
    }
    if (n == 0 || n > 65535)
        bad(url, "the port " + std::string(text) + " is out of range (1-65535)");
    return static_cast<std::uint16_t>(n);
}
}  // namespace

endpoint_url parse_endpoint_url(std::string_view url) {
    auto r = boost::urls::parse_uri(url);
    if (!r)
        not_a_uri(url, r.error().message());
    const boost::urls::url_view u = *r;
    endpoint_url p;
    const auto scheme = u.scheme_id();
    if (scheme == boost::urls::scheme::https)
        p.tls = true;
    else if (scheme != boost::urls::scheme::http)
        bad(url, "the scheme must be http or https");
    if (!u.has_authority() || u.encoded_host().empty())
        bad(url, "no host");
    if (u.has_userinfo())
        bad(url, "user information is not supported");
    p.host = u.host_address();
    const auto ht = u.host_type();
    p.host_is_ip = ht == boost::urls::host_type::ipv4 || ht == boost::urls::host_type::ipv6;
    if (ht == boost::urls::host_type::ipvfuture)
        bad(url, "unsupported IP literal");
    p.port_number = port_of(url).value_or(p.tls ? 443 : 80);
    p.port = std::to_string(p.port_number);
    p.target = std::string(u.encoded_path());
    if (p.target.empty())
        p.target.push_back('/');  // = "/" trips g++ 12's -Wrestrict
    if (u.has_query()) {
        p.target += '?';
        p.target += std::string(u.encoded_query());
    }
    p.host_header = std::string(u.encoded_host_and_port());
    return p;
}

}  // namespace evdispatch
