#!/usr/bin/env bash
# The one command that passes every test (README, .ci/run):
#   1. installs what is missing (scripts/setup.sh),
#   2. builds everything in build/ (Release, GCC; the CUDA backend is compiled
#      too where nvcc exists, and its GPU tests skip visibly without a GPU),
#   3. runs every registered test there: C++ (GoogleTest), C API (CMocka), CLI,
#      examples, Rust bindings (cargo test), Julia/Rust/ABI consistency checks,
#      the fuzz corpus replay,
#   4. configures and builds what a lent GPU machine builds, with only the
#      packages that machine has (scripts/check-gpu-machine-build.sh, in
#      build-gpu-machine/; for build/'s CUDA architectures, so that ccache
#      serves every object whose flags did not change),
#   5. rebuilds the CPU code with clang, AddressSanitizer + UndefinedBehaviorSanitizer
#      and libFuzzer's coverage (FWP_FUZZ) in build-asan/, and runs there the C++
#      and C API tests, every CUDA kernel under the kernel emulator (tests/emulator)
#      and each fuzz target (checkpoint, tokenizer, token file, pair file, text corpus,
#      the fwp argument parser) for 25 s each (label fuzz, tests/fuzz; about 95 s at -j2),
#   6. builds the Doxygen docs of the public headers with warnings as errors.
# Every build goes through ccache when it is installed (setup.sh installs it):
# the cache is $CCACHE_DIR, or the one of the caller's ccache configuration,
# else .ccache-ci/ in the checkout (kept between runs, ignored by git); its
# statistics are printed per stage and at the end. A launcher the caller set
# (CMAKE_<LANG>_COMPILER_LAUNCHER) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
export CTEST_OUTPUT_ON_FAILURE=1
# Tests run two at a time on small machines: OpenMP threads that spin at
# barriers would steal the core the other test needs.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

stage_start=$(date +%s)
# step NAME: ends the previous stage (its seconds and ccache hits) and starts NAME.
step() {
  local now
  now=$(date +%s)
  if [ -n "${stage_name:-}" ]; then
    printf '==== %s: %d s%s\n' "$stage_name" $((now - stage_start)) "$(ccache_delta)"
  fi
  stage_name="$*" stage_start=$now
  printf '\n==== %s ====\n' "$*"
}

# ccache_delta: ", ccache: H hits, M misses" since the last call (empty without ccache).
use_ccache=0 ccache_hits=0 ccache_misses=0
ccache_counts() {
  ccache --print-stats 2>/dev/null | awk -F'\t' '
    $1 == "direct_cache_hit" || $1 == "preprocessed_cache_hit" { h += $2 }
    $1 == "cache_miss" { m += $2 }
    END { print h + 0, m + 0 }'
}
ccache_delta() {
  [ "$use_ccache" = 1 ] || return 0
  local h m
  read -r h m < <(ccache_counts)
  printf ', ccache: %d hits, %d misses' $((h - ccache_hits)) $((m - ccache_misses))
  ccache_hits=$h ccache_misses=$m
}

step "setup"
bash scripts/setup.sh

# ccache for every build (see the top). Only the defaults are set: a caller's
# CCACHE_DIR (or cache_dir in their ccache.conf), CCACHE_BASEDIR and launchers win.
if command -v ccache >/dev/null; then
  use_ccache=1
  if [ -z "${CCACHE_DIR:-}" ] && ccache -p 2>/dev/null | grep '^(default) cache_dir ' >/dev/null; then
    export CCACHE_DIR="$root/.ccache-ci"
  fi
  # Paths relative to the checkout and no build directory in the hash: an object
  # of build-gpu-machine/ hits the same object of build/.
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
  export CMAKE_C_COMPILER_LAUNCHER="${CMAKE_C_COMPILER_LAUNCHER:-ccache}"
  export CMAKE_CXX_COMPILER_LAUNCHER="${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}"
  export CMAKE_CUDA_COMPILER_LAUNCHER="${CMAKE_CUDA_COMPILER_LAUNCHER:-ccache}"
  read -r ccache_hits ccache_misses < <(ccache_counts)
  echo "ccache: $(ccache --get-config cache_dir)"
fi

step "build (Release) in build/"
# Ninja where it exists, as scripts/gpu-check.sh picks it for build-gpu-machine/:
# the two generators run the compiler from different folders, so with one
# generator for both, the relative paths that ccache hashes are the same.
generator=()
if [ ! -f build/CMakeCache.txt ] && command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

step "tests in build/"
ctest --test-dir build -j"$jobs" --timeout 900

# The GPU-machine build compiles for build/'s CUDA architectures (a superset
# of the GPU machines' sm_90): the same flags, so ccache serves the objects.
cuda_arch=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' build/CMakeCache.txt)
step "GPU-machine build in build-gpu-machine/ (no nlohmann-json, CLI11, fmt, CMocka)"
FWP_GPU_CHECK_CUDA_ARCH="${cuda_arch:-90}" bash scripts/check-gpu-machine-build.sh

step "sanitizer + fuzz build (clang, ASan + UBSan, libFuzzer) in build-asan/"
# build-asan/ was a GCC build before it became the fuzz build: a cache made
# with another compiler cannot be reconfigured in place.
if [ -f build-asan/CMakeCache.txt ] && ! grep -q '^CMAKE_CXX_COMPILER:FILEPATH=.*clang++' build-asan/CMakeCache.txt; then
  rm -rf build-asan
fi
# Line tables only (-gline-tables-only): sanitizer reports still name function,
# file and line, and the build takes about a fifth less time than with full -g
# (measured on src/ops/linear.cpp: 51 s vs 63 s).
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" \
  -DFWP_SANITIZE=ON -DFWP_FUZZ=ON -DFWP_ENABLE_CUDA=OFF \
  -DFWP_BUILD_BENCH=OFF -DFWP_BUILD_TOOLS=ON -DFWP_BUILD_EXAMPLES=OFF -DFWP_BUILD_DOCS=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# The tools are built for the argument-parser fuzz target (their own tests,
# label cli, run in build/). Any sanitizer report aborts the test process, so it fails the run.
# allocator_may_return_null: the out-of-memory tests ask for absurd sizes on purpose
# (the fuzz test sets its own options: there a huge allocation is a finding).
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -j"$jobs" -L 'cpp|capi|emulator|fuzz' --timeout 1800

step "docs (Doxygen, warnings are errors)"
cmake --build build --target docs

step "all tests passed"
if [ "$use_ccache" = 1 ]; then
  echo "ccache ($(ccache --get-config cache_dir)):"
  ccache -s
fi
