#pragma once

/// @file endpoint_url.hpp
/// Endpoint URLs as evdispatch reads them: parse and check one before using it (for example a
/// URL from a command line or a configuration file).

#include <cstdint>
#include <string>
#include <string_view>

namespace evdispatch {

/// The parts of an http:// or https:// endpoint URL.
struct endpoint_url {
    bool tls = false;               ///< https
    std::string host;               ///< Name or address, without IPv6 brackets.
    bool host_is_ip = false;        ///< host is an IPv4/IPv6 literal (no SNI, IP verification).
    std::string port;               ///< Decimal port, "80"/"443" by default.
    std::uint16_t port_number = 0;  ///< The same as a number, 1-65535.
    std::string target;             ///< Path and query, "/" when empty.
    std::string host_header;        ///< Value of the Host header (as written in the URL).
};

/// Parses an http:// or https:// URL as the HTTP dispatcher does. Throws
/// boost::system::system_error(error::invalid_url) with a message naming the URL and the
/// problem (bad scheme, no host, user information, a port that is empty, not a number or
/// outside 1-65535).
endpoint_url parse_endpoint_url(std::string_view url);

}  // namespace evdispatch
