#pragma once

// Endpoint URL parsing (Boost.URL), shared by the HTTP dispatcher and the builder.

#include <string>
#include <string_view>

namespace evdispatch::detail {

struct parsed_url {
    bool tls = false;         ///< https
    std::string host;         ///< Name or address, without IPv6 brackets.
    bool host_is_ip = false;  ///< host is an IPv4/IPv6 literal (no SNI, IP verification).
    std::string port;         ///< Numeric service, "80"/"443" by default.
    std::string target;       ///< Path and query, "/" when empty.
    std::string host_header;  ///< Value of the Host header.
};

/// Parses an http:// or https:// URL. Throws boost::system::system_error(error::invalid_url)
/// with a message naming the URL and the problem.
parsed_url parse_endpoint_url(std::string_view url);

}  // namespace evdispatch::detail
