#include "options.hpp"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace evdispatch::app {

option_parser::option_parser(std::vector<std::string> valued, std::vector<std::string> flags)
    : valued_(std::move(valued)), flags_(std::move(flags)) {}

void option_parser::parse(const std::vector<std::string>& args) {
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string a = args[i];
        if (a.rfind("--", 0) != 0)
            throw usage_error("unexpected argument '" + a + "'");
        a = a.substr(2);
        std::string value;
        bool inline_value = false;
        if (auto eq = a.find('='); eq != std::string::npos) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
            inline_value = true;
        }
        const bool is_valued = std::find(valued_.begin(), valued_.end(), a) != valued_.end();
        const bool is_flag = std::find(flags_.begin(), flags_.end(), a) != flags_.end();
        if (!is_valued && !is_flag)
            throw usage_error("unknown option --" + a);
        if (is_flag) {
            if (inline_value)
                throw usage_error("option --" + a + " takes no value");
            values_[a] = "1";
            continue;
        }
        if (!inline_value) {
            if (i + 1 >= args.size())
                throw usage_error("option --" + a + " needs a value");
            value = args[++i];
        }
        values_[a] = value;
    }
}

std::string option_parser::str(const std::string& name, const std::string& def) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : it->second;
}

std::uint64_t option_parser::u64(const std::string& name, std::uint64_t def, std::uint64_t min,
                                 std::uint64_t max) const {
    auto it = values_.find(name);
    if (it == values_.end())
        return def;
    const std::string& s = it->second;
    std::uint64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size())
        throw usage_error("--" + name + ": '" + s + "' is not a non-negative integer");
    if (v < min || v > max)
        throw usage_error("--" + name + ": " + s + " is out of range [" + std::to_string(min) +
                          ", " + std::to_string(max) + "]");
    return v;
}

double option_parser::num(const std::string& name, double def, double min, double max) const {
    auto it = values_.find(name);
    if (it == values_.end())
        return def;
    const std::string& s = it->second;
    double v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || !std::isfinite(v))
        throw usage_error("--" + name + ": '" + s + "' is not a number");
    if (v < min || v > max)
        throw usage_error("--" + name + ": " + s + " is out of range");
    return v;
}

std::chrono::milliseconds option_parser::ms(const std::string& name, std::chrono::milliseconds def,
                                            const char* unit) const {
    auto it = values_.find(name);
    if (it == values_.end())
        return def;
    std::string s = it->second;
    double scale = std::string(unit) == "s" ? 1000.0 : 1.0;
    auto ends = [&](const char* suf) {
        const std::string x(suf);
        return s.size() > x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (ends("ms")) {
        scale = 1.0;
        s.resize(s.size() - 2);
    } else if (ends("s")) {
        scale = 1000.0;
        s.resize(s.size() - 1);
    } else if (ends("m")) {
        scale = 60000.0;
        s.resize(s.size() - 1);
    }
    double v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || !std::isfinite(v) || v < 0)
        throw usage_error("--" + name + ": '" + it->second +
                          "' is not a duration (e.g. 250ms, 2s, 1m)");
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(v * scale)));
}

std::vector<std::string> split_list(const std::string& value) {
    std::vector<std::string> items;
    std::size_t begin = 0;
    for (;;) {
        const auto comma = value.find(',', begin);
        if (comma == std::string::npos) {
            items.push_back(value.substr(begin));
            return items;
        }
        items.push_back(value.substr(begin, comma - begin));
        begin = comma + 1;
    }
}

host_port parse_host_port(const std::string& name, const std::string& value, unsigned min_port) {
    auto bad = [&](const std::string& why) {
        return usage_error("--" + name + ": '" + value + "': " + why);
    };
    std::string host, port;
    if (!value.empty() && value.front() == '[') {
        const auto close = value.find(']');
        if (close == std::string::npos)
            throw bad("no ']' after the IPv6 address");
        host = value.substr(1, close - 1);
        if (close + 1 >= value.size() || value[close + 1] != ':')
            throw bad("no port (HOST:PORT, e.g. [::1]:8080)");
        port = value.substr(close + 2);
    } else {
        const auto colon = value.rfind(':');
        if (colon == std::string::npos)
            throw bad("no port (HOST:PORT, e.g. 127.0.0.1:8080)");
        host = value.substr(0, colon);
        if (host.find(':') != std::string::npos)
            throw bad("an IPv6 address goes in brackets (e.g. [::1]:8080)");
        port = value.substr(colon + 1);
    }
    if (host.empty())
        throw bad("no host");
    boost::system::error_code ec;
    boost::asio::ip::make_address(host, ec);
    if (ec)
        throw bad("'" + host + "' is not an IP address");
    if (port.empty())
        throw bad("no port");
    unsigned v = 0;
    const auto r = std::from_chars(port.data(), port.data() + port.size(), v);
    if (r.ptr != port.data() + port.size() ||
        (r.ec != std::errc{} && r.ec != std::errc::result_out_of_range))
        throw bad("the port '" + port + "' is not a decimal number");
    if (r.ec == std::errc::result_out_of_range || v < min_port || v > 65535)
        throw bad("the port " + port + " is out of range [" + std::to_string(min_port) +
                  ", 65535]");
    return {host, static_cast<unsigned short>(v)};
}

}  // namespace evdispatch::app
