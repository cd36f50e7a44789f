#!/usr/bin/env bash
# CI step (scripts/test.sh): the configure + build that scripts/gpu-check.sh
# runs on a lent GPU machine, run here with only what that machine has. The
# GPU machine has nvcc, CMake, g++, Eigen and GoogleTest but not nlohmann-json,
# CLI11, fmt, CMocka, Google Benchmark or MPI (so no MPI or NCCL engine), and nothing can be installed there;
# a configure or build failure there wastes the little GPU time a task gets.
# So this hides those packages from CMake (CMAKE_DISABLE_FIND_PACKAGE_<name>)
# and builds exactly gpu-check's targets (fwp_cpp_tests, gpu_fast_weight_bench)
# through gpu-check.sh --build-only, with CUDA on, for sm_90 (the H100/H200;
# gpu-check itself builds for the local GPU, "native", which needs a GPU), or
# for the architectures in FWP_GPU_CHECK_CUDA_ARCH (a CMake list: CI passes
# build/'s "80;90", which include sm_90, so that the CUDA objects and every C++
# object whose flags the hidden packages leave unchanged are ccache hits).
#
# Without nvcc on this machine the same build runs with CUDA off and says so:
# that still proves the dependency part, not the CUDA sources.
# Build directory: FWP_GPU_MACHINE_BUILD_DIR, default build-gpu-machine/ (kept
# between runs; ccache if present).
# Prints the time the build took. Exit status: gpu-check's (0 = built).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
build_dir="${FWP_GPU_MACHINE_BUILD_DIR:-build-gpu-machine}"

disabled="nlohmann_json CLI11 fmt CMocka benchmark MPI"
args=""
for p in $disabled; do args="$args -DCMAKE_DISABLE_FIND_PACKAGE_$p=ON"; done
if ! command -v nvcc > /dev/null; then
  echo "check-gpu-machine-build: WARNING: nvcc not found: building with CUDA OFF (the CUDA sources are NOT checked)"
  args="$args -DFWP_ENABLE_CUDA=OFF"
fi
if command -v ccache > /dev/null; then
  export CMAKE_C_COMPILER_LAUNCHER="${CMAKE_C_COMPILER_LAUNCHER:-ccache}"
  export CMAKE_CXX_COMPILER_LAUNCHER="${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}"
  export CMAKE_CUDA_COMPILER_LAUNCHER="${CMAKE_CUDA_COMPILER_LAUNCHER:-ccache}"
fi

echo "check-gpu-machine-build: packages hidden from CMake: $disabled; CUDA architectures: ${FWP_GPU_CHECK_CUDA_ARCH:-90}"
start=$(date +%s)
rc=0
# The later -DFWP_ENABLE_CUDA=OFF (no nvcc) overrides gpu-check's ON.
FWP_GPU_CHECK_CUDA_ARCH="${FWP_GPU_CHECK_CUDA_ARCH:-90}" FWP_GPU_CHECK_CMAKE_ARGS="$args" \
  bash scripts/gpu-check.sh --build-only --build-dir "$build_dir" || rc=$?
echo "check-gpu-machine-build: configure + build took $(($(date +%s) - start)) s (exit $rc)"
# The packages must really have been hidden: the configure says what it fell back to.
log="$build_dir/gpu-check-logs/configure.log"
for expect in "using the carried copy" "CLI11 and fmt not found" "CMocka not found"; do
  if ! grep -q "$expect" "$log"; then
    echo "check-gpu-machine-build: FAILED: the configure log lacks \"$expect\": the packages were not hidden"
    rc=1
  fi
done
exit "$rc"
