#!/usr/bin/env bash
# Data-parallel scaling of the language model on this machine: training
# tokens/s of one process (1 and 2 threads) against two MPI processes of one
# thread each, on the same global batch, side by side in one run; and the
# all-reduce alone (time, bytes, bandwidth) for a small and a larger model.
# Prints the RESULT lines of bench/lm_train_bench.cpp and a summary table.
#
#   bash bench/dist_scaling.sh [BUILD_DIR]        (default build/)
#
# Run it on an idle machine: two processes on two cores leave nothing over.
set -euo pipefail
build=${1:-build}
bench=$build/bench/fwp_bench_lm_train
[ -x "$bench" ] || { echo "dist_scaling: no $bench (build the target fwp_bench_lm_train)" >&2; exit 2; }
command -v mpirun > /dev/null || { echo "dist_scaling: no mpirun (scripts/setup.sh installs OpenMPI)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe --bind-to none)
steps=${STEPS:-20}

run() {  # label, processes, threads, extra bench flags...
  local label=$1 np=$2 threads=$3
  shift 3
  local out
  if [ "$np" = 1 ]; then
    out=$("$bench" --threads "$threads" --steps "$steps" --warmup 3 "$@")
  else
    out=$("${mpi[@]}" -np "$np" "$bench" --dist mpi --threads "$threads" --steps "$steps" --warmup 3 "$@")
  fi
  local result
  result=$(grep '^RESULT' <<< "$out")
  echo "$label: $result"
  grep -E '^all-reduce' <<< "$out" || true
  declare -g "tps_$label=$(sed -E 's/.*tokens_per_s=([0-9.]+).*/\1/' <<< "$result")"
}

echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); fwp $(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
small=(--preset cpu-small --vocab 8000 --attention delta --batch 16 --length 64)
run p1t1 1 1 "${small[@]}"
run p1t2 1 2 "${small[@]}"
run p2t1 2 1 "${small[@]}"
awk -v a="$tps_p1t1" -v b="$tps_p1t2" -v c="$tps_p2t1" 'BEGIN {
  printf "cpu-small delta, vocab 8000, global batch 16 x 64: tokens/s 1 process x 1 thread %.0f, 1 x 2 threads %.0f, 2 processes x 1 thread %.0f\n", a, b, c
  printf "scaling efficiency of 2 processes vs 1 process x 1 thread: %.2f; 2 processes vs 1 process x 2 threads: %.2fx\n", c / (2 * a), c / b
}'

# A larger model: the all-reduce's bandwidth at tens of MB.
large=(--preset cpu-small --vocab 32000 --d-model 256 --heads 8 --d-head 32 --d-ff 1024 --attention delta --batch 8 --length 64)
run large_p1t1 1 1 "${large[@]}"
run large_p2t1 2 1 "${large[@]}"
# Without a timeout the MPI engine uses MPI's blocking all-reduce instead of the
# non-blocking one it polls against the deadline.
run large_p2t1_blocking 2 1 "${large[@]}" --timeout 0
awk -v a="$tps_large_p1t1" -v c="$tps_large_p2t1" -v d="$tps_large_p2t1_blocking" 'BEGIN {
  printf "d_model 256, vocab 32000, global batch 8 x 64: tokens/s 1 process %.0f, 2 processes %.0f (efficiency %.2f), 2 processes with the blocking all-reduce %.0f (%.2f)\n", a, c, c / (2 * a), d, d / (2 * a)
}'
