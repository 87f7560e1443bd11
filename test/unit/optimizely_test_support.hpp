#pragma once

// Helpers of the Optimizely compatibility tests: the test data and vector helpers
// (support/vectors.hpp), and the parts of an event or batch the tests look at.

#include "support/vectors.hpp"

#include <evdispatch/evdispatch.hpp>
#include <evdispatch/optimizely/project_config.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace evdispatch::test {

/// The first visitor of a batch body.
inline const boost::json::object& first_visitor(const boost::json::value& body) {
    return body.at("visitors").at(0).as_object();
}

/// The visitor JSON of an event, parsed.
inline boost::json::value parse_visitor(const event_ptr& ev) {
    return boost::json::parse(ev->visitor_json);
}

}  // namespace evdispatch::test
