// The sweep chart as SVG, written by hand: two panels, axes with ticks, a polyline with dots
// per series, a legend under the panels.

#include "svg_chart.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

namespace evdispatch::app {

void write_sweep_chart(const std::string& path, const std::string& title,
                       const chart_series& series) {
    std::ofstream f(path);
    const int W = 1040, H = 460, pw = 420, ph = 320, top = 70, left1 = 80, left2 = 570;
    std::vector<std::size_t> sizes;
    double max_rate = 1, max_lat = 1, min_lat = 1e18;
    for (const auto& [label, points] : series)
        for (const auto& p : points) {
            if (std::find(sizes.begin(), sizes.end(), p.batch_size) == sizes.end())
                sizes.push_back(p.batch_size);
            max_rate = std::max(max_rate, p.events_per_sec);
            max_lat = std::max(max_lat, p.p99_ms);
            if (p.p99_ms > 0)
                min_lat = std::min(min_lat, p.p99_ms);
        }
    std::sort(sizes.begin(), sizes.end());
    min_lat = std::max(0.1, std::min(min_lat, max_lat) / 2);
    const double lx0 = std::log10(static_cast<double>(sizes.front()));
    const double lx1 = std::max(lx0 + 1, std::log10(static_cast<double>(sizes.back())));
    auto xpos = [&](int left, std::size_t b) {
        return left + (std::log10(static_cast<double>(b)) - lx0) / (lx1 - lx0) * pw;
    };
    auto yrate = [&](double v) { return top + ph - v / (max_rate * 1.1) * ph; };
    const double ll0 = std::log10(min_lat), ll1 = std::log10(max_lat * 1.5);
    auto ylat = [&](double v) {
        v = std::max(v, min_lat);
        return top + ph - (std::log10(v) - ll0) / (ll1 - ll0) * ph;
    };
    static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
         "fill='white'/>\n";
    f << "<text x='" << W / 2 << "' y='24' text-anchor='middle' font-size='15'>" << title
      << "</text>\n";
    for (int panel = 0; panel < 2; ++panel) {
        const int left = panel == 0 ? left1 : left2;
        auto y = [&](const chart_point& p) {
            return panel == 0 ? yrate(p.events_per_sec) : ylat(p.p99_ms);
        };
        f << "<rect x='" << left << "' y='" << top << "' width='" << pw << "' height='" << ph
          << "' fill='none' stroke='#444'/>\n";
        f << "<text x='" << left + pw / 2 << "' y='" << top - 10 << "' text-anchor='middle'>"
          << (panel == 0 ? "delivered events/s" : "accept-to-ack p99 latency (ms, log)")
          << "</text>\n";
        f << "<text x='" << left + pw / 2 << "' y='" << top + ph + 36
          << "' text-anchor='middle'>batch size (log)</text>\n";
        for (auto b : sizes) {
            const double x = xpos(left, b);
            f << "<line x1='" << x << "' y1='" << top + ph << "' x2='" << x << "' y2='"
              << top + ph + 5 << "' stroke='#444'/><text x='" << x << "' y='" << top + ph + 18
              << "' text-anchor='middle'>" << b << "</text>\n";
        }
        for (int t = 0; t <= 4; ++t) {
            double v, yt;
            if (panel == 0) {
                v = max_rate * 1.1 * t / 4;
                yt = yrate(v);
            } else {
                v = std::pow(10.0, ll0 + (ll1 - ll0) * t / 4);
                yt = ylat(v);
            }
            char buf[32];
            std::snprintf(buf, sizeof buf, panel == 0 ? "%.0fk" : "%.3g",
                          panel == 0 ? v / 1000 : v);
            f << "<line x1='" << left << "' y1='" << yt << "' x2='" << left + pw << "' y2='" << yt
              << "' stroke='#ddd'/><text x='" << left - 6 << "' y='" << yt + 4
              << "' text-anchor='end'>" << buf << "</text>\n";
        }
        int ci = 0;
        for (const auto& [label, points] : series) {
            auto sorted = points;
            std::sort(sorted.begin(), sorted.end(),
                      [](const auto& a, const auto& b) { return a.batch_size < b.batch_size; });
            f << "<polyline fill='none' stroke-width='2' stroke='" << colors[ci % 8]
              << "' points='";
            for (const auto& p : sorted)
                f << xpos(left, p.batch_size) << "," << y(p) << " ";
            f << "'/>\n";
            for (const auto& p : sorted)
                f << "<circle r='3' fill='" << colors[ci % 8] << "' cx='"
                  << xpos(left, p.batch_size) << "' cy='" << y(p) << "'/>\n";
            if (panel == 1)
                f << "<rect x='" << left1 + 10 + 170 * (ci % 5) << "' y='" << H - 28 - 16 * (ci / 5)
                  << "' width='12' height='12' fill='" << colors[ci % 8] << "'/><text x='"
                  << left1 + 26 + 170 * (ci % 5) << "' y='" << H - 18 - 16 * (ci / 5) << "'>"
                  << label << "</text>\n";
            ++ci;
        }
    }
    f << "</svg>\n";
}

}  // namespace evdispatch::app
