#pragma once

// The streaming (SAX) validator of event-batch bodies, behind a small interface: the parser is
// compiled once, in check.cpp. Used by check_event_batch and by every collector session.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace evdispatch::detail {

// Where the checker sends the uuid of each event it meets.
class uuid_sink {
public:
    // Called once per event, in order; `uuid` is not empty and only valid during the call.
    virtual void on_uuid(std::string_view uuid) = 0;

protected:
    ~uuid_sink() = default;
};

// Validates one body, possibly given in pieces. Reusable after reset(). `sink` must outlive
// the checker.
class batch_checker {
public:
    explicit batch_checker(uuid_sink& sink);
    ~batch_checker();
    batch_checker(const batch_checker&) = delete;
    batch_checker& operator=(const batch_checker&) = delete;

    // Feeds the next piece; `more` is false for the last one. False once the body is invalid
    // (then error() says why); after the last piece, true means the body is a valid batch.
    bool write(std::string_view piece, bool more);
    // Forgets the body so far (the sink keeps what it was given).
    void reset() noexcept;
    const std::string& error() const noexcept;
    // Visitors begun so far.
    std::uint64_t visitors() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace evdispatch::detail
