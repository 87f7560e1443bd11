#include <evdispatch/event.hpp>

#include "core/event_memory.hpp"

#include <cstring>

namespace evdispatch {
namespace {

// Allocates the shared_ptr's control block with `extra` bytes after it, from event memory,
// and tells where those bytes start.
template <class T>
struct event_allocator {
    using value_type = T;

    event_allocator(std::size_t extra_bytes, char** tail_out) noexcept
        : extra(extra_bytes), tail(tail_out) {}
    template <class U>
    event_allocator(const event_allocator<U>& o) noexcept  // NOLINT: rebinding
        : extra(o.extra), tail(o.tail) {}

    T* allocate(std::size_t n) {
        auto* p = static_cast<char*>(detail::event_memory::allocate(n * sizeof(T) + extra));
        if (tail)
            *tail = p + n * sizeof(T);
        return reinterpret_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t) noexcept { detail::event_memory::deallocate(p); }

    template <class U>
    friend bool operator==(const event_allocator&, const event_allocator<U>&) noexcept {
        return true;  // any of them frees any block
    }

    std::size_t extra;
    char** tail;  // only used by allocate(), once, inside make_event
};

}  // namespace

event_ptr make_event(context_ptr context, std::string_view visitor_json,
                     std::chrono::steady_clock::time_point created) {
    char* tail = nullptr;
    auto ev =
        std::allocate_shared<user_event>(event_allocator<user_event>(visitor_json.size(), &tail));
    if (!visitor_json.empty())
        std::memcpy(tail, visitor_json.data(), visitor_json.size());
    ev->context = std::move(context);
    ev->visitor_json = std::string_view(tail, visitor_json.size());
    ev->created = created;
    return ev;
}

}  // namespace evdispatch
