// CUDA kernel emulator (issue 11): the device language and the small part of
// the CUDA runtime, cuBLAS and CUB that cuda/*.cu use, for the host compiler.
// The kernels' own source is compiled by g++ (after tests/emulator/rewrite_cu.py
// turns `k<<<cfg>>>(args)` into fwp_emu::launch(k, cfg)(args) and shared
// declarations into calls that poison them), and each launch runs one OS
// thread per CUDA thread, blocks one after another:
//   - __syncthreads() is a block barrier; a warp shuffle is an exchange guarded
//     by a barrier of the warp's threads. A barrier or shuffle reached by only
//     some threads (divergent code) deadlocks, and the watchdog then aborts the
//     process with the kernel's name (the test fails, it never passes silently).
//   - dynamic and static shared memory are filled with NaN before each block.
//   - cp.async (__pipeline_memcpy_async) copies happen at the latest point the
//     thread's __pipeline_wait_prior allows.
//   - launches are checked against the sm_80/sm_90 limits: block <= 1024 threads,
//     grid.y/z <= 65535, dynamic shared memory <= 48 KiB unless the kernel opted
//     in with cudaFuncSetAttribute, never above the device's opt-in maximum.
// Not seen: real concurrency between blocks, memory ordering, timing, the
// internals of cuBLAS/CUB (replaced by plain loops here).
#pragma once

#include <math.h>  // expf, fmaxf, ... in the global namespace, as in device code

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- language keywords ---------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // rewrite_cu.py registers each declaration for poisoning

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// CUDA's min/max overloads for mixed integer and float arguments.
template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

namespace fwp_emu {

// Aborts the process with a message (used for deadlocks and invalid launches
// of the device code, which a real GPU would turn into hangs or garbage).
[[noreturn]] void fail(const std::string& what);

// Per-thread context of the running CUDA thread.
void syncthreads();
int lane_id();  // lane of the calling thread in its warp (threads numbered x fastest, as in CUDA)
void* dynamic_shared();
void poison_static_shared(void* p, size_t bytes);
uint64_t shuffle_exchange(unsigned mask, uint64_t value, int source_lane, const char* what);
void pipeline_copy(void* dst, const void* src, size_t bytes);
void pipeline_commit();
void pipeline_wait_prior(int n);

template <typename T>
T shuffle(unsigned mask, T v, int src, const char* what) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shuffle_exchange(mask, bits, src, what);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// The launch log (tests/emulator/check_kernel_coverage.py reads it): when a path
// is set, the first time a kernel's body runs in the process (rewrite_cu.py
// puts kernel_entered at the top of every __global__ function) appends
// "kernel NAME"; the tests append "test Suite.Name outcome".
void set_launch_log(const std::string& path);
void append_to_launch_log(const std::string& line);
void kernel_entered(const char* name);

// Records a kernel's dynamic shared memory opt-in (cudaFuncSetAttribute).
void set_max_dynamic_shared(const void* kernel, int bytes);
// Runs body(...) as grid x block CUDA threads; returns false (and sets the
// runtime's last error) when the launch exceeds a device limit.
bool run_grid(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
              const std::function<void()>& body);

template <typename... P>
struct Launch {
  void (*kernel)(P...);
  const char* name;
  dim3 grid, block;
  size_t smem;
  template <typename... A>
  void operator()(A&&... args) const {
    std::tuple<P...> params(std::forward<A>(args)...);  // converted once, like the launch does
    auto* k = kernel;
    run_grid(reinterpret_cast<const void*>(k), name, grid, block, smem, [&params, k] {
      std::tuple<P...> copy = params;  // each thread gets its own copy of the by-value parameters
      std::apply(k, copy);
    });
  }
};

template <typename... P, typename S = int>
Launch<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem = 0, S = S()) {
  return Launch<P...>{kernel, name, grid, block, smem};
}

}  // namespace fwp_emu

#define __syncthreads() ::fwp_emu::syncthreads()
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  return fwp_emu::shuffle(mask, v, fwp_emu::lane_id() ^ lane_mask, "__shfl_xor_sync");
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane) {
  return fwp_emu::shuffle(mask, v, src_lane, "__shfl_sync");
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
  const int lane = fwp_emu::lane_id();
  // Beyond the warp's last lane the caller keeps its own value (CUDA semantics).
  const int src = lane + static_cast<int>(delta) < 32 ? lane + static_cast<int>(delta) : lane;
  return fwp_emu::shuffle(mask, v, src, "__shfl_down_sync");
}
inline void __pipeline_memcpy_async(void* dst, const void* src, size_t bytes, size_t = 0) {
  fwp_emu::pipeline_copy(dst, src, bytes);
}
inline void __pipeline_commit() { fwp_emu::pipeline_commit(); }
inline void __pipeline_wait_prior(int n) { fwp_emu::pipeline_wait_prior(n); }
