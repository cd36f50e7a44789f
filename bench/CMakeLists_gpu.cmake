# GPU benchmark of the fast-weight op on the CUDA backend (plain C++, no
# Google Benchmark). Included by bench/CMakeLists.txt when FWP_ENABLE_CUDA is on.
add_executable(gpu_fast_weight_bench ${CMAKE_CURRENT_LIST_DIR}/gpu_fast_weight_bench.cpp)
target_link_libraries(gpu_fast_weight_bench PRIVATE fwp_internal)
# For cuda/cuda_backend.h (the backend's stream, for CUDA event timing).
target_include_directories(gpu_fast_weight_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
fwp_target_defaults(gpu_fast_weight_bench)
