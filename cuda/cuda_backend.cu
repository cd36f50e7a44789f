// CudaBackend: errors, device selection, the stream, the cuBLAS handle, the
// scratch pool, memory and copies, and the factory.
#include "cuda_backend.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "cuda_common.cuh"

namespace fwp {
namespace cuda {

namespace {
std::string where(const char* call, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  return std::string(call) + " (" + (base ? base + 1 : file) + ":" + std::to_string(line) + ")";
}
}  // namespace

void check(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it so later calls do not see it again
    throw Error(FWP_ERR_OUT_OF_MEMORY, "CUDA out of memory in " + where(call, file, line));
  }
  throw Error(FWP_ERR_DEVICE, "CUDA error in " + where(call, file, line) + ": " + cudaGetErrorName(status) + " (" +
                                  cudaGetErrorString(status) + ")");
}

const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

void check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  if (status == CUBLAS_STATUS_ALLOC_FAILED) {
    throw Error(FWP_ERR_OUT_OF_MEMORY, "cuBLAS out of memory in " + where(call, file, line));
  }
  throw Error(FWP_ERR_DEVICE, "cuBLAS error in " + where(call, file, line) + ": " + cublas_status_name(status));
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw Error(FWP_ERR_DEVICE, std::string("CUDA error launching ") + kernel + " (" + file + ":" +
                                    std::to_string(line) + "): " + cudaGetErrorName(status) + " (" +
                                    cudaGetErrorString(status) + ")");
  }
}

DeviceGuard::DeviceGuard(int device) {
  FWP_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    FWP_CUDA_CHECK(cudaSetDevice(device));
    changed_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (changed_) cudaSetDevice(previous_);
}

namespace {

__global__ void fill_kernel(float* dst, float value, int64_t n) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) dst[i] = value;
}

}  // namespace
}  // namespace cuda

// ---- construction ----------------------------------------------------------------------

CudaBackend::CudaBackend(int device_index) : device_(device_index) {
  int count = 0;
  const cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    cudaGetLastError();
    throw Error(FWP_ERR_DEVICE, std::string("no usable CUDA device: cudaGetDeviceCount failed: ") +
                                    cudaGetErrorString(st));
  }
  if (device_index < 0 || device_index >= count) {
    throw Error(FWP_ERR_DEVICE, "CUDA device index " + std::to_string(device_index) + " is out of range (" +
                                    std::to_string(count) + " device(s) visible)");
  }
  cuda::DeviceGuard guard(device_);
  cudaDeviceProp prop{};
  FWP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  if (prop.major < 8) {
    throw Error(FWP_ERR_DEVICE, std::string("CUDA device ") + prop.name + " has compute capability " +
                                    std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                                    "; fwp's kernels need 8.0 or newer");
  }
  sm_count_ = prop.multiProcessorCount;
  max_smem_optin_ = static_cast<int>(prop.sharedMemPerBlockOptin);

  // Build the members in order; on failure release what exists so far.
  try {
    FWP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    FWP_CUDA_CHECK(cuda::cublas_api().create(&cublas_));
    FWP_CUDA_CHECK(cuda::cublas_api().set_stream(cublas_, stream_));
    FWP_CUDA_CHECK(cuda::cublas_api().set_pointer_mode(cublas_, CUBLAS_POINTER_MODE_HOST));
    // fp32 products are the contract; TF32 tensor cores only on explicit request.
    const char* tf32 = std::getenv("FWP_CUDA_ALLOW_TF32");
    const bool allow_tf32 = tf32 && std::strcmp(tf32, "1") == 0;
    FWP_CUDA_CHECK(
        cuda::cublas_api().set_math_mode(cublas_, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));

    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device_;
    FWP_CUDA_CHECK(cudaMemPoolCreate(&pool_, &props));
    // Keep freed scratch in the pool between calls (it is trimmed when a
    // regular allocation runs out of memory).
    uint64_t threshold = std::numeric_limits<uint64_t>::max();
    FWP_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
  } catch (...) {
    if (pool_) cudaMemPoolDestroy(pool_);
    if (cublas_) cuda::cublas_api().destroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
    throw;
  }
}

CudaBackend::~CudaBackend() {
  int previous = -1;
  const bool have_previous = cudaGetDevice(&previous) == cudaSuccess;
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);
  cuda::cublas_api().destroy(cublas_);
  cudaMemPoolDestroy(pool_);
  cudaStreamDestroy(stream_);
  if (have_previous && previous != device_) cudaSetDevice(previous);
}

// ---- memory ----------------------------------------------------------------------------------

