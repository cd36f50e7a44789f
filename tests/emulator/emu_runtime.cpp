// The emulator's runtime: launches, barriers, warp exchange, cp.async queue,
// and the fake CUDA runtime and cuBLAS of tests/emulator/fake (see emu_cuda.h).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

namespace fwp_emu {
namespace {

// Seconds a barrier may wait before the emulator calls it a deadlock.
double watchdog_seconds() {
  const char* env = std::getenv("FWP_EMU_WATCHDOG_S");
  return env ? std::atof(env) : 60.0;
}

// Device limits of the emulated architecture: sm_80 (A100) unless FWP_EMU_ARCH=90.
struct DeviceLimits {
  int arch;
  size_t smem_optin;
  int sm_count;
};
DeviceLimits device_limits() {
  const char* env = std::getenv("FWP_EMU_ARCH");
  if (env && std::string(env) == "90") return {90, 227 * 1024, 132};
  return {80, 163 * 1024, 108};
}
constexpr size_t kDefaultSharedLimit = 48 * 1024;

class Barrier {
 public:
  // patience: multiples of the watchdog time (the launcher waits longer than the
  // barriers inside a block, so a deadlock is reported by the barrier that has it).
  void reset(int count, std::string what, double patience = 1.0) {
    count_ = count;
    waiting_ = 0;
    what_ = std::move(what);
    patience_ = patience;
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t generation = generation_;
    if (++waiting_ == count_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    const auto limit = std::chrono::duration<double>(watchdog_seconds() * patience_);
    if (!cv_.wait_for(lock, limit, [&] { return generation_ != generation; })) {
      fail("deadlock: " + what_ + ": " + std::to_string(waiting_) + " of " + std::to_string(count_) +
           " threads waited " + std::to_string(watchdog_seconds()) +
           " s (a barrier or shuffle in divergent code, or threads that returned early)");
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_ = 0, waiting_ = 0;
  uint64_t generation_ = 0;
  std::string what_;
  double patience_ = 1.0;
};

struct WarpState {
  Barrier barrier;
  int threads = 0;
  uint64_t values[32];
  unsigned masks[32];
  int sources[32];
};

struct BlockState {
  std::string kernel;
  Barrier barrier;
  std::vector<std::unique_ptr<WarpState>> warps;
  std::vector<unsigned char> dynamic_shared;
  std::mutex poison_mutex;
  std::map<void*, size_t> static_shared;  // poisoned in this block: address -> bytes
};

struct PendingCopy {
  void* dst;
  const void* src;
  size_t bytes;
};

thread_local BlockState* t_block = nullptr;
thread_local int t_lane = 0, t_warp = 0;
thread_local std::vector<std::vector<PendingCopy>> t_committed;  // oldest first
thread_local std::vector<PendingCopy> t_open;

std::mutex g_opt_in_mutex;
std::map<const void*, int> g_opt_in;  // kernel -> max dynamic shared memory (cudaFuncSetAttribute)
thread_local cudaError_t g_last_error = cudaSuccess;

void complete(std::vector<PendingCopy>& copies) {
  for (const PendingCopy& c : copies) std::memcpy(c.dst, c.src, c.bytes);
  copies.clear();
}

}  // namespace

void fail(const std::string& what) {
  std::fprintf(stderr, "CUDA emulator: %s%s%s\n", t_block ? t_block->kernel.c_str() : "",
               t_block ? ": " : "", what.c_str());
  std::fflush(stderr);
  std::abort();
}

void syncthreads() { t_block->barrier.wait(); }

int lane_id() { return t_lane; }

void* dynamic_shared() { return t_block->dynamic_shared.data(); }

void poison_static_shared(void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(t_block->poison_mutex);
  if (t_block->static_shared.emplace(p, bytes).second) std::memset(p, 0xff, bytes);  // all-ones: NaN
}

uint64_t shuffle_exchange(unsigned mask, uint64_t value, int source_lane, const char* what) {
  WarpState& w = *t_block->warps[static_cast<size_t>(t_warp)];
  w.values[t_lane] = value;
  w.masks[t_lane] = mask;
  w.barrier.wait();  // every lane of the warp has published its value
  const unsigned active = w.threads == 32 ? 0xffffffffu : ((1u << w.threads) - 1u);
  if ((mask & active) != active || (mask & ~active) != 0) {
    fail(std::string(what) + ": mask " + std::to_string(mask) + " does not name exactly the warp's " +
         std::to_string(w.threads) + " threads");
  }
  for (int l = 0; l < w.threads; ++l) {
    if (w.masks[l] != mask) fail(std::string(what) + ": lanes of one warp passed different masks");
  }
  if (source_lane < 0 || source_lane >= w.threads) {
    fail(std::string(what) + ": lane " + std::to_string(t_lane) + " reads lane " + std::to_string(source_lane) +
         ", which does not exist in a warp of " + std::to_string(w.threads) + " threads");
  }
  const uint64_t out = w.values[source_lane];
  w.barrier.wait();  // nobody overwrites its slot before every lane has read
  return out;
}

void pipeline_copy(void* dst, const void* src, size_t bytes) { t_open.push_back({dst, src, bytes}); }

void pipeline_commit() {
  t_committed.push_back(std::move(t_open));
  t_open.clear();
}

void pipeline_wait_prior(int n) {
  // Completes every committed group except the newest n: as late as the wait allows.
  while (static_cast<int>(t_committed.size()) > n) {
    complete(t_committed.front());
    t_committed.erase(t_committed.begin());
  }
}

void set_max_dynamic_shared(const void* kernel, int bytes) {
  std::lock_guard<std::mutex> lock(g_opt_in_mutex);
  g_opt_in[kernel] = bytes;
}

namespace {
std::mutex g_log_mutex;
std::string g_log_path;
std::set<std::string> g_logged_kernels;

}  // namespace

void set_launch_log(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_log_path = path;
  g_logged_kernels.clear();
}

void append_to_launch_log(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_path.empty()) return;
  // One write() of a short line with O_APPEND: lines of test processes running
  // in parallel never interleave.
  const int fd = ::open(g_log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot open the launch log " + g_log_path + ": " + std::strerror(errno));
  const std::string text = line + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) fail("cannot append to the launch log " + g_log_path);
}

void kernel_entered(const char* name) {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    first = !g_log_path.empty() && g_logged_kernels.insert(name).second;
  }
  if (first) append_to_launch_log(std::string("kernel ") + name);
}

bool run_grid(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
              const std::function<void()>& body) {
  const DeviceLimits dev = device_limits();
  const int64_t threads = int64_t{block.x} * block.y * block.z;
  auto reject = [&](cudaError_t e, const std::string& why) {
    std::fprintf(stderr, "CUDA emulator: launch of %s rejected: %s\n", name, why.c_str());
    g_last_error = e;
    return false;
  };
  if (threads <= 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
    return reject(cudaErrorInvalidConfiguration, "empty grid or block");
  }
  if (threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    return reject(cudaErrorInvalidConfiguration, "block of " + std::to_string(threads) + " threads");
  }
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    return reject(cudaErrorInvalidConfiguration, "grid too large");
  }
  size_t allowed = kDefaultSharedLimit;
  {
    std::lock_guard<std::mutex> lock(g_opt_in_mutex);
    auto it = g_opt_in.find(kernel);
    if (it != g_opt_in.end()) allowed = std::max(allowed, static_cast<size_t>(it->second));
  }
  if (allowed > dev.smem_optin) {
    return reject(cudaErrorInvalidValue, "opt-in above the sm_" + std::to_string(dev.arch) + " maximum");
  }
  if (smem > allowed) {
    return reject(cudaErrorInvalidValue, std::to_string(smem) + " bytes of dynamic shared memory, " +
                                             std::to_string(allowed) + " allowed (opt-in missing?)");
  }

