#!/usr/bin/env bash
# Thread scaling of fwp on this machine: wall time of the same work with 1 and
# 2 threads, on an otherwise idle machine and with 1 or 2 competing CPU-bound
# processes (busy loops started by this script). Prints a markdown table for
# bench/RESULTS.md. A benchmark, not a test: it asserts nothing.
#
# Usage: bash bench/thread_scaling.sh [BUILD_DIR] [ROUNDS]
# (the layer rows are Google Benchmark's time per fwd+bwd; the retrieval rows
# the wall time of the whole `fwp retrieval` run; the language-model and
# translation rows the mean time of a training step - forward, backward,
# clipping, Adam - that bench/lm_train_bench.cpp and bench/mt_bench.cpp report)
#   BUILD_DIR  default build (needs build/tools/fwp; the layer, language-model and
#              translation rows need build/bench/fwp_bench_cpu, fwp_bench_lm_train
#              and fwp_bench_mt, and are left out without them)
#   ROUNDS     rounds per cell (default 7); a round runs 1 thread and 2 threads
#              back to back, in alternating order
# Why rounds: on a shared 2-core VM one run of the same work varies by +-15%
# from minute to minute (the host's other tenants), and with a competitor each
# run also depends on where the scheduler puts the threads. Runs of 1 and 2
# threads taken next to each other see the same machine, so each round gives
# one ratio; the table reports the median time of each and the median, lowest
# and highest of the per-round ratios.
# THREAD_SCALING_ROWS=REGEX keeps only the rows whose name matches (grep -E).
# Run it on an idle machine: every other process counts as a competitor.
set -euo pipefail
build=${1:-build}
rounds=${2:-7}
fwp=$build/tools/fwp
bench=$build/bench/fwp_bench_cpu
lm_bench=$build/bench/fwp_bench_lm_train
mt_bench=$build/bench/fwp_bench_mt
[ -x "$fwp" ] || { echo "thread_scaling: no $fwp (build the tools)" >&2; exit 2; }

tmp=$(mktemp -d)
competitors=()
stop_competitors() {
  for pid in "${competitors[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${competitors[@]}"; do wait "$pid" 2>/dev/null || true; done
  competitors=()
}
trap 'stop_competitors; rm -rf "$tmp"' EXIT

start_competitors() {
  for ((i = 0; i < $1; ++i)); do
    bash -c 'while :; do :; done' &
    competitors+=($!)
  done
  sleep 0.5
}

# Wall seconds of one run of the command in "$@".
wall_seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > /dev/null 2>&1
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}'
}

retrieval() {  # args: threads, then retrieval flags
  local threads=$1
  shift
  "$fwp" retrieval --threads "$threads" --eval-every 100000 --quiet "$@"
}
# Seconds per iteration that Google Benchmark reports for one run.
layer_seconds() {  # args: threads, benchmark filter
  FWP_BENCH_THREADS=$1 "$bench" --benchmark_filter="$2" --benchmark_min_time=1 --benchmark_format=csv 2> /dev/null |
    awk -F, 'NR > 1 && $3 != "" {t = $3; u = $5; gsub(/"/, "", u); s = (u == "ms") ? 1e-3 : (u == "us") ? 1e-6 : (u == "ns") ? 1e-9 : 1; printf "%.4f", t * s; exit}'
}

# Seconds per training step that a model benchmark reports for one run (the
# step_ms of its RESULT line for training).
model_seconds() {  # args: threads, then the benchmark and its flags
  local threads=$1 program=$2
  shift 2
  "$program" --threads "$threads" "$@" 2> /dev/null |
    awk '$1 == "RESULT" && ($2 == "kind=train" || $2 ~ /^impl=/) {
      for (i = 2; i <= NF; ++i) if ($i ~ /^step_ms=/) { split($i, kv, "="); printf "%.4f", kv[2] / 1000; exit } }'
}

# The median of the numbers on standard input.
median() { sort -g | awk '{a[NR] = $1} END {m = int((NR + 1) / 2); printf "%.3f", (NR % 2) ? a[m] : (a[m] + a[m + 1]) / 2}'; }

cases=(
  "retrieval delta S=40 (Linear), 300 steps|retrieval|--phi elu --rule delta --keys 40 --max-steps 300"
  "retrieval delta S=100 (DPFP nu=2), 100 steps|retrieval|--phi dpfp --nu 2 --rule delta --keys 100 --max-steps 100"
  "retrieval sum S=400 (DPFP nu=2), 100 steps|retrieval|--phi dpfp --nu 2 --rule sum --keys 400 --max-steps 100"
)
if [ -x "$bench" ]; then
  cases+=(
    "layer elu delta fwd+bwd paper-small (B32 T256 H8 D16)|layer|Layer/elu/delta/recurrent/B32_T256_H8_D16/real_time$"
    "layer elu sum fwd+bwd paper-medium (B56 T384 H8 D32)|layer|Layer/elu/sum/chunked/B56_T384_H8_D32/real_time$"
    "layer softmax fwd+bwd paper-small|layer|Layer/softmax/B32_T256_H8_D16/real_time$"
  )
fi
if [ -x "$lm_bench" ]; then
  cases+=(
    "LM training step cpu-small (delta, vocab 8000, B16 T64)|model|$lm_bench --preset cpu-small --vocab 8000 --attention delta --warmup 1 --steps 6"
  )
fi
if [ -x "$mt_bench" ]; then
  cases+=(
    "translation training step (Linear: elu sum, the bench's shapes)|model|$mt_bench --attention elu --warmup 1 --steps 6 --sentences 1 --out-len 1 --growth 8 --growth-repeats 1"
  )
fi
if [ -n "${THREAD_SCALING_ROWS:-}" ]; then
  kept=()
  for spec in "${cases[@]}"; do
    if grep -Eq -- "$THREAD_SCALING_ROWS" <<< "${spec%%|*}"; then kept+=("$spec"); fi
  done
  cases=("${kept[@]}")
fi

echo "| work | competing processes | 1 thread (s) | 2 threads (s) | 1 thread / 2 threads: median of rounds (lowest-highest) |"
echo "|---|---|---|---|---|"
for spec in "${cases[@]}"; do
  IFS='|' read -r name kind args <<< "$spec"
  for load in 0 1 2; do
    start_competitors "$load"
    one=() two=() ratios=()
    for ((r = 0; r < rounds; ++r)); do
      order=(1 2)
      if ((r % 2)); then order=(2 1); fi
      for threads in "${order[@]}"; do
        if [ "$kind" = retrieval ]; then
          # shellcheck disable=SC2086
          t=$(wall_seconds retrieval "$threads" $args)
        elif [ "$kind" = model ]; then
          # shellcheck disable=SC2086
          t=$(model_seconds "$threads" $args)
        else
          t=$(layer_seconds "$threads" "$args")
        fi
        if [ "$threads" = 1 ]; then t1=$t; else t2=$t; fi
      done
      one+=("$t1") two+=("$t2")
      ratios+=("$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.4f", a / b}')")
    done
    stop_competitors
    m1=$(printf '%s\n' "${one[@]}" | median)
    m2=$(printf '%s\n' "${two[@]}" | median)
    mr=$(printf '%s\n' "${ratios[@]}" | median)
    lo=$(printf '%s\n' "${ratios[@]}" | sort -g | head -n 1)
    hi=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -n 1)
    printf '| %s | %d | %s | %s | %.2fx (%.2f-%.2f) |\n' "$name" "$load" "$m1" "$m2" "$mr" "$lo" "$hi"
  done
done
