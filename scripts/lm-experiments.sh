#!/usr/bin/env bash
# The language-model comparison of docs/results/lm.md (the paper's Table 2 rows
# at a size two CPU cores can afford): on the Debian corpus (Treasury of David,
# scripts/make-tdavid-corpus.py), the cpu-small preset, one training budget,
# one model per line below. Each run writes its checkpoint, its evaluation log
# rows and a JSON line; afterwards every checkpoint is evaluated on valid and
# test with the sliding window and with independent segments.
#
# Usage: bash scripts/lm-experiments.sh OUT_DIR [MODEL...]
#   MODEL: transformer linear-sum linear-delta performer-sum performer-delta
#          dpfp-sum dpfp-delta linear-delta-carry (default: all, in this order);
#          ablations of the carried-memory row: linear-delta-nopos (no positional
#          encoding, segments independent), linear-delta-carry-pos (memory carried,
#          sinusoidal positions counting on through each stream)
# Environment: FWP (default build/tools/fwp), STEPS (default 6000), SEED (1),
#   THREADS (default 1), EVAL_TOKENS (tokens of each split scored by the final
#   sliding-window evaluations, the costly ones: every scored token runs a
#   whole window; default 0 = all), PARALLEL (runs at a time, default 1),
#   OUTPUT (flags of the output layer; default the paper's adaptive input and
#   softmax with tied weights, cutoffs scaled to this vocabulary: the head's
#   5000 words cover 94% of the training tokens, as the paper's 20000 do of
#   WikiText-103's).
# Every command is appended with its start time to OUT_DIR/commands.log. A run
# interrupted after a checkpoint continues from it when the script is rerun
# (resume is exact); finished runs are skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: lm-experiments.sh OUT_DIR [MODEL...]}
shift
FWP=${FWP:-$root/build/tools/fwp}
STEPS=${STEPS:-6000}
SEED=${SEED:-1}
THREADS=${THREADS:-1}
EVAL_TOKENS=${EVAL_TOKENS:-0}
PARALLEL=${PARALLEL:-1}
OUTPUT=${OUTPUT:---cutoffs 5000,10000,30000 --tie}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(transformer linear-sum linear-delta performer-sum performer-delta dpfp-sum
                                     dpfp-delta linear-delta-carry)
mkdir -p "$out"
log="$out/commands.log"

# The paper's Table 2 models: feature map and rule; Performer m = 16 per head
# (d_dot 32, as the DPFP rows), DPFP nu = 1 (d_dot 2 * d_head = 32 at d_head 16).
flags_of() {
  case "$1" in
    transformer) echo "--phi softmax" ;;
    linear-sum) echo "--phi elu --rule sum" ;;
    linear-delta) echo "--phi elu --rule delta" ;;
    performer-sum) echo "--phi favor --m 16 --rule sum" ;;
    performer-delta) echo "--phi favor --m 16 --rule delta" ;;
    dpfp-sum) echo "--phi dpfp --nu 1 --rule sum" ;;
    dpfp-delta) echo "--phi dpfp --nu 1 --rule delta" ;;
    linear-delta-carry) echo "--phi elu --rule delta --carry" ;;  # no positions (the default with --carry, as the paper)
    linear-delta-nopos) echo "--phi elu --rule delta --positions none" ;;
    linear-delta-carry-pos) echo "--phi elu --rule delta --carry --positions sinusoidal" ;;
    *) echo "lm-experiments: unknown model '$1'" >&2; return 2 ;;
  esac
}

data="$out/data"
if [ ! -s "$data/train.tokens.bin" ]; then
  corpus="$out/tdavid"
  [ -s "$corpus/wiki.train.tokens" ] || /usr/bin/python3 "$root/scripts/make-tdavid-corpus.py" "$corpus"
  "$FWP" lm prepare --train "$corpus/wiki.train.tokens" --valid "$corpus/wiki.valid.tokens" \
    --test "$corpus/wiki.test.tokens" --out "$data"
fi

run_one() {
  local model=$1 flags
  flags=$(flags_of "$model")
  if [ -s "$out/$model.eval-test-segments.json" ]; then
    echo "$(date -u +%FT%TZ)  skip $model (finished)" >> "$log"
    return 0
  fi
  local cmd=("$FWP" lm train --data "$data" --preset cpu-small $flags $OUTPUT --max-steps "$STEPS" --seed "$SEED"
             --threads "$THREADS" --eval-every 250 --eval-tokens 20000 --checkpoint "$out/$model.ckpt"
             --csv "$out/$model.csv" --json --quiet)
  if [ -s "$out/$model.ckpt" ] && [ ! -s "$out/$model.json" ]; then
    cmd=("$FWP" lm train --resume "$out/$model.ckpt" --max-steps "$STEPS" --threads "$THREADS"
         --csv "$out/$model.csv" --json --quiet)
  fi
  if [ ! -s "$out/$model.json" ]; then
    echo "$(date -u +%FT%TZ)  ${cmd[*]}" >> "$log"
    "${cmd[@]}" > "$out/$model.json.part"
    mv "$out/$model.json.part" "$out/$model.json"
  fi
  local mode split limit
  for split in valid test; do
    for mode in sliding segments; do
      limit=0
      [ "$mode" = sliding ] && limit=$EVAL_TOKENS
      local ecmd=("$FWP" lm eval --data "$data" --checkpoint "$out/$model.ckpt" --split "$split" --mode "$mode"
                  --threads "$THREADS" --max-tokens "$limit" --json)
      echo "$(date -u +%FT%TZ)  ${ecmd[*]}" >> "$log"
      "${ecmd[@]}" > "$out/$model.eval-$split-$mode.json"
    done
  done
  # Carried-memory models also run as an RNN over the whole split (each token once: cheap).
  if [[ "$model" == *carry* ]]; then
    for split in valid test; do
      local ccmd=("$FWP" lm eval --data "$data" --checkpoint "$out/$model.ckpt" --split "$split" --mode carry
                  --threads "$THREADS" --max-tokens 0 --json)
      echo "$(date -u +%FT%TZ)  ${ccmd[*]}" >> "$log"
      "${ccmd[@]}" > "$out/$model.eval-$split-carry.json"
    done
  fi
  echo "$(date -u +%FT%TZ)  done $model" >> "$log"
}

running=0
for model in "${models[@]}"; do
  flags_of "$model" > /dev/null
  run_one "$model" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
echo "lm-experiments: done; results in $out"
