#!/usr/bin/env bash
# One run on a lent GPU machine (H100/H200 with nvcc 13, CMake, g++, Eigen and
# GoogleTest; no nlohmann-json (the build uses the copy in third_party/), CLI11,
# fmt or CMocka (their targets are left out); no network) that checks what the
# CUDA backend cannot check without a GPU. Phases, in order of value, each with
# its own time limit inside one budget, each reporting as soon as it ends:
#   detect     nvidia-smi: driver and device, printed first. No GPU, a failing
#              driver, or a driver older than nvcc's CUDA major version stops
#              the run here (exit 1): nothing after it could really run.
#   configure  CUDA on, for the local GPU only (CMAKE_CUDA_ARCHITECTURES=native)
#   build      fwp_cpp_tests, then gpu_fast_weight_bench
#   parity     fwp_cpp_tests 'CudaParity*:CudaTiles*' with FWP_REQUIRE_CUDA=1, so
#              a test that would skip for want of a device fails, and any skip
#              fails the run (tests/cpp/cuda_test_util.h); failed tests are then
#              rerun one per process, so one fault that poisons the CUDA context
#              does not hide the state of the others
#   bench      gpu_fast_weight_bench: every configuration is checked against the
#              CPU backend at the performance.md shapes (sizes parity does not
#              reach), then timed; it exits 1 without a device under FWP_REQUIRE_CUDA
#   lm, mt     short training runs of the language and translation models on the GPU
#              (fwp_bench_lm_train, fwp_bench_mt), per attention kind
#   memcheck   compute-sanitizer memcheck on a subset of the parity tests
#   racecheck  compute-sanitizer racecheck on a subset (slowest, least likely to
#              say something new: last)
# A phase is "ok" only if it really ran: some tests passed and none failed or
# skipped, the benchmark printed its table, the sanitizer ran the tests it was
# given. The last thing printed is one table: the phases (parity passed/failed/
# skipped, sanitizer summaries) and the benchmark figures against the targets
# of /work/shared/spec/performance.md.
#
# Budget: FWP_GPU_CHECK_BUDGET seconds (default 510: one 600-s device call with
# 90 s to spare). A phase gets min(its own limit, what is left minus 15 s for
# the summary); one with under 10 s left is SKIPPED. The phases are ordered by
# value, so time runs out on the least useful ones.
#
# Usage: scripts/gpu-check.sh [--skip-build] [--build-dir DIR] [--detect-only | --build-only]
#   --detect-only  only the detect phase (CI runs it without a GPU and expects exit 1)
#   --build-only   only configure + build, no GPU needed and no time limits unless
#                  given (CI: scripts/check-gpu-machine-build.sh)
# Environment: FWP_GPU_CHECK_BUDGET, FWP_GPU_CHECK_BUILD_LIMIT (s, default 270),
#   FWP_GPU_CHECK_CUDA_ARCH (default native), FWP_GPU_CHECK_CMAKE_ARGS (more
#   configure arguments, split on spaces), FWP_NVIDIA_SMI (default nvidia-smi).
# Logs: <build>/gpu-check-logs; with OUT set (the device runner's output
# folder) the summary and the main logs are also copied to $OUT after every
# phase (8 files at most, flat), so a run cut short still brings back its results.
# Exit status: 0 if every phase passed, 1 otherwise, 2 on bad usage.
set -o pipefail
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-gpu"
SKIP_BUILD=0
MODE=all
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) SKIP_BUILD=1 ;;
    --build-dir) [ $# -ge 2 ] || { echo "--build-dir needs a directory" >&2; exit 2; }; BUILD="$2"; shift ;;
    --detect-only) MODE=detect ;;
    --build-only) MODE=build ;;
    *) echo "usage: $0 [--skip-build] [--build-dir DIR] [--detect-only | --build-only]" >&2; exit 2 ;;
  esac
  shift
