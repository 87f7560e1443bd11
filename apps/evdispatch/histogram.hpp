#pragma once

// Log-linear histogram of non-negative integer samples (HDR-style: 32 linear sub-buckets per
// power of two, so any percentile is within ~3% of the true value). Fixed size, no allocation
// when recording; one per thread, merged at the end.

#include <array>
#include <bit>
#include <cstdint>

namespace evdispatch::app {

class histogram {
public:
    static constexpr int sub_bits = 5;
    static constexpr int sub = 1 << sub_bits;
    static constexpr int buckets = (64 - sub_bits + 1) * sub;

    void record(std::uint64_t v) noexcept {
        ++counts_[index(v)];
        ++total_;
    }
    void merge(const histogram& o) noexcept {
        for (int i = 0; i < buckets; ++i)
            counts_[i] += o.counts_[i];
        total_ += o.total_;
    }

    /// Value at quantile q in [0,1] (upper edge of the bucket holding it); 0 if empty.
    std::uint64_t quantile(double q) const noexcept {
        if (total_ == 0)
            return 0;
        auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_));
        if (rank >= total_)
            rank = total_ - 1;
        std::uint64_t seen = 0;
        for (int i = 0; i < buckets; ++i) {
            seen += counts_[i];
            if (seen > rank)
                return upper(i);
        }
        return upper(buckets - 1);
    }

private:
    static int index(std::uint64_t v) noexcept {
        if (v < sub)
            return static_cast<int>(v);
        const int msb = 63 - std::countl_zero(v);  // >= sub_bits
        const int shift = msb - sub_bits;
        const int mant = static_cast<int>((v >> shift) & (sub - 1));
        return (shift + 1) * sub + mant;
    }
    static std::uint64_t upper(int i) noexcept {
        if (i < sub)
            return static_cast<std::uint64_t>(i);
        const int shift = i / sub - 1;
        const std::uint64_t mant = static_cast<std::uint64_t>(i % sub) | sub;
        return ((mant + 1) << shift) - 1;
    }

    std::array<std::uint64_t, buckets> counts_{};
    std::uint64_t total_ = 0;
};

}  // namespace evdispatch::app
