#pragma once

// evdispatch bench: what a run measured, as one JSON object or as a table on stdout, and the
// first failure of each drop reason on stderr.

#include "bench_run.hpp"

#include <string>

namespace evdispatch::app {

/// Prints one JSON object on stdout: `ours`'s fields, "config" (the options `o`, with the `url`
/// the runs sent to), and with a baseline "baseline" (its fields) and "speedup".
void print_json(const bench_options& o, const std::string& url, const run_result& ours,
                const run_result* base);

/// Prints `r` as a table on stdout, with a column and a speedup line for `base` when not null.
void print_table(const run_result& r, const run_result* base);

/// One stderr line per reason `r` dropped events for, with what its first failure said.
void report_failures(const run_result& r);

}  // namespace evdispatch::app