done
case "$BUILD" in /*) ;; *) BUILD="$(pwd)/$BUILD" ;; esac

if [ "$MODE" = build ]; then DEFAULT_BUDGET=86400; DEFAULT_BUILD_LIMIT=86400; else DEFAULT_BUDGET=510; DEFAULT_BUILD_LIMIT=270; fi
BUDGET="${FWP_GPU_CHECK_BUDGET:-$DEFAULT_BUDGET}"
BUILD_LIMIT="${FWP_GPU_CHECK_BUILD_LIMIT:-$DEFAULT_BUILD_LIMIT}"
CUDA_ARCH="${FWP_GPU_CHECK_CUDA_ARCH:-native}"
SMI="${FWP_NVIDIA_SMI:-nvidia-smi}"
SUMMARY_RESERVE=15
START=$(date +%s)
JOBS="$(nproc 2>/dev/null || echo 8)"
LOGS="$BUILD/gpu-check-logs"
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log  # only this run's logs are reported
TESTS="$BUILD/tests/fwp_cpp_tests"
BENCH="$BUILD/bench/gpu_fast_weight_bench"
LM_BENCH="$BUILD/bench/fwp_bench_lm_train"
MT_BENCH="$BUILD/bench/fwp_bench_mt"
# The tests report a run without a usable device (or with a skipped test) as a failure.
export FWP_REQUIRE_CUDA=1
export PATH="$PATH:/usr/local/cuda/bin"

PARITY_FILTER='CudaParity*:CudaTiles*'
MEMCHECK_TESTS='CudaParity.FastWeightOptionalArgumentsAndAliasing:CudaParity.CrossAttentionForwardBackward:CudaParity.SumNormalizeInPlaceAndAliased:CudaParity.EmbeddingOneHotAndStepSums:CudaParity.FastWeightReadout:CudaParityGemmDegenerate.BatchedEmptyInnerDimensionAndEmptyOutputs'
RACECHECK_TESTS='CudaParity.FastWeightOptionalArgumentsAndAliasing:CudaParity.CrossAttentionForwardBackward:CudaParity.SoftmaxAttentionDecode'

# Targets of performance.md for the fast-weight op, forward + backward on one
# H200, in ms (long-128 has none in ms: it must run, and fla's figure is not measured yet).
declare -A TARGET_MS=([paper-small]=0.10 [paper-medium]=0.20 [mid-64]=0.9)
BENCH_SHAPES="paper-small paper-medium mid-64 long-128"

declare -a PHASES=() STATUS=() SECS=() NOTES=()
ALL_OK=1

last_status() { [ ${#STATUS[@]} -gt 0 ] && echo "${STATUS[${#STATUS[@]}-1]}"; }
failed_or_timeout() { [ "$RC" = timeout ] && echo TIMEOUT || echo FAILED; }
elapsed() { echo $(($(date +%s) - START)); }
remaining() { echo $((BUDGET - $(elapsed))); }

# Copies what a reader needs to $OUT (flat, at most 8 files), after every phase.
publish() {
  [ -n "${OUT:-}" ] && [ -d "$OUT" ] || return 0
  print_summary > "$OUT/gpu-check-summary.md" 2>&1
  local f
  for f in configure build parity parity-isolated bench memcheck racecheck; do
    [ -f "$LOGS/$f.log" ] || continue
    if [ "$f" = build ]; then
      { tail -n 300 "$LOGS/build.log"; [ -f "$LOGS/build-bench.log" ] && tail -n 100 "$LOGS/build-bench.log"; } > "$OUT/build.log"
    else
      cp "$LOGS/$f.log" "$OUT/$f.log"
    fi
  done
}

# record NAME STATUS SECONDS NOTE: one phase's result, printed at once.
record() {
  PHASES+=("$1"); STATUS+=("$2"); SECS+=("$3"); NOTES+=("$4")
  [ "$2" = ok ] || ALL_OK=0
  echo "==== $1: $2 (${3}s) $4"
  publish
}

# run_timed NAME MAX_SECONDS COMMAND...: runs COMMAND with its output in
# $LOGS/NAME.log and on the terminal, for at most min(MAX, budget left - the
# summary's reserve) seconds. Sets RC and T (seconds used). Returns 1 (after
# recording the phase as SKIPPED) when under 10 s are left.
run_timed() {
  local name="$1" max="$2"
  shift 2
  local limit=$(($(remaining) - SUMMARY_RESERVE))
  [ "$limit" -gt "$max" ] && limit="$max"
  if [ "$limit" -lt 10 ]; then
    record "$name" SKIPPED 0 "no time left in the ${BUDGET}s budget"
    return 1
  fi
  echo "==== $name (limit ${limit}s): $*"
  local t0
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
  RC=${PIPESTATUS[0]}
  T=$(($(date +%s) - t0))
  if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then RC=timeout; fi
  return 0
}

# gtest counts of a log: sets G_PASSED G_FAILED G_SKIPPED.
gtest_counts() {
  G_PASSED=$(grep -Eo '^\[  PASSED  \] [0-9]+' "$1" | grep -Eo '[0-9]+$' | tail -1)
  G_FAILED=$(grep -Eo '^\[  FAILED  \] [0-9]+ tests?, listed' "$1" | grep -Eo '[0-9]+' | tail -1)
  G_SKIPPED=$(grep -Eo '^\[  SKIPPED \] [0-9]+ tests?, listed' "$1" | grep -Eo '[0-9]+' | tail -1)
  G_PASSED=${G_PASSED:-0} G_FAILED=${G_FAILED:-0} G_SKIPPED=${G_SKIPPED:-0}
}

# judge_gtest NAME EXPECTED_MIN: records a gtest phase from RC, T and its log.
# ok only with exit 0, no failure, no skip and at least EXPECTED_MIN tests passed.
judge_gtest() {
  local name="$1" expected="$2" extra="${3:-}"
  gtest_counts "$LOGS/$name.log"
  local note="passed $G_PASSED, failed $G_FAILED, skipped $G_SKIPPED${extra:+; $extra}"
  if [ "$RC" = timeout ]; then
    record "$name" TIMEOUT "$T" "$note (killed at its time limit)"
  elif [ "$RC" -eq 0 ] && [ "$G_FAILED" -eq 0 ] && [ "$G_SKIPPED" -eq 0 ] && [ "$G_PASSED" -ge "$expected" ] &&
       [ "$G_PASSED" -gt 0 ]; then
    record "$name" ok "$T" "$note"
  else
    local why="exit $RC"
    [ "$G_PASSED" -lt "$expected" ] && why="$why; expected at least $expected tests to pass"
    grep -q 'FWP_REQUIRE_CUDA is set but' "$LOGS/$name.log" && why="$why; NO USABLE CUDA DEVICE"
    record "$name" FAILED "$T" "$note ($why)"
  fi
}

# A sanitizer that the machine refuses (seen under gVisor: "Device not
# supported") did not check anything: UNAVAILABLE, not ok.
judge_sanitizer() {
  local name="$1" expected="$2" summary="$3"
  if grep -Eq 'Device not supported|device is not supported|Unable to find injection library|Error: Target application terminated before first instrumented API call' "$LOGS/$name.log"; then
    gtest_counts "$LOGS/$name.log"
    record "$name" UNAVAILABLE "$T" "compute-sanitizer refused this machine: $(grep -Em1 'not supported|Unable|terminated before' "$LOGS/$name.log" | cut -c1-90)"
  else
    judge_gtest "$name" "$expected" "$summary"
  fi
}

count_tests() { echo "$1" | tr ':' '\n' | grep -c .; }

# ---- the summary table (last) -------------------------------------------------------------------
bench_figures() {
  local log="$LOGS/bench.log"
  if [ ! -f "$log" ] || ! grep -qE '^\| (paper|mid|long)' "$log"; then
    echo "(no benchmark figures)"
    return
  fi
  echo "| shape | delta auto ms | best delta ms (algorithm) | sum auto ms | target fwd+bwd | delta (auto) vs target |"
  echo "|---|---|---|---|---|---|"
  local shape
  for shape in $BENCH_SHAPES; do
    awk -F'|' -v shape="$shape" -v target="${TARGET_MS[$shape]:-}" '
      function trim(s) { gsub(/^ +| +$/, "", s); return s }
      trim($2) == shape {
        rule = trim($3); algo = trim($4); total = trim($7); check = trim($9)
        ok = total != "-" && check !~ /FAILED|error/
        if (rule == "delta") {
          if (algo ~ /\(auto\)/) { dauto = ok ? total : "FAILED" }
          if (ok && (best == "" || total + 0 < best + 0)) { best = total; bestalgo = algo }
        } else if (rule == "sum" && algo ~ /\(auto\)/) { sauto = ok ? total : "FAILED" }
        seen = 1
      }
      END {
        if (!seen) { printf "| %s | not run | | | | |\n", shape; exit }
        if (target == "") { t = "runs (D up to 256); faster than fla chunk (not measured)"; v = (dauto != "" && dauto != "FAILED") ? "runs" : "DOES NOT RUN" }
        else { t = "<= " target " ms"
               if (dauto == "" || dauto == "FAILED") v = "FAILED"
               else if (dauto + 0 <= target + 0) v = "meets"
               else v = sprintf("misses (%.1fx the target)", dauto / target) }
        printf "| %s | %s | %s | %s | %s | %s |\n", shape, dauto, best == "" ? "-" : best " (" bestalgo ")",
               sauto == "" ? "-" : sauto, t, v
      }' "$log"
  done
  echo "(a benchmark never fails the check on speed; figures: median of the runs, CUDA events)"
}

print_summary() {
  echo "# gpu-check summary ($(elapsed)s of ${BUDGET}s; logs in $LOGS)"
  echo
  printf '| %-9s | %-11s | %5s | %s |\n' phase status s notes
  echo "|---|---|---|---|"
  local i
  for i in "${!PHASES[@]}"; do
    printf '| %-9s | %-11s | %5s | %s |\n' "${PHASES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${NOTES[$i]}"
  done
  if [ "$MODE" = all ]; then
    echo
    echo "## benchmark figures against performance.md (fast-weight op, fwd+bwd)"
    bench_figures
  fi
  echo
  if [ "$ALL_OK" -eq 1 ]; then echo "ALL PHASES PASSED"; else echo "GPU CHECK FAILED: see the phases above that are not ok"; fi
}

finish() {
  echo
  print_summary
  publish
  [ "$ALL_OK" -eq 1 ] && exit 0
  exit 1
}

# ---- detect: driver and device first -----------------------------------------------------------
detect() {
  local t0 out rc gpus count driver_cuda nvcc_cuda
  t0=$(date +%s)
  echo "==== detect: driver and device"
  if ! command -v "$SMI" > /dev/null 2>&1; then
    record detect FAILED $(($(date +%s) - t0)) "NO GPU VISIBLE: $SMI not found (no NVIDIA driver in this machine or container)"
    return 1
  fi
  out=$(timeout 30 "$SMI" 2>&1)
  rc=$?
  echo "$out" | head -25
  if [ "$rc" -ne 0 ]; then
    record detect FAILED $(($(date +%s) - t0)) "NO GPU VISIBLE: $SMI failed (exit $rc): $(echo "$out" | head -1 | cut -c1-100)"
    return 1
  fi
  gpus=$(timeout 30 "$SMI" --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1)
  rc=$?
  count=$(echo "$gpus" | grep -c '^ *[0-9]')
  echo "$gpus"
  if [ "$rc" -ne 0 ] || [ "$count" -lt 1 ]; then
    record detect FAILED $(($(date +%s) - t0)) "NO GPU VISIBLE: $SMI lists no device"
    return 1
  fi
  driver_cuda=$(echo "$out" | grep -Eo 'CUDA Version: *[0-9]+\.[0-9]+' | grep -Eo '[0-9]+\.[0-9]+' | head -1)
  if ! command -v nvcc > /dev/null 2>&1; then
    record detect FAILED $(($(date +%s) - t0)) "nvcc not found (PATH includes /usr/local/cuda/bin)"
    return 1
  fi
  nvcc_cuda=$(nvcc --version 2>&1 | grep -Eo 'release [0-9]+\.[0-9]+' | grep -Eo '[0-9]+\.[0-9]+' | head -1)
  if [ -n "$driver_cuda" ] && [ -n "$nvcc_cuda" ] && [ "${driver_cuda%%.*}" -lt "${nvcc_cuda%%.*}" ]; then
    record detect FAILED $(($(date +%s) - t0)) "DRIVER TOO OLD: it runs CUDA $driver_cuda, nvcc builds for CUDA $nvcc_cuda"
    return 1
  fi
  record detect ok $(($(date +%s) - t0)) "$count GPU(s): $(echo "$gpus" | head -1 | cut -c1-80); driver CUDA ${driver_cuda:-?}, nvcc ${nvcc_cuda:-?}"
}

toolchain() {
  echo "host: $(hostname)  cores: $JOBS  budget: ${BUDGET}s  build: $BUILD"
  (nvcc --version 2>&1 | tail -2 | head -1) || echo "nvcc: not found"
  cmake --version 2>&1 | head -1
  g++ --version 2>&1 | head -1
  command -v compute-sanitizer > /dev/null && echo "compute-sanitizer: $(command -v compute-sanitizer)" ||
    echo "compute-sanitizer: not found"
}

# ---- the run ------------------------------------------------------------------------------------
if [ "$MODE" != build ]; then
  if ! detect || [ "$MODE" = detect ]; then finish; fi
fi
toolchain

if [ "$SKIP_BUILD" -eq 0 ]; then
  GENERATOR=()
  if [ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja > /dev/null; then GENERATOR=(-G Ninja); fi
  # Tools and examples stay on (configured, not built): the configure then
  # shows every fallback (no CLI11/fmt: the fwp program is left out, with a warning).
  # shellcheck disable=SC2206  # FWP_GPU_CHECK_CMAKE_ARGS is a list of words on purpose
  EXTRA_ARGS=(${FWP_GPU_CHECK_CMAKE_ARGS:-})
  if run_timed configure 90 cmake -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
       -DFWP_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DFWP_BUILD_TESTS=ON -DFWP_BUILD_BENCH=ON \
       -DFWP_BUILD_TOOLS=ON -DFWP_BUILD_EXAMPLES=ON -DFWP_BUILD_DOCS=OFF -DFWP_TEST_BINDINGS=OFF "${EXTRA_ARGS[@]}"; then
    if [ "$RC" = 0 ]; then
      record configure ok "$T" "$(grep -Eo 'nlohmann_json[^(]*(installed package|carried copy)' "$LOGS/configure.log" | head -1)"
    else
      record configure "$(failed_or_timeout)" "$T" "exit $RC: $(grep -m1 -A2 'CMake Error' "$LOGS/configure.log" | tr '\n' ' ' | cut -c1-150)"
    fi
  fi
  if [ "$(last_status)" = ok ]; then
    # The tests first: they are worth the most; the benchmark adds one file.
    if run_timed build "$BUILD_LIMIT" cmake --build "$BUILD" -j "$JOBS" --target fwp_cpp_tests; then
      if [ "$RC" = 0 ]; then record build ok "$T" "fwp_cpp_tests (CUDA arch $CUDA_ARCH, $JOBS jobs)"
      else record build "$(failed_or_timeout)" "$T" "exit $RC: $(grep -m1 -E 'error|Error' "$LOGS/build.log" | cut -c1-150)"; fi
    fi
    if [ "$(last_status)" = ok ] &&
       run_timed build-bench 120 cmake --build "$BUILD" -j "$JOBS" --target gpu_fast_weight_bench fwp_bench_lm_train fwp_bench_mt; then
      if [ "$RC" = 0 ]; then record build-bench ok "$T" "gpu_fast_weight_bench, fwp_bench_lm_train, fwp_bench_mt"
      else record build-bench "$(failed_or_timeout)" "$T" "exit $RC: $(grep -m1 -E 'error|Error' "$LOGS/build-bench.log" | cut -c1-150)"; fi
    fi
  fi
fi
[ "$MODE" = build ] && finish
# A binary left from an earlier run must not stand in for one that failed to build.
TESTS_BUILT=$SKIP_BUILD BENCH_BUILT=$SKIP_BUILD
for i in "${!PHASES[@]}"; do
  [ "${PHASES[$i]}" = build ] && [ "${STATUS[$i]}" = ok ] && TESTS_BUILT=1
  [ "${PHASES[$i]}" = build-bench ] && [ "${STATUS[$i]}" = ok ] && BENCH_BUILT=1
done

# ---- parity -------------------------------------------------------------------------------------
if [ "$TESTS_BUILT" -eq 1 ] && [ -x "$TESTS" ]; then
  if run_timed parity 100 "$TESTS" --gtest_filter="$PARITY_FILTER" --gtest_color=no; then
    judge_gtest parity 1
    failed=$(grep -E '^\[  FAILED  \] [A-Za-z0-9_]+\.[A-Za-z0-9_/]+' "$LOGS/parity.log" | awk '{print $4}' | sort -u | head -15)
    if [ -n "$failed" ] && [ "$(remaining)" -gt 120 ]; then
      echo "==== rerunning the failed tests one per process (30 s each)"
      : > "$LOGS/parity-isolated.log"
      rerun_until=$(($(elapsed) + 60))
      for t in $failed; do
        [ "$(elapsed)" -lt "$rerun_until" ] || { echo "(no time left for more isolated reruns)" | tee -a "$LOGS/parity-isolated.log"; break; }
        timeout 30 "$TESTS" --gtest_filter="$t" --gtest_color=no > "$LOGS/isolated.log" 2>&1
        rc=$?
        echo "isolated $t: $([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)")" | tee -a "$LOGS/parity-isolated.log"
        [ $rc -ne 0 ] && grep -E 'Failure|Actual|error|Error|max \|' "$LOGS/isolated.log" | head -8 | sed 's/^/    /' | tee -a "$LOGS/parity-isolated.log"
      done
      publish
    fi
  fi
else
  record parity SKIPPED 0 "no test binary built ($TESTS)"
fi

# ---- benchmark ----------------------------------------------------------------------------------
if [ "$BENCH_BUILT" -eq 1 ] && [ -x "$BENCH" ]; then
  if run_timed bench 100 "$BENCH" --reps 10; then
    rows=$(grep -cE '^\| (paper|mid|long)' "$LOGS/bench.log")
    bad=$(grep -E '^\| (paper|mid|long)' "$LOGS/bench.log" | grep -cE 'FAILED|error')
    if [ "$RC" = timeout ]; then record bench TIMEOUT "$T" "$rows result rows before the limit"
    elif [ "$RC" -eq 0 ] && [ "$rows" -gt 0 ]; then record bench ok "$T" "$rows configurations checked against the CPU and timed"
    elif [ "$rows" -eq 0 ]; then record bench FAILED "$T" "exit $RC, no result table: $(grep -m1 -iE 'no CUDA|error' "$LOGS/bench.log" | cut -c1-100)"
    else record bench FAILED "$T" "exit $RC: $bad of $rows configurations failed their check or did not run"; fi
  fi
else
  record bench SKIPPED 0 "no benchmark binary built ($BENCH)"
fi

# ---- language model: a short training run per attention kind (issue 12) ------------------------
# paper-small shapes with an 8000-word vocabulary: forward, backward and Adam on the GPU, tokens/s.
if [ "$BENCH_BUILT" -eq 1 ] && [ -x "$LM_BENCH" ]; then
  if run_timed lm 75 bash -c 'for a in delta sum softmax; do
                                "$0" --device cuda --preset paper-small --vocab 8000 --attention "$a" --warmup 2 \
                                  --steps 5 || exit 1
                              done' "$LM_BENCH"; then
    rows=$(grep -c '^RESULT' "$LOGS/lm.log")
    rates=$(grep '^RESULT' "$LOGS/lm.log" | sed -E 's/.*attention=([a-z]+).*tokens_per_s=([0-9.e+]+).*/\1 \2/' | paste -sd',' | sed 's/,/, /g')
    if [ "$RC" = timeout ]; then record lm TIMEOUT "$T" "$rows of 3 attention kinds before the limit: $rates"
    elif [ "$RC" -eq 0 ] && [ "$rows" -eq 3 ]; then record lm ok "$T" "paper-small, V 8000, tokens/s: $rates"
    else record lm FAILED "$T" "exit $RC after $rows of 3: $(grep -m1 -iE 'error|fwp_|no CUDA' "$LOGS/lm.log" | cut -c1-110)"; fi
  fi
