// cuBLAS is opened when the first CUDA backend is made, not when the process
// starts (cuda/cublas_loader.h): a process that never makes one does not map
// libcublas at all, a library that cannot be opened or lacks a function is a
// clear FWP_ERR_DEVICE error, and the cuBLAS of the build loads with every
// function the backend calls. Only in CUDA builds (the CPU-only build has no
// loader; the kernel emulator links its stand-in cuBLAS).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/error.h"
#include "expect_error.h"

#if FWP_HAVE_CUDA
#include "../../cuda/cublas_loader.h"

namespace fwp {
namespace {

// True when a file whose name contains `name` is mapped into this process.
bool mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) return true;
  }
  return false;
}

TEST(CublasLoader, LibcublasIsMappedOnlyOnceOpened) {
  // Linked, it would be mapped before main(); opened at first use, only after.
  EXPECT_EQ(mapped("libcublas"), cuda::cublas_library_opened());
}

TEST(CublasLoader, TheBuildsCublasHasEveryFunction) {
  const char* const* names = cuda::cublas_library_candidates();
  ASSERT_NE(names[0], nullptr);
  EXPECT_NE(std::string(names[0]).find("libcublas.so."), std::string::npos) << names[0];
  // The toolkit fwp was built with is on this machine (it built the test), so
  // the backend's own entry point finds it.
  const cuda::CublasApi* api = nullptr;
  try {
    api = &cuda::cublas_api();
  } catch (const Error& e) {
    FAIL() << e.what();
  }
  EXPECT_TRUE(cuda::cublas_library_opened());
  EXPECT_TRUE(mapped("libcublas"));
  EXPECT_NE(api->create, nullptr);
  EXPECT_NE(api->destroy, nullptr);
  EXPECT_NE(api->set_stream, nullptr);
  EXPECT_NE(api->set_pointer_mode, nullptr);
  EXPECT_NE(api->set_math_mode, nullptr);
  EXPECT_NE(api->sgemm, nullptr);
  EXPECT_NE(api->sgemm_strided_batched, nullptr);
}

TEST(CublasLoader, AMissingLibraryIsADeviceErrorNamingIt) {
  test::expect_error(FWP_ERR_DEVICE, "cannot load cuBLAS (libfwp-no-such-cublas.so.0)",
                     [] { cuda::load_cublas("libfwp-no-such-cublas.so.0"); });
  test::expect_error(FWP_ERR_INVALID_ARGUMENT, "empty library name", [] { cuda::load_cublas(""); });
}

TEST(CublasLoader, ALibraryWithoutCublasIsADeviceErrorNamingTheFunction) {
  // libm is on every Linux machine and has no cuBLAS in it.
  test::expect_error(FWP_ERR_DEVICE, "has no function cublasCreate_v2", [] { cuda::load_cublas("libm.so.6"); });
}

}  // namespace
}  // namespace fwp
#endif
