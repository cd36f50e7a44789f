#!/usr/bin/env bash
# Thread scaling of fwp on this machine: wall time of the same work with 1 and
# 2 threads, on an otherwise idle machine and with 1 or 2 competing CPU-bound
# processes (busy loops started by this script). Prints a markdown table for
# bench/RESULTS.md. A benchmark, not a test: it asserts nothing.
#
# Usage: bash bench/thread_scaling.sh [BUILD_DIR] [REPEATS]
# (the layer rows are Google Benchmark's median time per fwd+bwd; the retrieval
# rows the median wall time of the whole `fwp retrieval` run)
#   BUILD_DIR  default build (needs build/tools/fwp and build/bench/fwp_bench_cpu)
#   REPEATS    runs per cell, the median is reported (default 3)
# Run it on an idle machine: every other process counts as a competitor.
set -euo pipefail
build=${1:-build}
repeats=${2:-3}
fwp=$build/tools/fwp
bench=$build/bench/fwp_bench_cpu
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

# Median wall seconds of REPEATS runs of the command in "$@".
median_seconds() {
  local times=()
  for ((r = 0; r < repeats; ++r)); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null 2>&1
    t1=$(date +%s.%N)
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}')")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR] = $1} END {printf "%.3f", a[int((NR + 1) / 2)]}'
}

retrieval() {  # args: threads, then retrieval flags
  local threads=$1
  shift
  "$fwp" retrieval --threads "$threads" --eval-every 100000 --quiet "$@"
}
# Median seconds per iteration that Google Benchmark reports (REPEATS repetitions).
layer_seconds() {  # args: threads, benchmark filter
  FWP_BENCH_THREADS=$1 "$bench" --benchmark_filter="$2" --benchmark_min_time=0.5 \
    --benchmark_repetitions="$repeats" --benchmark_format=csv 2> /dev/null |
    awk -F, '$1 ~ /_median"?$/ {t = $3; u = $5; gsub(/"/, "", u); s = (u == "ms") ? 1e-3 : (u == "us") ? 1e-6 : (u == "ns") ? 1e-9 : 1; printf "%.4f", t * s}'
}

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

echo "| work | competing processes | 1 thread (s) | 2 threads (s) | 1 thread / 2 threads |"
echo "|---|---|---|---|---|"
for spec in "${cases[@]}"; do
  IFS='|' read -r name kind args <<< "$spec"
  for load in 0 1 2; do
    start_competitors "$load"
    if [ "$kind" = retrieval ]; then
      # shellcheck disable=SC2086
      t1=$(median_seconds retrieval 1 $args)
      # shellcheck disable=SC2086
      t2=$(median_seconds retrieval 2 $args)
    else
      t1=$(layer_seconds 1 "$args")
      t2=$(layer_seconds 2 "$args")
    fi
    stop_competitors
    printf '| %s | %d | %s | %s | %sx |\n' "$name" "$load" "$t1" "$t2" \
      "$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.2f", a / b}')"
  done
done
