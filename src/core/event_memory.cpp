#include "core/event_memory.hpp"

#include <array>
#include <atomic>
#include <mutex>
#include <new>
#include <vector>

#include <pthread.h>

#if defined(__has_include)
#if __has_include(<sanitizer/asan_interface.h>)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

namespace evdispatch::detail::event_memory {
namespace {

// Sizes of whole blocks (header included) of each class; larger requests go to the system
// allocator. An event is a shared_ptr control block (~80 bytes) plus its visitor bytes
// (typically 300-1,500).
constexpr std::array<std::size_t, 5> class_bytes{256, 512, 1024, 2048, 4096};
constexpr std::uint32_t large_class = 0xffffffff;
// Blocks a thread keeps per class in its local lists; beyond that they go back to the system.
constexpr std::size_t local_limit = 4096;
// Releases a return_scope gathers before it hands them back.
constexpr std::size_t gather_limit = 256;

struct pool;

struct alignas(16) header {
    pool* owner;  // null: a large block from the system allocator
    std::uint32_t cls;
};
static_assert(sizeof(header) == 16);

struct node {
    node* next;
};

header* header_of(void* payload) noexcept {
    return reinterpret_cast<header*>(static_cast<char*>(payload) - sizeof(header));
}

struct pool {
    alignas(64) std::atomic<node*> returned{nullptr};  // pushed by other threads
    // The owner thread's part.
    alignas(64) std::array<node*, class_bytes.size()> local{};
    std::array<std::size_t, class_bytes.size()> count{};
    // Written by the owner only (relaxed loads and stores), read by read_stats().
    std::atomic<std::uint64_t> fresh{0};
    std::atomic<std::uint64_t> reused{0};
    std::atomic<std::uint64_t> returned_blocks{0};
    std::atomic<std::uint64_t> large{0};
};

void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Every pool ever made (they live as long as the process: a block may come back to its pool
// at any time), and those whose thread exited, for the next thread to adopt.
struct registry {
    std::mutex mu;
    std::vector<pool*> all;
    std::vector<pool*> parked;
};
registry& reg() {
    // Never destroyed: threads may exit after main. Held across fork(), so that a child
    // forked while another thread adopts or parks a pool does not inherit a locked mutex.
    static registry* r = [] {
        auto* made = new registry;
        pthread_atfork([] { reg().mu.lock(); }, [] { reg().mu.unlock(); },
                       [] { reg().mu.unlock(); });
        return made;
    }();
    return *r;
}

void free_block(node* n) noexcept {
    header* h = header_of(n);
    const std::size_t bytes = class_bytes[h->cls];
    ASAN_UNPOISON_MEMORY_REGION(n, bytes - sizeof(header));
    ::operator delete(static_cast<void*>(h));
}

// Owner thread: keeps `n` in its local list, or frees it when the list is full.
void keep(pool& p, node* n) noexcept {
    const std::uint32_t c = header_of(n)->cls;
    if (p.count[c] >= local_limit) {
        free_block(n);
        return;
    }
    n->next = p.local[c];
    p.local[c] = n;
    ++p.count[c];
    // The rest of the block is free memory: an access through a dangling event is a
    // use-after-free under AddressSanitizer, as with the system allocator.
    ASAN_POISON_MEMORY_REGION(reinterpret_cast<char*>(n) + sizeof(node),
                              class_bytes[c] - sizeof(header) - sizeof(node));
}

void push_chain(pool& p, node* first, node* last) noexcept {
    node* head = p.returned.load(std::memory_order_relaxed);
    do {
        last->next = head;
    } while (!p.returned.compare_exchange_weak(head, first, std::memory_order_release,
                                               std::memory_order_relaxed));
}

// Owner thread: takes everything other threads gave back.
void refill(pool& p) noexcept {
    node* n = p.returned.exchange(nullptr, std::memory_order_acquire);
    std::uint64_t k = 0;
    while (n) {
        node* next = n->next;
        keep(p, n);
        n = next;
        ++k;
    }
    if (k)
        bump(p.returned_blocks, k);
}

void park(pool* p) noexcept {
    for (std::size_t c = 0; c < class_bytes.size(); ++c) {
        node* n = p->local[c];
        while (n) {
            ASAN_UNPOISON_MEMORY_REGION(n, sizeof(node));
            node* next = n->next;
            free_block(n);
            n = next;
        }
        p->local[c] = nullptr;
        p->count[c] = 0;
    }
    auto& r = reg();
    std::lock_guard lk(r.mu);
    try {
        r.parked.push_back(p);  // capacity reserved when the pool was made
    } catch (...) {
    }
}

pool* adopt_or_create() {
    auto& r = reg();
    std::lock_guard lk(r.mu);
    if (!r.parked.empty()) {
        pool* p = r.parked.back();
        r.parked.pop_back();
        return p;
    }
    r.all.reserve(r.all.size() + 1);
    r.parked.reserve(r.all.size() + 1);  // park() never allocates
    auto* p = new pool;
    r.all.push_back(p);
    return p;
}

thread_local pool* t_pool = nullptr;
thread_local bool t_exiting = false;

struct parker {
    ~parker() {
        t_exiting = true;
        if (t_pool)
            park(t_pool);
        t_pool = nullptr;
    }
};
thread_local parker t_parker;

// This thread's pool; null once the thread is exiting (its blocks come from the system then).
pool* current() {
    if (t_pool || t_exiting)
        return t_pool;
    t_pool = adopt_or_create();
    (void)&t_parker;  // constructed now, so that it parks the pool at thread exit
    return t_pool;
}

// The releases a return_scope gathers, by owner.
struct gathered {
    pool* owner = nullptr;
    node* first = nullptr;
    node* last = nullptr;
};
struct gather_state {
    unsigned depth = 0;
    std::size_t total = 0;
    std::array<gathered, 4> by_owner{};
};
thread_local gather_state t_gather;

void flush_gathered() noexcept {
    for (auto& g : t_gather.by_owner) {
        if (g.owner)
            push_chain(*g.owner, g.first, g.last);
        g = gathered{};
    }
    t_gather.total = 0;
}

void give_back(pool& owner, node* n) noexcept {
    if (t_gather.depth == 0) {
        push_chain(owner, n, n);
        return;
    }
    for (int round = 0; round < 2; ++round) {
        for (auto& g : t_gather.by_owner) {
            if (g.owner == &owner) {
                n->next = g.first;
                g.first = n;
                if (++t_gather.total >= gather_limit)
                    flush_gathered();
                return;
            }
            if (!g.owner) {
                g.owner = &owner;
                g.first = g.last = n;
                n->next = nullptr;
                if (++t_gather.total >= gather_limit)
                    flush_gathered();
                return;
            }
        }
        flush_gathered();  // more owners than slots: hand back what is gathered, then retry
    }
}

}  // namespace

void* allocate(std::size_t bytes) {
    const std::size_t total = bytes + sizeof(header);
    std::uint32_t c = large_class;
    for (std::uint32_t i = 0; i < class_bytes.size(); ++i) {
        if (total <= class_bytes[i]) {
            c = i;
            break;
        }
    }
    pool* p = c == large_class ? nullptr : current();
    if (!p) {
        auto* h = static_cast<header*>(::operator new(total));
        h->owner = nullptr;
        h->cls = large_class;
        if (t_pool)
            bump(t_pool->large);
        return h + 1;
    }
    if (!p->local[c])
        refill(*p);
    if (node* n = p->local[c]) {
        ASAN_UNPOISON_MEMORY_REGION(n, class_bytes[c] - sizeof(header));
        p->local[c] = n->next;
        --p->count[c];
        bump(p->reused);
        return n;
    }
    auto* h = static_cast<header*>(::operator new(class_bytes[c]));
    h->owner = p;
    h->cls = c;
    bump(p->fresh);
    return h + 1;
}

void deallocate(void* ptr) noexcept {
    if (!ptr)
        return;
    header* h = header_of(ptr);
    if (!h->owner) {
        ::operator delete(static_cast<void*>(h));
        return;
    }
    auto* n = static_cast<node*>(ptr);
    if (h->owner == t_pool)
        keep(*h->owner, n);
    else
        give_back(*h->owner, n);
}

return_scope::return_scope() noexcept {
    ++t_gather.depth;
}

return_scope::~return_scope() {
    if (--t_gather.depth == 0)
        flush_gathered();
}

stats read_stats() noexcept {
    stats s;
    auto& r = reg();
    std::lock_guard lk(r.mu);
    for (const pool* p : r.all) {
        s.fresh += p->fresh.load(std::memory_order_relaxed);
        s.reused += p->reused.load(std::memory_order_relaxed);
        s.returned += p->returned_blocks.load(std::memory_order_relaxed);
        s.large += p->large.load(std::memory_order_relaxed);
    }
    return s;
}

}  // namespace evdispatch::detail::event_memory
