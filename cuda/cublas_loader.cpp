// cuBLAS opened on first use (cublas_loader.h says why).
#include "cublas_loader.h"

#include <dlfcn.h>

#include <atomic>

#include "core/error.h"

#ifndef FWP_CUBLAS_SONAME
#error "FWP_CUBLAS_SONAME (e.g. \"libcublas.so.13\") is set by CMakeLists.txt"
#endif
#ifndef FWP_CUBLAS_DIR
#define FWP_CUBLAS_DIR ""
#endif

namespace fwp {
namespace cuda {

namespace {

std::atomic<bool> g_opened{false};

// The exported name of a cuBLAS function: <cublas_v2.h> maps several of the
// names the code uses onto versioned symbols (cublasCreate -> cublasCreate_v2).
#define FWP_CUBLAS_STRINGIZE(name) #name
#define FWP_CUBLAS_SYMBOL(name) FWP_CUBLAS_STRINGIZE(name)

template <typename Fn>
void look_up(void* handle, const std::string& library, const char* symbol, Fn* out) {
  dlerror();  // clear an earlier message
  void* address = dlsym(handle, symbol);
  if (address == nullptr) {
    const char* why = dlerror();
    throw Error(FWP_ERR_DEVICE, "cuBLAS library " + library + " has no function " + symbol +
                                    (why ? std::string(" (") + why + ")" : std::string()));
  }
  *out = reinterpret_cast<Fn>(address);
}

}  // namespace

CublasApi load_cublas(const std::string& library) {
  if (library.empty()) throw Error(FWP_ERR_INVALID_ARGUMENT, "load_cublas: empty library name");
  // RTLD_LOCAL: cuBLAS's symbols stay out of the global namespace; the handle
  // is never closed (cuBLAS handles may live until exit).
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw Error(FWP_ERR_DEVICE, "cannot load cuBLAS (" + library + "): " + (why ? why : "unknown reason"));
  }
  g_opened.store(true);
  CublasApi api;
  look_up(handle, library, FWP_CUBLAS_SYMBOL(cublasCreate), &api.create);
  look_up(handle, library, FWP_CUBLAS_SYMBOL(cublasDestroy), &api.destroy);
  look_up(handle, library, FWP_CUBLAS_SYMBOL(cublasSetStream), &api.set_stream);
  look_up(handle, library, FWP_CUBLAS_SYMBOL(cublasSetPointerMode), &api.set_pointer_mode);
  look_up(handle, library, FWP_CUBLAS_SYMBOL(cublasSetMathMode), &api.set_math_mode);
  look_up(handle, library, FWP_CUBLAS_SYMBOL(cublasSgemm_64), &api.sgemm);
  look_up(handle, library, FWP_CUBLAS_SYMBOL(cublasSgemmStridedBatched_64), &api.sgemm_strided_batched);
  return api;
}

const char* const* cublas_library_candidates() {
  static const char* const names[] = {FWP_CUBLAS_SONAME,
                                      FWP_CUBLAS_DIR[0] != '\0' ? FWP_CUBLAS_DIR "/" FWP_CUBLAS_SONAME : nullptr,
                                      nullptr};
  return names;
}

namespace {
CublasApi load_first_candidate() {
  std::string failures;
  for (const char* const* name = cublas_library_candidates(); *name != nullptr; ++name) {
    try {
      return load_cublas(*name);
    } catch (const Error& e) {
      failures += failures.empty() ? e.what() : std::string("; ") + e.what();
    }
  }
  throw Error(FWP_ERR_DEVICE,
              failures + " (the CUDA backend needs the cuBLAS of the CUDA toolkit fwp was built with)");
}
}  // namespace

const CublasApi& cublas_api() {
  // A function-local static is initialised once, thread-safely; when the
  // initialiser throws, the next call runs it again.
  static const CublasApi api = load_first_candidate();
  return api;
}

bool cublas_library_opened() { return g_opened.load(); }

}  // namespace cuda
}  // namespace fwp
