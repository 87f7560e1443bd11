#include <evdispatch/version.hpp>

#ifndef EVDISPATCH_VERSION
#error "EVDISPATCH_VERSION is set by CMake from project(VERSION)"
#endif

namespace evdispatch {

std::string_view version() noexcept {
    return EVDISPATCH_VERSION;
}

}  // namespace evdispatch
