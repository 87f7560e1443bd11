#pragma once

// Configuration checks, written once: each throws boost::system::system_error with
// error::invalid_config and a message naming the field, its value and the rule.

#include <evdispatch/config.hpp>

namespace evdispatch::detail {

void check_config(const batch_config& c);
void check_config(const retry_config& c);
void check_config(const http_config& c);
void check_config(const health_config& c);
void check_config(const spool_config& c, const batch_config& batch);
/// The whole processor configuration; the HTTP part only when the built-in HTTP dispatcher is
/// used (`custom_dispatcher` false).
void check_config(const processor_config& c, bool custom_dispatcher);

}  // namespace evdispatch::detail