void* CudaBackend::device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  cudaError_t st = cudaMalloc(&p, bytes);
  if (st == cudaErrorMemoryAllocation) {
    // The scratch pool may hold memory that is free for reuse: give it back and retry once.
    cudaGetLastError();
    FWP_CUDA_CHECK(cudaStreamSynchronize(stream_));
    FWP_CUDA_CHECK(cudaMemPoolTrimTo(pool_, 0));
    st = cudaMalloc(&p, bytes);
  }
  if (st == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error(FWP_ERR_OUT_OF_MEMORY, std::string("CUDA out of memory: cudaMalloc of ") + std::to_string(bytes) +
                                           " bytes for " + what + " on device " + std::to_string(device_));
  }
  FWP_CUDA_CHECK(st);
  return p;
}

namespace {
size_t checked_bytes(int64_t n, size_t element_size) {
  if (static_cast<uint64_t>(n) > std::numeric_limits<size_t>::max() / element_size) {
    throw Error(FWP_ERR_OUT_OF_MEMORY, "CUDA allocation of " + std::to_string(n) + " elements overflows");
  }
  return static_cast<size_t>(n) * element_size;
}
}  // namespace

float* CudaBackend::allocate(int64_t n) {
  if (n <= 0) return nullptr;
  cuda::DeviceGuard guard(device_);
  return static_cast<float*>(device_alloc(checked_bytes(n, sizeof(float)), "a float array"));
}

void CudaBackend::deallocate(float* p) noexcept {
  if (!p) return;
  int previous = -1;
  cudaGetDevice(&previous);
  if (previous != device_) cudaSetDevice(device_);
  cudaFree(p);  // errors cannot be reported from here; a broken context fails the next call
  if (previous != device_ && previous >= 0) cudaSetDevice(previous);
}

int32_t* CudaBackend::allocate_int(int64_t n) {
  if (n <= 0) return nullptr;
  cuda::DeviceGuard guard(device_);
  return static_cast<int32_t*>(device_alloc(checked_bytes(n, sizeof(int32_t)), "an int32 array"));
}

void CudaBackend::deallocate_int(int32_t* p) noexcept {
  deallocate(reinterpret_cast<float*>(p));
}

void* CudaBackend::scratch_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t st = cudaMallocFromPoolAsync(&p, bytes, pool_, stream_);
  if (st == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error(FWP_ERR_OUT_OF_MEMORY, "CUDA out of memory: " + std::to_string(bytes) +
                                           " bytes of scratch space on device " + std::to_string(device_));
  }
  FWP_CUDA_CHECK(st);
  return p;
}

void CudaBackend::scratch_free(void* p) noexcept {
  if (p) cudaFreeAsync(p, stream_);
}

// Host pointers may be pageable and may be reused as soon as we return, so
// transfers wait for completion.
void CudaBackend::upload(float* dst, const float* host_src, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  FWP_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, checked_bytes(n, sizeof(float)), cudaMemcpyHostToDevice, stream_));
  FWP_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::download(float* host_dst, const float* src, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  FWP_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, checked_bytes(n, sizeof(float)), cudaMemcpyDeviceToHost, stream_));
  FWP_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::upload_int(int32_t* dst, const int32_t* host_src, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  FWP_CUDA_CHECK(
      cudaMemcpyAsync(dst, host_src, checked_bytes(n, sizeof(int32_t)), cudaMemcpyHostToDevice, stream_));
  FWP_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy(float* dst, const float* src, int64_t n) {
  if (n <= 0 || dst == src) return;
  cuda::DeviceGuard guard(device_);
  FWP_CUDA_CHECK(cudaMemcpyAsync(dst, src, checked_bytes(n, sizeof(float)), cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::fill(float* dst, float value, int64_t n) {
  if (n <= 0) return;
  cuda::DeviceGuard guard(device_);
  if (value == 0.0f && !std::signbit(value)) {
    FWP_CUDA_CHECK(cudaMemsetAsync(dst, 0, checked_bytes(n, sizeof(float)), stream_));
    return;
  }
  cuda::fill_kernel<<<cuda::grid_for(n, cuda::kElementwiseThreads), cuda::kElementwiseThreads, 0, stream_>>>(
      dst, value, n);
  FWP_CUDA_CHECK_LAUNCH("fill_kernel");
}

void CudaBackend::synchronize() {
  cuda::DeviceGuard guard(device_);
  FWP_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- factory ------------------------------------------------------------------------------------

std::shared_ptr<Backend<float>> make_cuda_backend(int device_index) {
  return std::make_shared<CudaBackend>(device_index);
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // e.g. no driver: clear the error, report no devices
    return 0;
  }
  return count;
}

}  // namespace fwp
