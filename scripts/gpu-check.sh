#!/usr/bin/env bash
# One run on a lent GPU machine (H100/H200, nvcc 13, CMake 4, g++ 13; no CMocka,
# no network) that checks everything the CUDA backend cannot check without a GPU:
#   1. configure + build (CUDA for the local GPU only) the C++ tests and the GPU benchmark
#   2. fwp_cpp_tests --gtest_filter='CudaParity*:CudaTiles*'
#      (failed tests are then rerun one per process, so that one kernel fault that
#      poisons the CUDA context does not hide the state of the others)
#   3. compute-sanitizer memcheck and racecheck on a short subset
#   4. bench/gpu_fast_weight_bench (the performance.md shapes)
# and prints a short table last. Every phase is timed and bounded so that the
# whole run stays within FWP_GPU_CHECK_BUDGET seconds (default 350); a failing
# phase is reported and the script goes on. Logs go to $OUT/gpu-check (the
# device runner's output folder) if OUT is set, else to <build>/gpu-check-logs.
#
# Usage: scripts/gpu-check.sh [--skip-build] [--build-dir DIR]
# Exit status: 0 if every phase passed, 1 otherwise.
set -o pipefail
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-gpu"
SKIP_BUILD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) SKIP_BUILD=1 ;;
    --build-dir) BUILD="$2"; shift ;;
    *) echo "usage: $0 [--skip-build] [--build-dir DIR]" >&2; exit 2 ;;
  esac
  shift
done

BUDGET="${FWP_GPU_CHECK_BUDGET:-350}"
START=$(date +%s)
JOBS="$(nproc 2>/dev/null || echo 8)"
if [ -n "${OUT:-}" ]; then LOGS="$OUT/gpu-check"; else LOGS="$BUILD/gpu-check-logs"; fi
mkdir -p "$LOGS" "$BUILD"

TESTS="$BUILD/tests/fwp_cpp_tests"
BENCH="$BUILD/bench/gpu_fast_weight_bench"
SANITIZER_FILTER_MEM='CudaParity.FastWeightOptionalArgumentsAndAliasing:CudaParity.CrossAttentionForwardBackward:CudaParity.SumNormalizeInPlaceAndAliased:CudaParity.EmbeddingOneHotAndStepSums:CudaParity.FastWeightReadout'
SANITIZER_FILTER_RACE='CudaParity.FastWeightOptionalArgumentsAndAliasing:CudaParity.CrossAttentionForwardBackward:CudaParity.SoftmaxAttentionDecode'

declare -a PHASES=() STATUS=() SECONDS_USED=() NOTES=()
ALL_OK=1

remaining() { echo $((BUDGET - ($(date +%s) - START))); }

# run_phase NAME MAX_SECONDS RESERVE_SECONDS COMMAND...
# Runs COMMAND (output to $LOGS/NAME.log and the terminal) with a timeout of
# min(MAX, remaining budget - RESERVE) seconds.
run_phase() {
  local name="$1" max="$2" reserve="$3"
  shift 3
  local left limit t0 rc
  left=$(remaining)
  limit=$((left - reserve))
  [ "$limit" -gt "$max" ] && limit="$max"
  PHASES+=("$name")
  if [ "$limit" -lt 10 ]; then
    STATUS+=("SKIPPED")
    SECONDS_USED+=(0)
    NOTES+=("no time left in the ${BUDGET}s budget")
    ALL_OK=0
    echo "==== $name: skipped (budget)"
    return 1
  fi
  echo "==== $name (limit ${limit}s): $*"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
  rc=$?
  SECONDS_USED+=($(($(date +%s) - t0)))
  if [ "$rc" -eq 0 ]; then
    STATUS+=("ok")
    NOTES+=("")
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    STATUS+=("TIMEOUT")
    NOTES+=("killed after ${limit}s")
    ALL_OK=0
  else
    STATUS+=("FAILED")
    NOTES+=("exit $rc")
    ALL_OK=0
  fi
  return "$rc"
}

