#pragma once

// Subcommands of the evdispatch program. Each takes the arguments after its name and returns
// the process exit status (0 ok, 1 failure, 2 bad usage or input).

#include <string>
#include <vector>

namespace evdispatch::app {

using args = std::vector<std::string>;

int run_bench(const args& a);
int run_collector(const args& a);
int run_payload(const args& a);
int run_relay(const args& a);
int run_sweep(const args& a);
int run_spool(const args& a);

}  // namespace evdispatch::app
