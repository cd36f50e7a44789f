#!/usr/bin/env bash
# Tests of scripts/gpu-check.sh's logic on a machine without a GPU (ctest
# gpu_check_script). A GPU check must fail loudly whenever the GPU did not
# really run, so most cases here are runs that must NOT pass:
#   - detect: no nvidia-smi, a failing driver, no device listed, a driver
#     older than nvcc -> exit 1 with the reason, before any build;
#   - fake test binary, benchmark and compute-sanitizer (a fake build dir and
#     --skip-build): skipped tests, a benchmark that exits 0 with "no CUDA
#     device", a sanitizer the machine refuses, a budget too small for the
#     later phases -> exit 1 and the phase named in the summary table; a run
#     where everything passes -> exit 0 with the benchmark figures judged
#     against performance.md's targets;
#   - the real script's detect step on this machine (no GPU: must fail), and
#     the real test binary with FWP_REQUIRE_CUDA=1 (must fail, saying why).
# Usage: tests/gpu_check_test.sh [path/to/fwp_cpp_tests]
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$ROOT/scripts/gpu-check.sh"
REAL_TESTS="${1:-}"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
FAILURES=0

# ---- fakes --------------------------------------------------------------------------------------
mkdir -p "$W/bin" "$W/build/tests" "$W/build/bench"
cat > "$W/bin/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
case "${FAKE_SMI:-ok}" in
  fail) echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."; exit 9 ;;
  none) if [ $# -gt 0 ]; then echo "No devices were found"; exit 6; fi ;;
esac
if [ $# -gt 0 ]; then echo "0, NVIDIA H200, 580.159.03, 143771 MiB, 9.0"; exit 0; fi
cuda=13.0; [ "${FAKE_SMI:-ok}" = old ] && cuda=12.4
echo "| NVIDIA-SMI 580.159.03    Driver Version: 580.159.03    CUDA Version: $cuda |"
echo "|   0  NVIDIA H200   On  | 00000000:00:00.0 Off |  0 |"
EOF
cat > "$W/bin/nvcc" <<'EOF'
#!/usr/bin/env bash
echo "nvcc: NVIDIA (R) Cuda compiler driver"
echo "Cuda compilation tools, release 13.0, V13.0.88"
EOF
cat > "$W/bin/compute-sanitizer" <<'EOF'
#!/usr/bin/env bash
echo "========= COMPUTE-SANITIZER"
if [ "${FAKE_SANITIZER:-ok}" = refuse ]; then
  echo "========= Error: Device not supported"; exit 1
fi
while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do shift 2; done
"$@"; rc=$?
echo "========= ERROR SUMMARY: 0 errors"
exit $rc
EOF
cat > "$W/bin/cmake" <<'EOF'
#!/usr/bin/env bash
case "$1" in
  --version) echo "cmake version 4.0.0 (fake)" ;;
  --build) if [ "${FAKE_BUILD:-ok}" = fail ]; then echo "linear.cu(12): error: boom"; exit 2; fi; echo "[100%] Built" ;;
  *) echo "-- nlohmann_json: no installed package; using the carried copy (3.11.2) in third_party/nlohmann_json" ;;
esac
EOF
# gtest-like output; one test per name in the filter (3 for a wildcard).
cat > "$W/build/tests/fwp_cpp_tests" <<'EOF'
#!/usr/bin/env bash
[ "${FWP_REQUIRE_CUDA:-}" = 1 ] || { echo "fake: FWP_REQUIRE_CUDA=1 was not set by gpu-check.sh"; exit 3; }
filter=""
for a in "$@"; do case "$a" in --gtest_filter=*) filter="${a#--gtest_filter=}" ;; esac; done
names=()
for f in $(echo "$filter" | tr ':' ' '); do
  case "$f" in *'*'*) names+=("${f%\*}.A" "${f%\*}.B" "${f%\*}.C") ;; *) names+=("$f") ;; esac
