#include "commands.hpp"

#include <cstdio>

namespace evdispatch::app {

int run_collector(const args&) {
    std::fprintf(stderr, "evdispatch collector: not available in this build yet\n");
    return 2;
}

}  // namespace evdispatch::app
