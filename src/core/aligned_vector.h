// Host scratch vectors aligned like the backend's buffers (64 bytes).
//
// Why: Eigen's vectorised reductions (sum, dot, matrix-vector products) over an
// unaligned Map start with a scalar "peel" up to the first aligned address, so
// their rounding depends on the address's alignment. std::vector's memory is
// only 16-byte aligned, so a sum over it could change in the last bit whenever
// the heap layout changed (an evaluation between training steps was enough to
// break bit-exact resume). Every host scratch array that Eigen reduces over
// must be an AlignedVector.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace fwp {

constexpr std::size_t kHostAlignment = 64;

template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > (static_cast<std::size_t>(-1) - kHostAlignment) / sizeof(T)) throw std::bad_alloc();
    // aligned_alloc wants a multiple of the alignment.
    const std::size_t bytes = (n * sizeof(T) + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    void* p = std::aligned_alloc(kHostAlignment, bytes == 0 ? kHostAlignment : bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { std::free(p); }

  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const CacheAlignedAllocator<U>&) const noexcept { return false; }
};

template <typename T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

}  // namespace fwp
