#pragma once

// The test data (test/data) and the Optimizely vectors in it: reading files, and comparing
// JSON as the vectors define it (ignored paths, attribute order, 0 == 0.0). Shared by the unit
// and integration tests.

#include <boost/json/value.hpp>

#include <string>
#include <string_view>

namespace evdispatch::test {

/// The path of `rel` under test/data.
std::string test_data_path(std::string_view rel);

/// The contents of test/data/`rel`. Throws std::runtime_error when it cannot be read.
std::string read_text(std::string_view rel);

/// test/data/`rel` parsed as JSON. Throws std::runtime_error when it cannot be read and
/// boost::system::system_error when it is not JSON.
boost::json::value read_json(std::string_view rel);

/// The vector file `name` (test/data/vectors/`name`) parsed, as read_json.
boost::json::value read_vector(std::string_view name);

/// Removes a path like "visitors[*].snapshots[*].events[*].uuid" (a `[*]` segment walks every
/// element of the array named before it). Missing members and kinds that do not match are
/// skipped.
void remove_path(boost::json::value& v, std::string_view path);

/// Sorts each visitor's attributes by key then entity_id (the vectors' order is not
/// significant).
void sort_attributes(boost::json::value& payload);

/// JSON equality where numbers compare by value whatever their kind (0 == 0.0), as the vectors
/// specify. Objects compare as unordered key sets.
bool json_equal(const boost::json::value& a, const boost::json::value& b);

}  // namespace evdispatch::test
