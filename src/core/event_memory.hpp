#pragma once

// Memory for events: one block per event (control block, user_event and visitor bytes), taken
// from a cache of the thread that builds it and given back to that thread's cache when the
// event is released, wherever that happens.
//
// Why: producers build events and the processor's strand releases them. With the system
// allocator every release is a free() of another thread's memory, which takes that thread's
// arena lock (contended by the producer allocating at the same moment). Here a release on
// another thread is a push onto the owner's return stack, and on the strand the pushes of one
// drain are gathered and made once per owner (a `return_scope`).
//
// Threads: allocate() on any thread (it uses that thread's cache); deallocate() on any thread.
// A thread's cache outlives the thread: at thread exit it is parked (its local blocks freed)
// and adopted by the next thread that allocates, so blocks released later still have a home.
// Memory kept: per thread at most `local_limit` blocks per size class in the local lists, plus
// the blocks of events not yet released.

#include <cstddef>
#include <cstdint>

namespace evdispatch::detail::event_memory {

/// A block of at least `bytes`, aligned for any object of at most 16-byte alignment. Throws
/// std::bad_alloc.
void* allocate(std::size_t bytes);

/// Gives back a block from allocate(), on any thread.
void deallocate(void* p) noexcept;

/// While one is alive on a thread, that thread's releases of other threads' blocks are
/// gathered and handed back in one push per owner when it ends (or when 256 are gathered).
/// The processor's drain holds one. Nesting is allowed (the outermost flushes).
class return_scope {
public:
    return_scope() noexcept;
    ~return_scope();
    return_scope(const return_scope&) = delete;
    return_scope& operator=(const return_scope&) = delete;
};

/// Counters of this process's event memory (tests and the benchmark).
struct stats {
    std::uint64_t fresh = 0;     ///< Blocks taken from the system allocator.
    std::uint64_t reused = 0;    ///< Allocations served from a cache.
    std::uint64_t returned = 0;  ///< Blocks handed back by another thread.
    std::uint64_t large = 0;     ///< Allocations too large for the caches (system allocator).
};
stats read_stats() noexcept;

}  // namespace evdispatch::detail::event_memory
