#pragma once

// Bounded lock-free multi-producer single-consumer ring (after D. Vyukov's bounded queue):
// each slot has a sequence number telling producers and the consumer whose turn it is.
//
// - try_push: lock-free (a CAS on the tail; a producer only retries when another producer won),
//   never blocks, never allocates. Returns full or closed without touching the element.
// - The tail word also carries a "closed" bit, set once by close(). A push either lands before
//   the bit in the tail's modification order (and will be drained) or fails with `closed`:
//   after close() no event can slip in behind the final drain.
// - try_pop: single consumer only (the dispatcher strand).

#include <evdispatch/error.hpp>

#include <boost/system/system_error.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>

namespace evdispatch::detail {

inline constexpr std::size_t cache_line = 64;

enum class push_result { ok, full, closed };

template <class T>
class mpsc_ring {
public:
    static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 63;

    explicit mpsc_ring(std::size_t capacity)
        : capacity_(capacity), slots_(capacity >= 2 ? new slot[capacity] : nullptr) {
        // With one slot a published sequence (pos + 1) would equal the next free position.
        if (capacity < 2)
            throw boost::system::system_error(make_error_code(error::invalid_config),
                                              "queue_capacity must be at least 2");
        for (std::size_t i = 0; i < capacity; ++i)
            slots_[i].seq.store(i, std::memory_order_relaxed);
    }

    mpsc_ring(const mpsc_ring&) = delete;
    mpsc_ring& operator=(const mpsc_ring&) = delete;

    std::size_t capacity() const noexcept { return capacity_; }

    /// Moves `v` in on success; leaves it untouched otherwise.
    push_result try_push(T& v) noexcept {
        std::uint64_t pos = tail_.load(std::memory_order_relaxed);
        for (;;) {
            if (pos & closed_bit)
                return push_result::closed;
            slot& s = slots_[pos % capacity_];
            const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
            const auto dif = static_cast<std::int64_t>(seq - pos);
            if (dif == 0) {
                // seq_cst: this RMW and the caller's later seq_cst load of the drain flag pair
                // with the consumer's seq_cst store of the flag and load of the tail (no lost
                // wake-up; see processor.cpp).
                if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                                std::memory_order_relaxed)) {
                    s.value = std::move(v);
                    s.seq.store(pos + 1, std::memory_order_release);
                    return push_result::ok;
                }
            } else if (dif < 0) {
                // The slot still holds the element from one lap ago: full (unless the tail
                // moved meanwhile, then re-check with the new position).
                const std::uint64_t now = tail_.load(std::memory_order_relaxed);
                if (now == pos)
                    return push_result::full;
                pos = now;
            } else {
                pos = tail_.load(std::memory_order_relaxed);
            }
        }
    }

    /// Consumer only. Returns false when the next element is not published yet (empty, or a
    /// producer is between its CAS and its publish).
    bool try_pop(T& out) noexcept {
        slot& s = slots_[head_ % capacity_];
        const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
        if (seq != head_ + 1)
            return false;
        out = std::move(s.value);
        s.value = T{};
        s.seq.store(head_ + capacity_, std::memory_order_release);
        ++head_;
        popped_.store(head_, std::memory_order_release);
        return true;
    }

    /// Consumer only: whether producers have claimed positions beyond what was popped
    /// (seq_cst, for the wake-up protocol).
    bool has_claimed() const noexcept {
        return (tail_.load(std::memory_order_seq_cst) & ~closed_bit) != head_;
    }

    /// Stops all future pushes. Idempotent; callable from any thread.
    void close() noexcept { tail_.fetch_or(closed_bit, std::memory_order_seq_cst); }
    bool is_closed() const noexcept {
        return (tail_.load(std::memory_order_acquire) & closed_bit) != 0;
    }

    /// Positions claimed by producers so far (any thread). A push that claimed a position
    /// always succeeds, so this is the number of accepted events, including ones whose slot is
    /// not published yet (the processor's `accepted` is this count).
    std::uint64_t pushed() const noexcept {
        return tail_.load(std::memory_order_acquire) & ~closed_bit;
    }
    /// Number of pops so far (any thread).
    std::uint64_t popped() const noexcept { return popped_.load(std::memory_order_acquire); }

private:
    struct alignas(cache_line) slot {
        std::atomic<std::uint64_t> seq{0};
        T value{};
    };

    const std::size_t capacity_;
    std::unique_ptr<slot[]> slots_;
    alignas(cache_line) std::atomic<std::uint64_t> tail_{0};
    alignas(cache_line) std::uint64_t head_ = 0;  // consumer only
    std::atomic<std::uint64_t> popped_{0};
};

}  // namespace evdispatch::detail
