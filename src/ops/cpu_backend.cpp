// CpuBackend: memory, copies, layout changes, elementwise ops and the factory.
#include "ops/cpu_backend.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "ops/cpu_parallel.h"

namespace fwp {

namespace {

// Cache-line alignment: full AVX-512 vectors and no false sharing between
// buffers handed to different threads.
constexpr size_t kAlignment = 64;

void* aligned_bytes(int64_t n, size_t element_size) {
  require(n >= 0, FWP_ERR_INTERNAL, "CPU allocation of a negative element count (" + std::to_string(n) + ")");
  if (n == 0) return nullptr;
  const auto count = static_cast<uint64_t>(n);
  if (count > (std::numeric_limits<size_t>::max() - kAlignment) / element_size) {
    throw Error(FWP_ERR_OUT_OF_MEMORY,
                "CPU allocation of " + std::to_string(n) + " elements overflows the address space");
  }
  // std::aligned_alloc wants a size that is a multiple of the alignment.
  const size_t bytes = (static_cast<size_t>(count) * element_size + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (!p) {
    throw Error(FWP_ERR_OUT_OF_MEMORY, "CPU allocation of " + std::to_string(bytes) + " bytes failed");
  }
  return p;
}

// Memory-bound copies only profit from a second thread when they are large.
constexpr int64_t kCopyElementsPerThread = 1 << 18;
constexpr size_t kCopyBlockBytes = size_t(kCopyElementsPerThread) * sizeof(float);

// Copies bytes from src to dst; identical ranges are a no-op. Large copies
// between disjoint ranges are split into blocks of kCopyBlockBytes over the
// threads (like fill: in the retrieval model's 1-thread profile the serial
// copies were ~7% of a step); overlapping ranges take one memmove.
void copy_bytes(int threads, void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  const auto d = reinterpret_cast<uintptr_t>(dst), s = reinterpret_cast<uintptr_t>(src);
  const bool disjoint = d + bytes <= s || s + bytes <= d;
  const auto blocks = static_cast<int64_t>((bytes + kCopyBlockBytes - 1) / kCopyBlockBytes);
  if (!disjoint || blocks < 2 || threads <= 1) {
    std::memmove(dst, src, bytes);
    return;
  }
  cpu::parallel_for(threads, blocks, cpu::kMinWorkPerThread, [&](int64_t b0, int64_t b1) {
    const size_t begin = size_t(b0) * kCopyBlockBytes;
    const size_t end = std::min(bytes, size_t(b1) * kCopyBlockBytes);
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, end - begin);
  });
}

}  // namespace

template <typename T>
T* CpuBackend<T>::allocate(int64_t n) {
  return static_cast<T*>(aligned_bytes(n, sizeof(T)));
}

template <typename T>
void CpuBackend<T>::deallocate(T* p) noexcept {
  std::free(p);
}

template <typename T>
int32_t* CpuBackend<T>::allocate_int(int64_t n) {
  return static_cast<int32_t*>(aligned_bytes(n, sizeof(int32_t)));
}

template <typename T>
void CpuBackend<T>::deallocate_int(int32_t* p) noexcept {
  std::free(p);
}

template <typename T>
void CpuBackend<T>::upload(T* dst, const T* host_src, int64_t n) {
  if (n > 0) copy_bytes(num_threads_, dst, host_src, static_cast<size_t>(n) * sizeof(T));
}

template <typename T>
void CpuBackend<T>::download(T* host_dst, const T* src, int64_t n) {
  if (n > 0) copy_bytes(num_threads_, host_dst, src, static_cast<size_t>(n) * sizeof(T));
}

template <typename T>
void CpuBackend<T>::upload_int(int32_t* dst, const int32_t* host_src, int64_t n) {
  if (n > 0) copy_bytes(num_threads_, dst, host_src, static_cast<size_t>(n) * sizeof(int32_t));
}

template <typename T>
void CpuBackend<T>::copy(T* dst, const T* src, int64_t n) {
  if (n > 0) copy_bytes(num_threads_, dst, src, static_cast<size_t>(n) * sizeof(T));
}

template <typename T>
void CpuBackend<T>::fill(T* dst, T value, int64_t n) {
  const int64_t blocks = (n + kCopyElementsPerThread - 1) / kCopyElementsPerThread;
  cpu::parallel_for(num_threads_, blocks, cpu::kMinWorkPerThread, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kCopyElementsPerThread;
    const int64_t end = std::min(n, b1 * kCopyElementsPerThread);
    std::fill(dst + begin, dst + end, value);
  });
}

// ---- schedule --------------------------------------------------------------------