else
  record lm SKIPPED 0 "no LM benchmark binary built ($LM_BENCH)"
fi

# ---- translation: a short training run and translations per attention kind (issue 13) ---------
# The size of docs/results/mt.md's runs: forward, backward and Adam, then beam-4 and greedy
# translation of 32 sentences, all on the GPU; training tokens/s and sentences/s.
if [ "$BENCH_BUILT" -eq 1 ] && [ -x "$MT_BENCH" ]; then
  if run_timed mt 60 bash -c 'for a in elu softmax; do
                                "$0" --device cuda --attention "$a" --warmup 1 --steps 3 --sentences 32 \
                                  --growth 64 --growth-repeats 1 || exit 1
                              done' "$MT_BENCH"; then
    rows=$(grep -c '^RESULT kind=train' "$LOGS/mt.log")
    rates=$(grep '^RESULT kind=train' "$LOGS/mt.log" | sed -E 's/.*attention=([a-z]+).*tokens_per_s=([0-9.e+]+).*/\1 \2/' | paste -sd',' | sed 's/,/, /g')
    beams=$(grep '^RESULT kind=translate beam=4' "$LOGS/mt.log" | sed -E 's/.*sentences_per_s=([0-9.e+]+).*/\1/' | paste -sd'/')
    if [ "$RC" = timeout ]; then record mt TIMEOUT "$T" "$rows of 2 attention kinds before the limit: $rates"
    elif [ "$RC" -eq 0 ] && [ "$rows" -eq 2 ]; then record mt ok "$T" "tokens/s: $rates; beam-4 sentences/s: $beams"
    else record mt FAILED "$T" "exit $RC after $rows of 2: $(grep -m1 -iE 'error|fwp_|no CUDA' "$LOGS/mt.log" | cut -c1-110)"; fi
  fi
