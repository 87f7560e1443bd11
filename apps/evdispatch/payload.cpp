#include "commands.hpp"

#include <cstdio>

namespace evdispatch::app {

int run_payload(const args&) {
    std::fprintf(stderr, "evdispatch payload: not available in this build yet\n");
    return 2;
}

}  // namespace evdispatch::app