# Replaces the note of the last phase (kept when the phase was skipped).
set_note() {
  local i=$((${#NOTES[@]} - 1))
  [ "${STATUS[$i]}" = "SKIPPED" ] || NOTES[i]="$1"
}

gtest_counts() {  # summary of a gtest log: passed/failed/skipped
  local log="$1" p f s
  p=$(grep -Eo '^\[  PASSED  \] [0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  f=$(grep -Eo '^\[  FAILED  \] [0-9]+ test' "$log" | grep -Eo '[0-9]+' | tail -1)
  s=$(grep -Eo '^\[  SKIPPED \] [0-9]+ test' "$log" | grep -Eo '[0-9]+' | tail -1)
  echo "passed ${p:-0}, failed ${f:-0}, skipped ${s:-0}"
}

export PATH="$PATH:/usr/local/cuda/bin"

# ---- 0. the machine ---------------------------------------------------------------------------
{
  echo "host: $(hostname)  cores: $JOBS  budget: ${BUDGET}s"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 || echo "nvidia-smi failed"
  nvcc --version 2>&1 | tail -1
  cmake --version 2>&1 | head -1
  g++ --version 2>&1 | head -1
  for h in /usr/include/eigen3/Eigen/Core /usr/include/gtest/gtest.h /usr/include/nlohmann/json.hpp; do
    [ -e "$h" ] && echo "found $h" || echo "MISSING $h (the configure step may fail)"
  done
  command -v compute-sanitizer >/dev/null || echo "MISSING compute-sanitizer (PATH includes /usr/local/cuda/bin)"
} 2>&1 | tee "$LOGS/machine.log"

# ---- 1. build -----------------------------------------------------------------------------------
if [ "$SKIP_BUILD" -eq 0 ]; then
  run_phase configure 90 200 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFWP_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=native -DFWP_BUILD_TESTS=ON -DFWP_BUILD_BENCH=ON -DFWP_BUILD_TOOLS=OFF \
    -DFWP_BUILD_EXAMPLES=OFF -DFWP_BUILD_DOCS=OFF -DFWP_NATIVE=ON
  run_phase build 270 60 cmake --build "$BUILD" -j "$JOBS" --target fwp_cpp_tests gpu_fast_weight_bench
fi

# ---- 2. parity tests ----------------------------------------------------------------------------
if [ -x "$TESTS" ]; then
  run_phase parity 120 110 "$TESTS" --gtest_filter='CudaParity*:CudaTiles*' --gtest_color=no
  set_note "$(gtest_counts "$LOGS/parity.log")"
  failed=$(grep -E '^\[  FAILED  \] [A-Za-z0-9_]+\.[A-Za-z0-9_]+' "$LOGS/parity.log" | awk '{print $4}' | sort -u | head -15)
  if [ -n "$failed" ]; then
    echo "==== rerunning failed tests one per process"
    : > "$LOGS/parity-isolated.log"
    for t in $failed; do
      [ "$(remaining)" -lt 120 ] && { echo "(no time left for more isolated reruns)" | tee -a "$LOGS/parity-isolated.log"; break; }
      timeout 30 "$TESTS" --gtest_filter="$t" --gtest_color=no > "$LOGS/isolated-$t.log" 2>&1
      rc=$?
      echo "isolated $t: $([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)")" | tee -a "$LOGS/parity-isolated.log"
      [ $rc -ne 0 ] && grep -E 'Failure|Actual|error|Error|max \|' "$LOGS/isolated-$t.log" | head -8 | sed 's/^/    /'
    done
  fi
else
  PHASES+=("parity"); STATUS+=("SKIPPED"); SECONDS_USED+=(0); NOTES+=("no test binary"); ALL_OK=0
fi

# ---- 3. sanitizers ------------------------------------------------------------------------------
if [ -x "$TESTS" ] && command -v compute-sanitizer >/dev/null; then
  run_phase memcheck 60 100 compute-sanitizer --tool memcheck --error-exitcode 1 --leak-check no \
    "$TESTS" --gtest_filter="$SANITIZER_FILTER_MEM" --gtest_color=no
  set_note "$(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$LOGS/memcheck.log" | tail -1) $(gtest_counts "$LOGS/memcheck.log")"
  run_phase racecheck 60 90 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$TESTS" --gtest_filter="$SANITIZER_FILTER_RACE" --gtest_color=no
  set_note "$(grep -Eo 'RACECHECK SUMMARY: [0-9]+ hazards?[^)]*\)?' "$LOGS/racecheck.log" | tail -1) $(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$LOGS/racecheck.log" | tail -1)"
else
  PHASES+=("sanitizers"); STATUS+=("SKIPPED"); SECONDS_USED+=(0); NOTES+=("no test binary or no compute-sanitizer"); ALL_OK=0
fi

# ---- 4. benchmark -------------------------------------------------------------------------------
if [ -x "$BENCH" ]; then
  run_phase bench 120 5 "$BENCH" --reps 15
else
  PHASES+=("bench"); STATUS+=("SKIPPED"); SECONDS_USED+=(0); NOTES+=("no benchmark binary"); ALL_OK=0
fi

# ---- summary (last) ----------------------------------------------------------------------------
echo
echo "==== benchmark table"
if [ -f "$LOGS/bench.log" ]; then grep -E '^\|' "$LOGS/bench.log" || echo "(no table: see $LOGS/bench.log)"; fi
echo
echo "==== gpu-check summary ($(( $(date +%s) - START ))s of ${BUDGET}s; logs in $LOGS)"
printf '| %-10s | %-8s | %5s | %s\n' phase status s notes
for i in "${!PHASES[@]}"; do
  printf '| %-10s | %-8s | %5s | %s\n' "${PHASES[$i]}" "${STATUS[$i]}" "${SECONDS_USED[$i]}" "${NOTES[$i]}"
done
[ "$ALL_OK" -eq 1 ] && echo "ALL PHASES PASSED" || echo "SOME PHASES FAILED OR WERE SKIPPED"
[ "$ALL_OK" -eq 1 ]