else
  record mt SKIPPED 0 "no translation benchmark binary built ($MT_BENCH)"
fi

# ---- sanitizers ---------------------------------------------------------------------------------
if [ "$TESTS_BUILT" -eq 1 ] && [ -x "$TESTS" ] && command -v compute-sanitizer > /dev/null; then
  if run_timed memcheck 70 compute-sanitizer --tool memcheck --error-exitcode 1 --leak-check no \
       "$TESTS" --gtest_filter="$MEMCHECK_TESTS" --gtest_color=no; then
    judge_sanitizer memcheck "$(count_tests "$MEMCHECK_TESTS")" \
      "$(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$LOGS/memcheck.log" | tail -1)"
  fi
  if run_timed racecheck 60 compute-sanitizer --tool racecheck --error-exitcode 1 \
       "$TESTS" --gtest_filter="$RACECHECK_TESTS" --gtest_color=no; then
    judge_sanitizer racecheck "$(count_tests "$RACECHECK_TESTS")" \
      "$(grep -Eo 'RACECHECK SUMMARY: [0-9]+ hazards?[^)]*\)?|ERROR SUMMARY: [0-9]+ errors?' "$LOGS/racecheck.log" | tail -2 | paste -sd' ')"
  fi
else
  record memcheck SKIPPED 0 "no test binary or no compute-sanitizer"
  record racecheck SKIPPED 0 "no test binary or no compute-sanitizer"
fi

# ---- benchmark table and summary (last) ---------------------------------------------------------
echo
echo "==== benchmark output table"
if [ -f "$LOGS/bench.log" ]; then grep -E '^\|' "$LOGS/bench.log" || echo "(no table: see $LOGS/bench.log)"; fi
finish