  // One OS thread per CUDA thread of a block, reused for every block of the
  // grid (blocks run one after another): the launcher prepares a block while
  // the threads wait at `start`, and waits at `finish` for all of them.
  const int warps = static_cast<int>((threads + 31) / 32);
  const int64_t blocks = int64_t{grid.x} * grid.y * grid.z;
  BlockState state;
  state.kernel = name;
  for (int w = 0; w < warps; ++w) {
    auto ws = std::make_unique<WarpState>();
    ws->threads = static_cast<int>(std::min<int64_t>(32, threads - int64_t{w} * 32));
    state.warps.push_back(std::move(ws));
  }
  Barrier start, finish;
  start.reset(static_cast<int>(threads) + 1, "block start", 4.0);
  finish.reset(static_cast<int>(threads) + 1, "block end", 4.0);
  uint3 current{0, 0, 0};
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int64_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      t_lane = static_cast<int>(t % 32);
      t_warp = static_cast<int>(t / 32);
      threadIdx = uint3{static_cast<unsigned>(t % block.x), static_cast<unsigned>((t / block.x) % block.y),
                        static_cast<unsigned>(t / (int64_t{block.x} * block.y))};
      blockDim = block;
      gridDim = grid;
      for (int64_t b = 0; b < blocks; ++b) {
        start.wait();
        t_block = &state;
        blockIdx = current;
        t_committed.clear();
        t_open.clear();
        body();
        // Copies never waited for: a real kernel may not rely on them; complete them.
        for (auto& g : t_committed) complete(g);
        complete(t_open);
        t_committed.clear();
        t_block = nullptr;
        finish.wait();
      }
    });
  }
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        current = uint3{bx, by, bz};
        state.barrier.reset(static_cast<int>(threads), "__syncthreads");
        for (int w = 0; w < warps; ++w) {
          state.warps[static_cast<size_t>(w)]->barrier.reset(state.warps[static_cast<size_t>(w)]->threads,
                                                              "warp " + std::to_string(w) + " shuffle");
        }
        state.dynamic_shared.assign(std::max<size_t>(smem, 16), 0xff);  // NaN in every float and double
        state.static_shared.clear();
        start.wait();
        finish.wait();
        size_t static_bytes = 0;
        for (const auto& kv : state.static_shared) static_bytes += kv.second;
        if (static_bytes + smem > allowed) {
          t_block = &state;
          fail("static (" + std::to_string(static_bytes) + ") plus dynamic (" + std::to_string(smem) +
               ") shared memory exceed the " + std::to_string(allowed) + " bytes allowed");
        }
      }
    }
  }
  for (auto& th : pool) th.join();
  return true;
}

}  // namespace fwp_emu