done
n=${#names[@]}
echo "[==========] Running $n tests from 1 test suite."
case "${FAKE_TESTS:-pass}" in
  pass) for t in "${names[@]}"; do echo "[ RUN      ] $t"; echo "[       OK ] $t (1 ms)"; done
        echo "[  PASSED  ] $n tests."; exit 0 ;;
  skip) echo "[  PASSED  ] $((n - 2)) tests."; echo "[  SKIPPED ] 2 tests, listed below:"; exit 0 ;;
  fail) echo "[  FAILED  ] ${names[0]} (3 ms)"; echo "[  PASSED  ] $((n - 1)) tests."
        echo "[  FAILED  ] 1 test, listed below:"; echo "[  FAILED  ] ${names[0]}"; exit 1 ;;
  none) echo "[==========] 0 tests from 0 test suites ran."; echo "[  PASSED  ] 0 tests."; exit 0 ;;
esac
EOF
cat > "$W/build/bench/gpu_fast_weight_bench" <<'EOF'
#!/usr/bin/env bash
if [ "${FAKE_BENCH:-ok}" = nodevice ]; then echo "gpu_fast_weight_bench: no CUDA device: nothing to measure (exit 0)"; exit 0; fi
echo "| shape | rule | algorithm | fwd ms | bwd ms | fwd+bwd ms | tokens/s | check (rel err vs CPU) |"
echo "|---|---|---|---|---|---|---|---|"
echo "| paper-small | delta | recurrent | 0.0300 | 0.0500 | 0.0800 | 1e+08 | 2.0e-07 |"
echo "| paper-small | delta | chunked (auto) | 0.0300 | 0.0600 | 0.0900 | 9e+07 | 2.0e-07 |"
echo "| paper-small | sum | recurrent (auto) | 0.0200 | 0.0300 | 0.0500 | 2e+08 | 1.0e-07 |"
echo "| mid-64 | delta | chunked (auto) | 0.6000 | 1.2000 | 1.8000 | 9e+06 | 3.0e-07 |"
echo "| mid-64 | sum | chunked (auto) | 0.3000 | 0.5000 | 0.8000 | 2e+07 | 3.0e-07 |"
echo "| long-128 | delta | chunked (auto) | - | - | - | - | error: too much shared memory |"
exit 1
EOF
cat > "$W/build/bench/fwp_bench_lm_train" <<'EOF'
#!/usr/bin/env bash
if [ "${FAKE_LM:-ok}" = nodevice ]; then echo "fwp_bench_lm_train: fwp_context_create: no CUDA device is present"; exit 1; fi
a=delta; while [ $# -gt 0 ]; do [ "$1" = --attention ] && a=$2; shift; done
echo "RESULT impl=fwp attention=$a params=1000 tokens_per_s=123456.7 step_ms=16.6 threads=1"
EOF
cat > "$W/build/bench/fwp_bench_mt" <<'EOF'
#!/usr/bin/env bash
if [ "${FAKE_MT:-ok}" = nodevice ]; then echo "fwp_bench_mt: fwp_context_create: no CUDA device is present"; exit 1; fi
a=elu; while [ $# -gt 0 ]; do [ "$1" = --attention ] && a=$2; shift; done
echo "RESULT kind=train impl=fwp attention=$a params=1000 tokens_per_s=54321.0 step_ms=5.0 cpu_ms=5.0"
echo "RESULT kind=translate beam=4 sentences_per_s=321.00 ms=99.0 cpu_ms=99.0"
echo "RESULT kind=translate beam=1 sentences_per_s=999.00 ms=32.0 cpu_ms=32.0"
EOF
chmod +x "$W"/bin/* "$W/build/tests/fwp_cpp_tests" "$W/build/bench/gpu_fast_weight_bench" "$W/build/bench/fwp_bench_lm_train" \
  "$W/build/bench/fwp_bench_mt"

# ---- helpers ------------------------------------------------------------------------------------
# check NAME EXPECTED_EXIT PATTERN... -- COMMAND: runs COMMAND, then checks its
# exit status and that its output matches every (extended) regex PATTERN, or
# does not match it when PATTERN starts with '!'.
check() {
  local name="$1" want="$2"
  shift 2
  local patterns=()
  while [ "$1" != -- ]; do patterns+=("$1"); shift; done
  shift
  local out rc p ok=1
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL $name: exit $rc, expected $want"; ok=0; fi
  for p in "${patterns[@]}"; do
    if [ "${p#!}" != "$p" ]; then
      if grep -Eq -- "${p#!}" <<< "$out"; then echo "FAIL $name: output has /${p#!}/"; ok=0; fi
    elif ! grep -Eq -- "$p" <<< "$out"; then
      echo "FAIL $name: output lacks /$p/"; ok=0
    fi
  done
  if [ "$ok" -eq 1 ]; then
    echo "ok   $name"
  else
    FAILURES=$((FAILURES + 1))
    echo "---- output of $name:"; echo "$out" | tail -40 | sed 's/^/    /'
  fi
}

# shellcheck disable=SC2317  # called through check
fake() { env PATH="$W/bin:$PATH" FWP_NVIDIA_SMI="$W/bin/nvidia-smi" OUT= "$@"; }
# shellcheck disable=SC2317
full() { fake "$@" bash "$SCRIPT" --skip-build --build-dir "$W/build"; }

# ---- detect -------------------------------------------------------------------------------------
check detect_no_nvidia_smi 1 'NO GPU VISIBLE' 'nvidia-smi.*not found' 'GPU CHECK FAILED' -- \
  env FWP_NVIDIA_SMI="$W/no-such-nvidia-smi" bash "$SCRIPT" --detect-only --build-dir "$W/build"
check detect_driver_fails 1 'NO GPU VISIBLE: .*failed \(exit 9\)' "couldn't communicate" -- \
  fake FAKE_SMI=fail bash "$SCRIPT" --detect-only --build-dir "$W/build"
check detect_no_device_listed 1 'NO GPU VISIBLE: .*lists no device' -- \
  fake FAKE_SMI=none bash "$SCRIPT" --detect-only --build-dir "$W/build"
check detect_driver_too_old 1 'DRIVER TOO OLD: it runs CUDA 12.4, nvcc builds for CUDA 13.0' -- \
  fake FAKE_SMI=old bash "$SCRIPT" --detect-only --build-dir "$W/build"
check detect_ok 0 'Driver Version: 580' '\| detect +\| ok .*1 GPU\(s\): 0, NVIDIA H200' 'ALL PHASES PASSED' -- \
  fake bash "$SCRIPT" --detect-only --build-dir "$W/build"
# A failed detect stops the run before any build (nothing else could run).
check detect_stops_the_run 1 'NO GPU VISIBLE' '!==== (configure|parity|bench)' -- \
  env FWP_NVIDIA_SMI="$W/no-such-nvidia-smi" bash "$SCRIPT" --build-dir "$W/build"

# ---- whole runs on fakes ------------------------------------------------------------------------
# The fake benchmark reports a failed long-128 row (exit 1), so the bench phase fails even here.
check run_all_fakes_pass_but_bench_row_fails 1 \
  '\| parity +\| ok .*passed 6, failed 0, skipped 0' \
  '\| memcheck +\| ok .*passed 6.*ERROR SUMMARY: 0 errors' '\| racecheck +\| ok .*passed 3' \
  '\| bench +\| FAILED .*1 of 6 configurations failed' \
  '\| paper-small \| 0.0900 \| 0.0800 \(recurrent\) \| 0.0500 \| <= 0.10 ms \| meets \|' \
  '\| mid-64 \| 1.8000 .*\| misses \(2.0x the target\) \|' \
  '\| paper-medium \| not run' '\| long-128 \| FAILED \| - \| - \| .*DOES NOT RUN' \
  '\| lm +\| ok .*tokens/s: delta 123456.7, sum 123456.7, softmax 123456.7' \
  '\| mt +\| ok .*tokens/s: elu 54321.0, softmax 54321.0; beam-4 sentences/s: 321.00/321.00' \
  'GPU CHECK FAILED' -- full
check run_lm_without_device_fails 1 '\| lm +\| FAILED .*exit 1 after 0 of 3: .*no CUDA device' -- full FAKE_LM=nodevice
check run_mt_without_device_fails 1 '\| mt +\| FAILED .*exit 1 after 0 of 2: .*no CUDA device' -- full FAKE_MT=nodevice
# Tests that skip (as they did before FWP_REQUIRE_CUDA) are a failure, not a pass.
check run_skipped_tests_fail 1 '\| parity +\| FAILED .*skipped 2' 'GPU CHECK FAILED' -- full FAKE_TESTS=skip
check run_failed_test_is_rerun_alone 1 '\| parity +\| FAILED .*failed 1' 'isolated CudaParity.A: FAILED' -- \
  full FAKE_TESTS=fail
check run_no_test_ran_fails 1 '\| parity +\| FAILED .*passed 0.*expected at least 1' -- full FAKE_TESTS=none
check run_bench_without_device_fails 1 '\| bench +\| FAILED .*no result table: .*no CUDA device' -- \
  full FAKE_BENCH=nodevice
check run_sanitizer_refused_is_unavailable 1 '\| memcheck +\| UNAVAILABLE .*Device not supported' \
  '\| racecheck +\| UNAVAILABLE' -- full FAKE_SANITIZER=refuse
check run_small_budget_skips_later_phases 1 '\| parity +\| SKIPPED .*no time left' \
  '\| racecheck +\| SKIPPED .*no time left' -- full FWP_GPU_CHECK_BUDGET=20
# With the build (fake cmake): configure, build, then the rest.
check run_with_build 1 '\| configure +\| ok .*carried copy' '\| build +\| ok' '\| build-bench +\| ok' \
  '\| parity +\| ok' -- fake bash "$SCRIPT" --build-dir "$W/build"
# A failed build: the binaries left from an earlier run must not be tested instead.
check run_failed_build_tests_nothing 1 '\| build +\| FAILED .*error: boom' \
  '\| parity +\| SKIPPED .*no test binary built' '\| bench +\| SKIPPED .*no benchmark binary built' \
  '!==== parity \(limit' -- fake FAKE_BUILD=fail bash "$SCRIPT" --build-dir "$W/build"
# Results reach $OUT as they complete (flat, at most 8 files).
mkdir -p "$W/out"
check run_publishes_to_out 1 -- env PATH="$W/bin:$PATH" FWP_NVIDIA_SMI="$W/bin/nvidia-smi" OUT="$W/out" \
  bash "$SCRIPT" --skip-build --build-dir "$W/build"
n_out=$(find "$W/out" -type f | wc -l)
if [ -f "$W/out/gpu-check-summary.md" ] && grep -q '| racecheck' "$W/out/gpu-check-summary.md" && [ "$n_out" -le 8 ]; then
  echo "ok   out_holds_summary_and_at_most_8_files ($n_out)"
else
  echo "FAIL out_holds_summary_and_at_most_8_files: $n_out files: $(ls "$W/out")"; FAILURES=$((FAILURES + 1))
fi

# ---- the real thing on this machine -------------------------------------------------------------
if nvidia-smi -L > /dev/null 2>&1; then
  echo "skip real_detect_fails_without_gpu: this machine has a GPU"
else
  check real_detect_fails_without_gpu 1 'NO GPU VISIBLE' 'GPU CHECK FAILED' -- \
    bash "$SCRIPT" --detect-only --build-dir "$W/real"
fi
if [ -n "$REAL_TESTS" ]; then
  if nvidia-smi -L > /dev/null 2>&1; then
    echo "skip real_tests_fail_when_cuda_required: this machine has a GPU"
  else
    check real_tests_fail_when_cuda_required 1 'FWP_REQUIRE_CUDA is set but no CUDA device can be used' -- \
      env FWP_REQUIRE_CUDA=1 "$REAL_TESTS" --gtest_filter='CudaParity*:CudaTiles*' --gtest_color=no
    check real_tests_skip_when_not_required 0 'PASSED' -- \
      env FWP_REQUIRE_CUDA= "$REAL_TESTS" --gtest_filter='CudaParity*:CudaTiles*' --gtest_color=no
  fi
fi

if [ "$FAILURES" -eq 0 ]; then echo "gpu_check_test: all passed"; exit 0; fi
echo "gpu_check_test: $FAILURES FAILED"
exit 1
