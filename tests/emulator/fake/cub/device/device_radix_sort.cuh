// Emulator stand-in for CUB's DeviceRadixSort: a stable sort by key on the host
// (exempt from emulation: CUB's internals are not the project's code).
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>

#include "cuda_runtime.h"

namespace cub {
struct DeviceRadixSort {
  template <typename K, typename V>
  static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* vals_in,
                               V* vals_out, int64_t n, int begin_bit = 0, int end_bit = sizeof(K) * 8,
                               cudaStream_t = nullptr) {
    if (!temp) {
      temp_bytes = 16;  // something to allocate, as CUB asks for
      return cudaSuccess;
    }
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
    auto key = [&](int64_t i) {
      using U = std::make_unsigned_t<K>;
      const U bits = static_cast<U>(keys_in[i]);
      const int width = end_bit - begin_bit;
      const U mask = width >= static_cast<int>(sizeof(K) * 8) ? ~U(0) : static_cast<U>((U(1) << width) - 1);
      return static_cast<U>((bits >> begin_bit) & mask);
    };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
    std::vector<K> k(static_cast<size_t>(n));
    std::vector<V> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      k[static_cast<size_t>(i)] = keys_in[order[static_cast<size_t>(i)]];
      v[static_cast<size_t>(i)] = vals_in[order[static_cast<size_t>(i)]];
    }
    std::copy(k.begin(), k.end(), keys_out);
    std::copy(v.begin(), v.end(), vals_out);
    return cudaSuccess;
  }
};
}  // namespace cub
