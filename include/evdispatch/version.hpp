#pragma once

/// @file version.hpp
/// The library version.

#include <string_view>

namespace evdispatch {

/// The library version ("MAJOR.MINOR.PATCH"), as given to CMake's project().
std::string_view version() noexcept;

}  // namespace evdispatch