template <typename T>
void CpuBackend<T>::for_each_block(int64_t items, int64_t bytes_per_item,
                                   const std::function<void(int64_t, int64_t)>& fn) {
  if (items <= 0) return;
  // Blocks of about half a core's L2 cache (at least one item each), claimed
  // dynamically by the pool's threads; the ops a block runs see a parallel
  // region and stay on its thread.
  constexpr int64_t kBlockBytes = int64_t(512) << 10;
  const int64_t per_block = std::clamp<int64_t>(kBlockBytes / std::max<int64_t>(bytes_per_item, 1), 1, items);
  const int64_t blocks = (items + per_block - 1) / per_block;
  auto run_block = [&](int64_t b) { fn(b * per_block, std::min(items, (b + 1) * per_block)); };
  // Balancing needs a few blocks per thread; with fewer (a small batch), the
  // blocks run one after another and each op spreads over the threads itself.
  if (num_threads_ <= 1 || blocks < int64_t{4} * num_threads_ || in_parallel_region()) {
    for (int64_t b = 0; b < blocks; ++b) run_block(b);
    return;
  }
  cpu::FlushDenormals flush;
  run_in_pool(static_cast<int>(std::min<int64_t>(num_threads_, blocks)), blocks, run_block);
}

// ---- layout ---------------------------------------------------------------------

template <typename T>
void CpuBackend<T>::split_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  // One (b, h) pair per item: T_ rows of D contiguous elements each.
  cpu::parallel_for(num_threads_, B * H, T_ * D, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / H, h = i % H;
      for (int64_t t = 0; t < T_; ++t) {
        std::memcpy(out + ((b * H + h) * T_ + t) * D, in + ((b * T_ + t) * H + h) * D, sizeof(T) * D);
      }
    }
  });
}

template <typename T>
void CpuBackend<T>::merge_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
  // One (b, t) pair per item: writes one contiguous row of H * D elements.
  cpu::parallel_for(num_threads_, B * T_, H * D, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / T_, t = i % T_;
      for (int64_t h = 0; h < H; ++h) {
        std::memcpy(out + ((b * T_ + t) * H + h) * D, in + ((b * H + h) * T_ + t) * D, sizeof(T) * D);
      }
    }
  });
}

// ---- elementwise -------------------------------------------------------------------

namespace {
constexpr int64_t kElementwiseBlock = 1 << 14;
}

template <typename T>
void CpuBackend<T>::sigmoid_forward(const T* x, T* y, int64_t n) {
  const int64_t blocks = (n + kElementwiseBlock - 1) / kElementwiseBlock;
  cpu::parallel_for(num_threads_, blocks, 8 * kElementwiseBlock, [&](int64_t b0, int64_t b1) {
    // With e = exp(-|x|) <= 1: sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e)
    // otherwise. Both forms are accurate to a few ulp relative (unlike
    // 1 / (1 + exp(-x)) for very negative x, or Eigen's float logistic, whose
    // relative error reaches 1e-3 in the tail), and never overflow. e goes to a
    // small buffer first so that y may alias x.
    constexpr int64_t kChunk = 256;
    alignas(64) T e[kChunk];
    const int64_t end = std::min(n, b1 * kElementwiseBlock);
    for (int64_t c0 = b0 * kElementwiseBlock; c0 < end; c0 += kChunk) {
      const int64_t len = std::min(kChunk, end - c0);
      cpu::ArrMap<T>(e, len) = (-cpu::ConstArrMap<T>(x + c0, len).abs()).exp();
      for (int64_t i = 0; i < len; ++i) y[c0 + i] = (x[c0 + i] >= T(0) ? T(1) : e[i]) / (T(1) + e[i]);
    }
  });
}

template <typename T>
void CpuBackend<T>::sigmoid_backward(const T* y, const T* dy, T* dx, int64_t n) {
  const int64_t blocks = (n + kElementwiseBlock - 1) / kElementwiseBlock;
  cpu::parallel_for(num_threads_, blocks, 2 * kElementwiseBlock, [&](int64_t b0, int64_t b1) {
    const int64_t begin = b0 * kElementwiseBlock;
    const int64_t len = std::min(n, b1 * kElementwiseBlock) - begin;
    const auto ya = cpu::ConstArrMap<T>(y + begin, len);
    cpu::ArrMap<T>(dx + begin, len) = cpu::ConstArrMap<T>(dy + begin, len) * ya * (T(1) - ya);
  });
}

// ---- factory ---------------------------------------------------------------------------

template <typename T>
std::shared_ptr<Backend<T>> make_cpu_backend(int num_threads) {
  return std::make_shared<CpuBackend<T>>(num_threads);
}

template class CpuBackend<float>;
template class CpuBackend<double>;
template std::shared_ptr<Backend<float>> make_cpu_backend<float>(int);
template std::shared_ptr<Backend<double>> make_cpu_backend<double>(int);

}  // namespace fwp
