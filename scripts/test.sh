#!/usr/bin/env bash
# The one command that passes every test (README, .ci/run):
#   1. installs what is missing (scripts/setup.sh),
#   2. builds everything in build/ (Release; the CUDA backend is compiled too
#      where nvcc exists, and its GPU tests skip visibly without a GPU),
#   3. runs every registered test: C++ (GoogleTest), C API (CMocka), CLI,
#      examples, Rust bindings (cargo test), Julia/Rust/ABI consistency checks,
#   4. rebuilds the CPU code with AddressSanitizer + UndefinedBehaviorSanitizer
#      in build-asan/ and runs the C++ and C API tests there, and every CUDA
#      kernel under the kernel emulator (tests/emulator; CPU-only builds only),
#   5. builds the Doxygen docs of the public headers with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
export CTEST_OUTPUT_ON_FAILURE=1
# Tests run two at a time on small machines: OpenMP threads that spin at
# barriers would steal the core the other test needs.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

step() { printf '\n==== %s ====\n' "$*"; }

step "setup"
bash scripts/setup.sh

step "build (Release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

step "tests in build/"
ctest --test-dir build -j"$jobs" --timeout 900
step "GPU-machine build in build-gpu-machine/ (no nlohmann-json, CLI11, fmt, CMocka)"; bash scripts/check-gpu-machine-build.sh

step "sanitizer build (ASan + UBSan) in build-asan/"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFWP_SANITIZE=ON -DFWP_ENABLE_CUDA=OFF \
  -DFWP_BUILD_BENCH=OFF -DFWP_BUILD_TOOLS=OFF -DFWP_BUILD_EXAMPLES=OFF -DFWP_BUILD_DOCS=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# Any sanitizer report aborts the test process, so it fails the run.
# allocator_may_return_null: the out-of-memory tests ask for absurd sizes on purpose.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -j"$jobs" -L 'cpp|capi|emulator' --timeout 1800

step "docs (Doxygen, warnings are errors)"
cmake --build build --target docs

step "all tests passed"
