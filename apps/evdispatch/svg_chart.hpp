#pragma once

// The chart `evdispatch sweep` draws: an SVG file with two panels, delivered events/s and
// accept-to-ack p99 latency (log scale), against batch size (log scale), a line per series.

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace evdispatch::app {

/// One measured point of a series.
struct chart_point {
    std::size_t batch_size = 1;  ///< x, at least 1.
    double events_per_sec = 0;   ///< Left panel.
    double p99_ms = 0;           ///< Right panel.
};

/// The series by label; drawn, coloured and listed in the legend in label order.
using chart_series = std::map<std::string, std::vector<chart_point>>;

/// Writes the chart to `path` (replacing it). `series` must hold at least one point.
void write_sweep_chart(const std::string& path, const std::string& title,
                       const chart_series& series);

}  // namespace evdispatch::app