// ---- the fake CUDA runtime ---------------------------------------------------------------
namespace {
int g_device = 0;
void* allocate_poisoned(size_t bytes) {
  void* p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  if (p) std::memset(p, 0xff, bytes);  // like uninitialised device memory, but loud: NaN
  return p;
}
}  // namespace

cudaError_t cudaGetLastError() {
  const cudaError_t e = fwp_emu::g_last_error;
  fwp_emu::g_last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = g_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  g_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  const fwp_emu::DeviceLimits dev = fwp_emu::device_limits();
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "fwp CUDA emulator (sm_%d)", dev.arch);
  prop->major = dev.arch / 10;
  prop->minor = 0;
  prop->multiProcessorCount = dev.sm_count;
  prop->sharedMemPerBlock = fwp_emu::kDefaultSharedLimit;
  prop->sharedMemPerBlockOptin = dev.smem_optin;
  prop->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static int token;
  *s = reinterpret_cast<cudaStream_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }  // everything ran already
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = allocate_poisoned(bytes);
  return *p ? cudaSuccess : (fwp_emu::g_last_error = cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps*) {
  static int token;
  *pool = reinterpret_cast<cudaMemPool_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaMemPoolDestroy(cudaMemPool_t) { return cudaSuccess; }
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return cudaSuccess; }
cudaError_t cudaMallocFromPoolAsync(void** p, size_t bytes, cudaMemPool_t, cudaStream_t) {
  return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}

// ---- the fake cuBLAS --------------------------------------------------------------------
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  static int token;
  *h = reinterpret_cast<cublasHandle_t>(&token);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetPointerMode(cublasHandle_t, cublasPointerMode_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasSgemmStridedBatched_64(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
                                            int64_t n, int64_t k, const float* alpha, const float* A, int64_t lda,
                                            int64_t strideA, const float* B, int64_t ldb, int64_t strideB,
                                            const float* beta, float* C, int64_t ldc, int64_t strideC,
                                            int64_t batch) {
  // cuBLAS's argument rules (it rejects what the real library rejects, e.g. lda = 0).
  if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max<int64_t>(1, ta == CUBLAS_OP_N ? m : k)) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldb < std::max<int64_t>(1, tb == CUBLAS_OP_N ? k : n)) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldc < std::max<int64_t>(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  for (int64_t b = 0; b < batch; ++b) {
    const float* a = A + b * strideA;
    const float* bb = B + b * strideB;
    float* c = C + b * strideC;
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        double acc = 0.0;
        for (int64_t l = 0; l < k; ++l) {
          const float x = ta == CUBLAS_OP_N ? a[i + l * lda] : a[l + i * lda];
          const float y = tb == CUBLAS_OP_N ? bb[l + j * ldb] : bb[j + l * ldb];
          acc += static_cast<double>(x) * y;
        }
        float& out = c[i + j * ldc];
        out = static_cast<float>(*alpha * acc + (*beta == 0.0f ? 0.0 : static_cast<double>(*beta) * out));
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm_64(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                              int64_t k, const float* alpha, const float* A, int64_t lda, const float* B,
                              int64_t ldb, const float* beta, float* C, int64_t ldc) {
  return cublasSgemmStridedBatched_64(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
