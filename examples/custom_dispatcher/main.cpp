// examples/custom_dispatcher: deliver batches somewhere other than HTTP.
//
// The processor does the batching, accounting, retries and shutdown; an event_dispatcher only
// has to send one batch (a log_event: url, verb, headers, JSON body) and report the result.
// This one appends each batch body as one line to a JSON-lines file, the hand-off point of a
// pipeline of your own (a log shipper, a message bus bridge...), and fsyncs it on close.
//
// Usage: evdispatch_example_custom_dispatcher [FILE]   (default: evdispatch_events.jsonl)
// It records 25 impressions in batches of 10, closes the processor, then reads the file back
// and exits non-zero unless it holds 3 lines and 25 visitors.

#include <evdispatch/optimizely.hpp>

#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>

namespace {

namespace asio = boost::asio;

/// Appends each batch body, plus '\n', to a file. The processor calls async_dispatch from its
/// strand, one call at a time (max_in_flight() is 1 by default), so no locking is needed.
class jsonl_file_dispatcher final : public evdispatch::event_dispatcher {
public:
    explicit jsonl_file_dispatcher(const std::string& path)
        : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644)) {
        if (fd_ < 0)
            throw std::system_error(errno, std::generic_category(), "cannot open " + path);
    }
    ~jsonl_file_dispatcher() override { close(); }

    void async_dispatch(
        std::shared_ptr<const evdispatch::log_event> ev,
        asio::any_completion_handler<evdispatch::dispatch_signature> handler) override {
        // The body is one JSON object on one line (the v1 event batch); one write per batch
        // keeps lines whole even if another process appends to the same file.
        std::string line = ev->body + '\n';
        evdispatch::dispatch_result result;
        boost::system::error_code ec;
        std::size_t done = 0;
        while (done < line.size()) {
            ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                // A failed attempt: the processor retries it (retry_config) or drops the batch
                // with a reason; nothing is lost silently.
                ec = boost::system::error_code(errno, boost::system::generic_category());
                result.message = "write failed: " + ec.message();
                break;
            }
            done += static_cast<std::size_t>(n);
        }
        result.bytes_sent = done;
        result.bytes_on_wire = done > 0;
        // The handler may run from inside this call: evdispatch moves it onto its strand.
        std::move(handler)(ec, std::move(result));
    }

    /// Makes what was written durable and closes the file. Call it after the processor has
    /// closed (no batch can come any more).
    void close() {
        if (fd_ >= 0) {
            ::fsync(fd_);
            ::close(fd_);
            fd_ = -1;
        }
    }

private:
    int fd_;
};

}  // namespace

int main(int argc, char** argv) {
    const std::string path = argc > 1 ? argv[1] : "evdispatch_events.jsonl";
    constexpr int events = 25;

    // 1. The dispatcher goes into the processor's hooks; the processor owns its thread here.
    auto dispatcher = std::make_shared<jsonl_file_dispatcher>(path);
    evdispatch::batch_event_processor processor(
        evdispatch::processor_config{.batch = {.batch_size = 10}},
        evdispatch::processor_hooks{.dispatcher = dispatcher});

    // 2. Events are built as usual; the context's endpoint becomes log_event::url, which this
    //    dispatcher ignores.
    auto ctx = std::make_shared<evdispatch::event_context>(
        evdispatch::event_context{.account_id = "12001", .project_id = "111001", .revision = "42"});
    evdispatch::event_builder builder(ctx);
    for (int i = 0; i < events; ++i) {
        auto r = processor.process(builder.make_impression({
            .user_id = "user-" + std::to_string(i),
            .campaign_id = "111182",
            .experiment_id = "111127",
            .variation_id = "111129",
            .variation_key = "variation",
            .rule_key = "test_experiment",
            .rule_type = "experiment",
            .enabled = true,
        }));
        if (r != evdispatch::process_result::accepted) {
            std::cerr << "event " << i << " was not accepted\n";
            return 1;
        }
    }

    // 3. Close: the last, partial batch goes out too. Then fsync and close the file.
    auto report = processor.async_close(std::chrono::seconds(5), asio::use_future).get();
    dispatcher->close();

    // 4. Check what the file holds: one batch per line, every event once.
    std::ifstream in(path);
    std::string line;
    std::size_t lines = 0, visitors = 0;
    while (std::getline(in, line)) {
        ++lines;
        visitors += boost::json::parse(line).at("visitors").as_array().size();
    }
    std::cout << "{\"file\":" << boost::json::serialize(boost::json::string(path))
              << ",\"lines\":" << lines << ",\"visitors\":" << visitors
              << ",\"delivered\":" << report.delivered << "}\n";
    const bool ok =
        lines == 3 && visitors == events && report.delivered == events && report.not_delivered == 0;
    if (!ok)
        std::cerr << "custom_dispatcher: expected 3 lines and " << events << " visitors\n";
    return ok ? 0 : 1;
}
