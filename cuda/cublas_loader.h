// cuBLAS, opened when the first CudaBackend is made rather than when the
// process starts. Why: a process that links libcublas runs cuBLASLt's static
// initialisers at start-up, 0.16-0.21 s on this project's 2-core machines
// (measured on an empty program linked against it), whether or not it ever
// touches a GPU: the CLI on the CPU, every test process. Opening it with
// dlopen() on first use puts that cost where cuBLAS is really used.
//
// The calls go through a table of function pointers with cuBLAS's own types
// (decltype of the declarations in <cublas_v2.h>), so a changed signature is
// a compile error, not a wrong call. The CUDA kernel emulator
// (tests/emulator) links its stand-in cuBLAS directly: there FWP_CUBLAS_LINKED
// is defined and the table points at the linked functions.
#pragma once

#include <cublas_v2.h>

#include <string>

namespace fwp {
namespace cuda {

struct CublasApi {
  decltype(&cublasCreate) create = nullptr;
  decltype(&cublasDestroy) destroy = nullptr;
  decltype(&cublasSetStream) set_stream = nullptr;
  decltype(&cublasSetPointerMode) set_pointer_mode = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_64) sgemm = nullptr;
  decltype(&cublasSgemmStridedBatched_64) sgemm_strided_batched = nullptr;
};

#ifdef FWP_CUBLAS_LINKED
inline const CublasApi& cublas_api() {
  static const CublasApi api{&cublasCreate,      &cublasDestroy,  &cublasSetStream,
                             &cublasSetPointerMode, &cublasSetMathMode, &cublasSgemm_64,
                             &cublasSgemmStridedBatched_64};
  return api;
}
#else
// The cuBLAS this build was compiled against (its soname; then the same name in
// the toolkit's library folder of the build machine), opened on the first call
// and kept until the process exits. Thread-safe. Throws Error(FWP_ERR_DEVICE)
// naming the library and the loader's message when it cannot be opened or lacks
// a function; a later call tries again.
const CublasApi& cublas_api();

// Opens `library` (a name for the dynamic loader's search, or a path) and looks
// up every function of CublasApi in it; throws as cublas_api() does. For tests
// and for cublas_api() itself.
CublasApi load_cublas(const std::string& library);

// The names cublas_api() tries, in order.
const char* const* cublas_library_candidates();

// True once any cuBLAS library was opened by this process through this file.
bool cublas_library_opened();
#endif

}  // namespace cuda
}  // namespace fwp
