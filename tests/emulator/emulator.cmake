# The CUDA kernel emulator (issue 11): every cuda/*.cu, rewritten by
# rewrite_cu.py and compiled by the host compiler against emu_cuda.h and the
# fake CUDA runtime/cuBLAS/CUB of fake/, is an emulated CudaBackend; the tests
# in this folder run it against the CPU backend. Label "emulator".
if(FWP_ENABLE_CUDA)
  # The emulated CudaBackend would collide with the real one linked into fwp_internal;
  # the CPU-only build (CI) runs the emulator, a CUDA build runs the real kernels.
  message(STATUS "CUDA build: the kernel emulator tests are built only with FWP_ENABLE_CUDA=OFF")
  return()
endif()
find_package(Python3 COMPONENTS Interpreter)
if(NOT Python3_Interpreter_FOUND)
  message(WARNING "python3 not found: the CUDA kernel emulator tests are not built")
  return()
endif()

set(FWP_EMU_DIR ${CMAKE_CURRENT_LIST_DIR})
file(GLOB FWP_EMU_CUDA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/cuda/*.cu)
list(APPEND FWP_EMU_CUDA_SOURCES ${FWP_EMU_DIR}/selftest_kernels.cu)
set(FWP_EMU_GENERATED)
foreach(cu ${FWP_EMU_CUDA_SOURCES})
  get_filename_component(name ${cu} NAME_WE)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/emulated_cuda/${name}.cpp)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/emulated_cuda
    COMMAND Python3::Interpreter ${FWP_EMU_DIR}/rewrite_cu.py ${cu} ${out}
    DEPENDS ${cu} ${FWP_EMU_DIR}/rewrite_cu.py
    COMMENT "Rewriting ${name}.cu for the CUDA emulator" VERBATIM)
  list(APPEND FWP_EMU_GENERATED ${out})
endforeach()

add_library(fwp_emulated_cuda STATIC ${FWP_EMU_GENERATED} ${FWP_EMU_DIR}/emu_runtime.cpp)
# fake/ first, so <cuda_runtime.h>, <cublas_v2.h>, <cuda_pipeline.h> and CUB are the emulator's.
target_include_directories(fwp_emulated_cuda BEFORE PUBLIC ${FWP_EMU_DIR}/fake ${FWP_EMU_DIR})
target_include_directories(fwp_emulated_cuda PRIVATE ${PROJECT_SOURCE_DIR}/cuda)
target_link_libraries(fwp_emulated_cuda PUBLIC fwp_internal Threads::Threads)
fwp_target_defaults(fwp_emulated_cuda)
# `#pragma unroll` is nvcc's; the kernels' unused-variable noise is nvcc's business too.
target_compile_options(fwp_emulated_cuda PRIVATE -Wno-unknown-pragmas -Wno-sign-compare)
# sum_squares' fixed grid, shrunk for emulation (cuda/optimizer_ops.cu says why).
target_compile_definitions(fwp_emulated_cuda PRIVATE FWP_SUM_SQUARES_BLOCKS=16)

add_executable(fwp_emulator_tests ${FWP_EMU_DIR}/test_emulated_kernels.cpp)
target_link_libraries(fwp_emulator_tests PRIVATE fwp_emulated_cuda GTest::gtest GTest::gtest_main)
target_include_directories(fwp_emulator_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/cpp)
fwp_target_defaults(fwp_emulator_tests)
gtest_discover_tests(fwp_emulator_tests DISCOVERY_TIMEOUT 60
  PROPERTIES LABELS emulator TIMEOUT 1200 ENVIRONMENT FWP_EMU_WATCHDOG_S=60)
