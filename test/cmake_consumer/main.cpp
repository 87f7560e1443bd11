// Sends 1,000 impressions to a loopback collector through a batch_event_processor and checks
// that every one arrived once. Exit status 0 when they did.

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/optimizely.hpp>

#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <memory>
#include <string>

int main() {
    evdispatch::collector col;  // 127.0.0.1, a free port
    const evdispatch::processor_config cfg{
        .endpoint = col.url(),
        .batch = {.batch_size = 50, .flush_interval = std::chrono::milliseconds(100)},
    };
    evdispatch::batch_event_processor processor(cfg);
    auto ctx = std::make_shared<evdispatch::event_context>(evdispatch::event_context{
        .account_id = "12001", .project_id = "111001", .revision = "42", .endpoint = cfg.endpoint});
    evdispatch::event_builder builder(ctx);
    int refused = 0;
    for (int i = 0; i < 1000; ++i) {
        const auto r =
            processor.process(builder.make_impression({.user_id = "user-" + std::to_string(i),
                                                       .campaign_id = "111182",
                                                       .experiment_id = "111127",
                                                       .variation_id = "111129",
                                                       .variation_key = "variation",
                                                       .flag_key = "checkout",
                                                       .rule_key = "test_experiment",
                                                       .rule_type = "experiment",
                                                       .enabled = true}));
        if (r != evdispatch::process_result::accepted)
            ++refused;
    }
    const auto report =
        processor.async_close(std::chrono::seconds(10), boost::asio::use_future).get();
    col.stop();
    const auto stats = col.stats();
    std::printf(
        "evdispatch %s: accepted %llu, delivered %llu, refused %d; collector: %llu unique\n",
        std::string(evdispatch::version()).c_str(),
        static_cast<unsigned long long>(report.metrics.accepted),
        static_cast<unsigned long long>(report.delivered), refused,
        static_cast<unsigned long long>(stats.unique_events));
    return report.delivered + static_cast<unsigned>(refused) == 1000 &&
                   stats.unique_events == report.delivered && report.metrics.balanced()
               ? 0
               : 1;
}
