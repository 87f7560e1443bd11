#pragma once

// The sample events of the tests, the benchmark and the micro-benchmarks, written once.

#include <evdispatch/event.hpp>
#include <evdispatch/optimizely/event_builder.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace evdispatch::test {

/// A context (account 12001, revision 42) whose batches go to `url`.
context_ptr make_context(const std::string& url, std::string project = "111001");

/// An experiment impression with 3 attributes (device, is_premium, age) for `user`.
impression_input sample_impression(std::uint64_t user = 0);
/// A conversion (purchase) with 2 attributes, revenue, value and tags, for `user`.
conversion_input sample_conversion(std::uint64_t user = 0);

/// sample_impression(user), built.
event_ptr make_impression(const event_builder& b, std::uint64_t user);

/// The stream `evdispatch bench` sends: impressions with 3 attributes, and one event in 5 a
/// conversion with tags; user ids and attribute values vary with n. make() reuses the inputs it
/// is given (one pair per producer thread), so it allocates only the event.
class workload {
public:
    explicit workload(context_ptr ctx) : builder_(std::move(ctx), false) {}
    event_ptr make(std::uint64_t n, impression_input& imp, conversion_input& conv) const;

private:
    event_builder builder_;
};

/// The micro-benchmarks' visitors: feature-test impressions with one attribute (about 500
/// bytes of visitor JSON), `n` of them from number `first`, all of one shared context.
std::vector<event_ptr> make_visitors(std::size_t n, std::uint64_t first = 0);
/// The context of make_visitors.
const context_ptr& visitors_context();

/// The body a one-event batch of `ev` has (what a synchronous one-POST-per-event dispatcher
/// sends).
std::string single_event_body(const user_event& ev);

}  // namespace evdispatch::test
