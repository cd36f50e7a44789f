#!/usr/bin/env bash
# The associative-retrieval sweep of docs/results/retrieval.md (paper section 6.1).
#
#   scripts/retrieval-sweep.sh [setting1|setting2|all]      (default: all)
#
# Setting 1 (capacity, sum rule with attention normalisation, as in the paper):
#   Linear (elu), DPFP nu = 1, 2, 3, FAVOR+ m = 64 and softmax attention over S.
# Setting 2 (update): DPFP nu = 1 with the sum rule and with the delta rule,
#   and Linear (elu) with the delta rule, over S = 20..200.
#
# Every run uses the paper's recipe (Adam lr 1e-3, batch 32, an evaluation every
# 100 steps on 20 fresh sequences of S pairs (setting 2 trains on 2S pairs but
# the paper evaluates on S), stop at eval loss <= 0.001 or after 11 evaluations
# without improvement), capped at MAX_STEPS steps.
#
# Environment (the defaults follow the paper's protocol; the default grids are
# ours, spanning the ranges of S the paper plots):
#   FWP          the fwp program             (build/tools/fwp)
#   OUT          CSV and PNG outputs          (results/retrieval, git-ignored)
#   DOCS         where plots and sweep CSVs are copied for the write-up (docs/results)
#   MAX_STEPS    step cap per run             (100000, the paper's)
#   SEED         seed of every run            (1)
#   THREADS      CPU threads, 0 = all         (0)
#   DEVICE       cpu or cuda                  (cpu)
#   S1_ELU S1_DPFP1 S1_DPFP2 S1_DPFP3 S1_FAVOR S1_SOFTMAX   grids of setting 1 (S or A:B:STEP)
#   S2_KEYS      grid of setting 2            (20:200:20)
#   S2_EVAL_PAIRS  pairs per setting-2 evaluation sequence, 0 = the paper's S (0)
#   S2_DPFP1_SUM S2_DPFP1_DELTA S2_ELU_DELTA   per-model grids of setting 2 (default: S2_KEYS)
# A grid set to the empty string skips that model (e.g. to add points to one model only).
#
# Outputs: $OUT/setting{1,2}.csv (one row per run: the sweep table), $OUT/setting{1,2}.png
# (final eval loss vs S, one line per model), $OUT/setting{N}-<model>-evals.csv (every
# evaluation) and $OUT/commands.log (the exact commands with their start times).
# Rerunning a command replaces its rows in the sweep table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FWP=${FWP:-$ROOT/build/tools/fwp}
OUT=${OUT:-$ROOT/results/retrieval}
DOCS=${DOCS:-$ROOT/docs/results}
MAX_STEPS=${MAX_STEPS:-100000}
SEED=${SEED:-1}
THREADS=${THREADS:-0}
DEVICE=${DEVICE:-cpu}
# ${VAR-default}: unset takes the default, the empty string skips the model.
S1_ELU=${S1_ELU-20:200:20}
S1_DPFP1=${S1_DPFP1-20:200:20}
S1_DPFP2=${S1_DPFP2-20:400:20}
S1_DPFP3=${S1_DPFP3-20:500:20}
S1_FAVOR=${S1_FAVOR-20:200:20}
S1_SOFTMAX=${S1_SOFTMAX-20:600:20}
S2_KEYS=${S2_KEYS:-20:200:20}
S2_EVAL_PAIRS=${S2_EVAL_PAIRS:-0}
S2_DPFP1_SUM=${S2_DPFP1_SUM-$S2_KEYS}
S2_DPFP1_DELTA=${S2_DPFP1_DELTA-$S2_KEYS}
S2_ELU_DELTA=${S2_ELU_DELTA-$S2_KEYS}

what=${1:-all}
case "$what" in
  setting1|setting2|all) ;;
  *) echo "usage: $0 [setting1|setting2|all]" >&2; exit 2 ;;
esac
if [[ ! -x "$FWP" ]]; then
  echo "$0: $FWP is not built (cmake --build build --target fwp_cli, or set FWP)" >&2
  exit 1
fi
mkdir -p "$OUT" "$DOCS"

# Runs one fwp command, logging it (with its start time) before it starts.
run() {
  printf '%s  %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" | tee -a "$OUT/commands.log"
  "$@"
}

# model GRID ARGS...: runs `fwp ARGS... --keys GRID` unless GRID is empty.
model() {
  local grid=$1
  shift
  if [[ -z "$grid" ]]; then return 0; fi
  run "$FWP" "$@" --keys "$grid"
}

common=(--seed "$SEED" --max-steps "$MAX_STEPS" --threads "$THREADS" --device "$DEVICE")

setting1() {
  local s=(retrieval --setting 1 "${common[@]}" --sweep-csv "$OUT/setting1.csv" --plot "$OUT/setting1.png")
  model "$S1_ELU" "${s[@]}" --phi elu --csv "$OUT/setting1-elu-evals.csv"
  model "$S1_DPFP1" "${s[@]}" --phi dpfp --nu 1 --csv "$OUT/setting1-dpfp1-evals.csv"
  model "$S1_DPFP2" "${s[@]}" --phi dpfp --nu 2 --csv "$OUT/setting1-dpfp2-evals.csv"
  model "$S1_DPFP3" "${s[@]}" --phi dpfp --nu 3 --csv "$OUT/setting1-dpfp3-evals.csv"
  model "$S1_FAVOR" "${s[@]}" --phi favor --m 64 --csv "$OUT/setting1-favor64-evals.csv"
  model "$S1_SOFTMAX" "${s[@]}" --phi softmax --csv "$OUT/setting1-softmax-evals.csv"
}

setting2() {
  local s=(retrieval --setting 2 "${common[@]}" --eval-pairs "$S2_EVAL_PAIRS" --sweep-csv "$OUT/setting2.csv" --plot "$OUT/setting2.png")
  model "$S2_DPFP1_SUM" "${s[@]}" --phi dpfp --nu 1 --rule sum --csv "$OUT/setting2-dpfp1-sum-evals.csv"
  model "$S2_DPFP1_DELTA" "${s[@]}" --phi dpfp --nu 1 --rule delta --csv "$OUT/setting2-dpfp1-delta-evals.csv"
  model "$S2_ELU_DELTA" "${s[@]}" --phi elu --rule delta --csv "$OUT/setting2-elu-delta-evals.csv"
}

if [[ "$what" == setting1 || "$what" == all ]]; then setting1; fi
if [[ "$what" == setting2 || "$what" == all ]]; then setting2; fi

# The write-up shows the plots and cites the sweep tables.
for n in 1 2; do
  if [[ -f "$OUT/setting$n.png" ]]; then cp "$OUT/setting$n.png" "$DOCS/retrieval-setting$n.png"; fi
  if [[ -f "$OUT/setting$n.csv" ]]; then cp "$OUT/setting$n.csv" "$DOCS/retrieval-setting$n.csv"; fi
done
echo "results in $OUT; plots and tables copied to $DOCS"
