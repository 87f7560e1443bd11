#pragma once

// Small command-line option parser shared by the subcommands: --name value, --name=value,
// and flags. Unknown options and bad values are usage errors (exit status 2).

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace evdispatch::app {

/// Thrown for bad usage; main prints it and exits with status 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class option_parser {
public:
    /// `valued`: option names (without --) that take a value; `flags`: those that do not.
    option_parser(std::vector<std::string> valued, std::vector<std::string> flags);

    /// Parses; throws usage_error naming the bad option.
    void parse(const std::vector<std::string>& args);

    bool has(const std::string& name) const { return values_.count(name) != 0; }
    bool flag(const std::string& name) const { return has(name); }
    std::string str(const std::string& name, const std::string& def) const;
    std::uint64_t u64(const std::string& name, std::uint64_t def, std::uint64_t min = 0,
                      std::uint64_t max = UINT64_MAX) const;
    double num(const std::string& name, double def, double min, double max) const;
    /// Durations: "250ms", "2s", "1m", or a plain number in `unit`.
    std::chrono::milliseconds ms(const std::string& name, std::chrono::milliseconds def,
                                 const char* unit = "ms") const;

private:
    std::vector<std::string> valued_, flags_;
    std::map<std::string, std::string> values_;
};

/// The items of a comma-separated option value, in order. Empty items are kept ("1,,2" gives
/// "1", "", "2"; "" gives one empty item): the caller decides whether they are an error.
std::vector<std::string> split_list(const std::string& value);

/// An IP address and a port, from a HOST:PORT option value.
struct host_port {
    std::string host;  ///< An IPv4 or IPv6 address, without brackets.
    unsigned short port = 0;
};

/// Parses the value of option `--name` as HOST:PORT, an IPv6 host in brackets ([::1]:8080). The
/// host must be an IP address and the port a decimal number in [min_port, 65535]. Throws
/// usage_error naming the option and what is wrong.
host_port parse_host_port(const std::string& name, const std::string& value, unsigned min_port);

}  // namespace evdispatch::app
