#!/usr/bin/env bash
# The translation comparison of docs/results/mt.md (the paper's Table 1 rows at
# a size two CPU cores can afford): on the English->Spanish Bible corpus
# (scripts/make-bible-corpus.py, whole books held out), one model size and
# training budget, one model per line below. Each run writes its checkpoint,
# its evaluation log rows and a JSON line; afterwards every checkpoint
# translates the test books with beam 4 and greedily, scored by `fwp mt score`.
#
# Usage: bash scripts/mt-experiments.sh OUT_DIR [MODEL...]
#   MODEL: transformer linear performer-16 performer-64 dpfp-1 dpfp-2
#          linear-delta-decoder (default: all, in this order)
# Environment: FWP (default build/tools/fwp), STEPS (default 1000), SEED (1),
#   THREADS (per run, default 1), PARALLEL (runs at a time, default 1),
#   SIZE (model flags; default: 2 + 2 layers, d_model 128, 4 heads of 32,
#   FFN 512), VOCAB (joint BPE size, default 8000).
# Every command is appended with its start time to OUT_DIR/commands.log. A run
# interrupted after a checkpoint continues from it when the script is rerun
# (resume is exact); finished steps are skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: mt-experiments.sh OUT_DIR [MODEL...]}
shift
FWP=${FWP:-$root/build/tools/fwp}
STEPS=${STEPS:-1000}
SEED=${SEED:-1}
THREADS=${THREADS:-1}
PARALLEL=${PARALLEL:-1}
SIZE=${SIZE:---encoder-layers 2 --decoder-layers 2 --d-model 128 --heads 4 --d-head 32 --d-ff 512}
VOCAB=${VOCAB:-8000}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(transformer linear performer-16 performer-64 dpfp-1 dpfp-2 linear-delta-decoder)
mkdir -p "$out"
log="$out/commands.log"

# The paper's Table 1 models: every attention of one kind, sum rule. At d_head
# 32: Linear d_dot 32; Performer m = 16 / 64 (d_dot 2m = 32 / 128); DPFP
# nu = 1 / 2 (d_dot 2 nu d_head = 64 / 128). The delta-rule decoder is our extra row.
flags_of() {
  case "$1" in
    transformer) echo "--attn softmax" ;;
    linear) echo "--attn elu" ;;
    performer-16) echo "--attn favor --m 16" ;;
    performer-64) echo "--attn favor --m 64" ;;
    dpfp-1) echo "--attn dpfp --nu 1" ;;
    dpfp-2) echo "--attn dpfp --nu 2" ;;
    linear-delta-decoder) echo "--attn elu --decoder-rule delta" ;;
    *) echo "mt-experiments: unknown model '$1'" >&2; return 2 ;;
  esac
}

data="$out/data"
if [ ! -s "$data/train.pairs" ]; then
  corpus="$out/bible"
  [ -s "$corpus/train.en" ] || /usr/bin/python3 "$root/scripts/make-bible-corpus.py" "$corpus"
  "$FWP" mt prepare --corpus "$corpus" --src-lang en --tgt-lang es --vocab-size "$VOCAB" --out "$data"
fi

run_one() {
  local model=$1 flags
  flags=$(flags_of "$model")
  if [ -s "$out/$model.test-beam4.json" ]; then
    echo "$(date -u +%FT%TZ)  skip $model (finished)" >> "$log"
    return 0
  fi
  local cmd=("$FWP" mt train --data "$data" --preset cpu-small $SIZE $flags --warmup 400 --max-steps "$STEPS"
             --seed "$SEED" --threads "$THREADS" --eval-every 250 --bleu-sentences 100
             --checkpoint "$out/$model.ckpt" --csv "$out/$model.csv" --json --quiet)
  if [ -s "$out/$model.ckpt" ] && [ ! -s "$out/$model.json" ]; then
    cmd=("$FWP" mt train --resume "$out/$model.ckpt" --max-steps "$STEPS" --threads "$THREADS"
         --csv "$out/$model.csv" --json --quiet)
  fi
  if [ ! -s "$out/$model.json" ]; then
    echo "$(date -u +%FT%TZ)  ${cmd[*]}" >> "$log"
    "${cmd[@]}" > "$out/$model.json.part"
    mv "$out/$model.json.part" "$out/$model.json"
  fi
  local beam
  for beam in 1 4; do
    local name=greedy
    [ "$beam" = 1 ] || name=beam$beam
    local tcmd=("$FWP" mt translate --checkpoint "$out/$model.ckpt" --data "$data" --beam "$beam"
                --threads "$THREADS" --input "$data/test.source.txt" --output "$out/$model.test-$name.txt")
    echo "$(date -u +%FT%TZ)  ${tcmd[*]}" >> "$log"
    "${tcmd[@]}" 2> "$out/$model.test-$name.log"
    "$FWP" mt score --hyp "$out/$model.test-$name.txt" --ref "$data/test.target.txt" --json \
      > "$out/$model.test-$name.json.part"
    mv "$out/$model.test-$name.json.part" "$out/$model.test-$name.json"
  done
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
echo "mt-experiments: done; results in $out"
