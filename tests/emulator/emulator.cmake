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
# The stand-in cuBLAS of fake/ is linked, not opened at run time (cuda/cublas_loader.h).
target_compile_definitions(fwp_emulated_cuda PUBLIC FWP_CUBLAS_LINKED=1)

add_executable(fwp_emulator_tests ${FWP_EMU_DIR}/test_emulated_kernels.cpp)
target_link_libraries(fwp_emulator_tests PRIVATE fwp_emulated_cuda GTest::gtest)
# Kernel coverage: each test process appends the kernels it launched to this
# log; check_kernel_coverage.py, run after all of them, fails on a kernel of
# cuda/*.cu that none launched (skips when only some tests ran).
set(FWP_EMU_LAUNCH_LOG ${CMAKE_CURRENT_BINARY_DIR}/emulator_launches.log)
target_compile_definitions(fwp_emulator_tests PRIVATE FWP_EMU_DEFAULT_LAUNCH_LOG="${FWP_EMU_LAUNCH_LOG}")
target_include_directories(fwp_emulator_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/cpp)
fwp_target_defaults(fwp_emulator_tests)
gtest_discover_tests(fwp_emulator_tests DISCOVERY_TIMEOUT 60
  PROPERTIES LABELS emulator TIMEOUT 1200 ENVIRONMENT FWP_EMU_WATCHDOG_S=60 FIXTURES_REQUIRED emulator_launch_log)

file(GLOB FWP_EMU_BACKEND_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/cuda/*.cu)
add_test(NAME emulator_launch_log_reset COMMAND ${CMAKE_COMMAND} -E rm -f ${FWP_EMU_LAUNCH_LOG})
set_tests_properties(emulator_launch_log_reset PROPERTIES FIXTURES_SETUP emulator_launch_log LABELS emulator)
add_test(NAME emulator_kernel_coverage
  COMMAND Python3::Interpreter ${FWP_EMU_DIR}/check_kernel_coverage.py --log ${FWP_EMU_LAUNCH_LOG}
          --tests-binary $<TARGET_FILE:fwp_emulator_tests> ${FWP_EMU_BACKEND_SOURCES})
set_tests_properties(emulator_kernel_coverage PROPERTIES FIXTURES_CLEANUP emulator_launch_log LABELS emulator
  SKIP_RETURN_CODE 77)
# The check itself fails on a log that misses a kernel (and skips on a partial run).
add_test(NAME emulator_kernel_coverage_detects_a_missing_kernel
  COMMAND ${CMAKE_COMMAND} -DSCRIPT=${FWP_EMU_DIR}/check_kernel_coverage.py -DPYTHON=$<TARGET_FILE:Python3::Interpreter>
          -DWORK=${CMAKE_CURRENT_BINARY_DIR}/coverage_selftest -P ${FWP_EMU_DIR}/coverage_selftest.cmake)
set_tests_properties(emulator_kernel_coverage_detects_a_missing_kernel PROPERTIES LABELS emulator)
