#!/usr/bin/env bash
# Speed of the translation model, fwp (bench/mt_bench.cpp through the C API) against the same
# network in PyTorch (bench/mt_torch.py), one after the other for each attention (softmax, then
# elu + 1 linear attention) in this one invocation, with the same shapes, threads and work:
#   training tokens/s (source + target; forward, backward, Adam),
#   translation sentences/s with beam 4 and greedy (outputs forced to OUT_LEN tokens),
#   ms per output token as the output grows (one sentence, forced lengths GROWTH).
# Builds nothing. Prints markdown tables with the ratios (> 1: fwp faster), from the wall time
# and from the process CPU time (with one thread, the work done: the figure other processes on
# a shared machine disturb least, and the one the per-token table uses), and checks that both
# sides count the same parameters (a mismatch is printed and makes the script exit 1).
# That the two networks compute the same thing is checked apart (numbers, greedy and beam):
#   build/bench/fwp_bench_mt --dump DIR && python bench/mt_torch.py --check DIR
# (with the same size flags on both). A benchmark, not a test.
#
# Usage: [PYTHON=~/venv-torch/bin/python] bash bench/mt_compare.sh [BUILD_DIR] [THREADS]
#   BUILD_DIR  default build (needs BUILD_DIR/bench/fwp_bench_mt)
#   THREADS    default 1; fwp gets --threads THREADS, PyTorch torch.set_num_threads(THREADS)
# Environment: ATTENTIONS ("softmax elu"), TORCH_FORMS ("cumsum chunked": PyTorch's forms of the
#   causal linear attention in training; the first also runs the translation timings), STEPS (10), WARMUP (2), SENTENCES (32), OUT_LEN (24),
#   GROWTH ("32,64,128,256,512"), GROWTH_REPEATS (2),
#   EXTRA_ARGS (passed to both programs, e.g. "--batch 16 --vocab 1000").
# PyTorch is not a dependency of fwp; install it in a virtual environment:
#   python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
threads=${2:-1}
python=${PYTHON:-python3}
attentions=${ATTENTIONS:-softmax elu}
torch_forms=${TORCH_FORMS:-cumsum chunked}
extra=${EXTRA_ARGS:-}
fwp=$build/bench/fwp_bench_mt

[ -x "$fwp" ] || { echo "mt_compare: no $fwp (build the target fwp_bench_mt)" >&2; exit 2; }
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "mt_compare: PyTorch is not installed for $python. Install it in a virtual environment:" >&2
  echo "  python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch" >&2
  echo "and run: PYTHON=~/venv-torch/bin/python bash bench/mt_compare.sh $build $threads" >&2
  exit 3
fi

common=(--threads "$threads" --steps "${STEPS:-10}" --warmup "${WARMUP:-2}" --sentences "${SENTENCES:-32}"
  --out-len "${OUT_LEN:-24}" --growth "${GROWTH:-32,64,128,256,512}" --growth-repeats "${GROWTH_REPEATS:-2}")

# The value of key in the RESULT line of kind `kind` whose other fields match `filter` (a regex).
field() { grep "^RESULT kind=$1 $2" <<<"$4" | sed -n 's/.*[[:space:]]'"$3"'=\([^[:space:]]*\).*/\1/p' | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3g", a / b }'; }

train_rows=() trans_rows=() growth_rows=()
mismatch=0
for attention in $attentions; do
  # shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
  f=$("$fwp" --attention "$attention" "${common[@]}" $extra)
  echo "$f" | grep -v '^RESULT'
  forms=$torch_forms
  [ "$attention" = softmax ] && forms=sdpa
  first=1
  for form in $forms; do
    # The first form runs everything; the others only differ in the training step.
    flags=()
    [ "$form" != sdpa ] && flags+=(--form "$form")
    [ "$first" = 0 ] && flags+=(--train-only)
    # shellcheck disable=SC2086
    out=$("$python" "$here/mt_torch.py" --attention "$attention" "${flags[@]}" "${common[@]}" $extra)
    echo "$out" | grep -v '^RESULT'
    [ "$first" = 1 ] && t=$out
    first=0
    fp=$(field train "" params "$f")
    tp=$(field train "" params "$out")
    same=yes
    if [ "$fp" != "$tp" ]; then same=NO; mismatch=1; fi
    ftok=$(field train "" tokens_per_s "$f") ttok=$(field train "" tokens_per_s "$out")
    fcpu=$(field train "" cpu_ms "$f") tcpu=$(field train "" cpu_ms "$out")
    train_rows+=("| $attention | $form | $(field train "" step_ms "$out") | $(field train "" step_ms "$f") | $ttok | $ftok | $(ratio "$ftok" "$ttok")x | $tcpu | $fcpu | **$(ratio "$tcpu" "$fcpu")x** | $fp / $tp $same |")
  done
  for beam in 4 1; do
    name=$([ "$beam" = 1 ] && echo greedy || echo "beam $beam")
    fs=$(field translate "beam=$beam " sentences_per_s "$f") ts=$(field translate "beam=$beam " sentences_per_s "$t")
    fc=$(field translate "beam=$beam " cpu_ms "$f") tc=$(field translate "beam=$beam " cpu_ms "$t")
    trans_rows+=("| $attention | $name | $ts | $fs | $(ratio "$fs" "$ts")x | $tc | $fc | **$(ratio "$tc" "$fc")x** |")
  done
  for beam in 4 1; do
    name=$([ "$beam" = 1 ] && echo greedy || echo "beam $beam")
    for len in $(grep "^RESULT kind=growth beam=$beam " <<<"$f" | sed -n 's/.* length=\([0-9]*\).*/\1/p'); do
      fm=$(field growth "beam=$beam length=$len " ms_per_token "$f")
      tm=$(field growth "beam=$beam length=$len " ms_per_token "$t")
      fa=$(ratio "$(field growth "beam=$beam length=$len " cpu_ms "$f")" "$len")
      ta=$(ratio "$(field growth "beam=$beam length=$len " cpu_ms "$t")" "$len")
      growth_rows+=("| $attention | $name | $len | $ta | $fa | $(ratio "$ta" "$fa")x | $tm | $fm |")
    done
  done
done

torch_version=$("$python" -c 'import torch; print(torch.__version__)')
echo
echo "Translation model, $threads thread(s), torch $torch_version${extra:+; extra flags: $extra}"
echo
echo "Training step (forward + backward + Adam); tokens = source + target tokens; CPU = process CPU ms per step:"
echo "| attention | torch form | torch ms/step | fwp ms/step | torch tokens/s | fwp tokens/s | fwp / torch (wall) | torch CPU ms | fwp CPU ms | torch CPU / fwp CPU | params fwp / torch |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${train_rows[@]}"
echo
echo "Translation of ${SENTENCES:-32} sources in one batch, outputs forced to ${OUT_LEN:-24} tokens (CPU = process CPU ms of the whole run):"
echo "| attention | search | torch sentences/s | fwp sentences/s | fwp / torch (wall) | torch CPU ms | fwp CPU ms | torch CPU / fwp CPU |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${trans_rows[@]}"
echo
echo "One sentence, outputs forced to each length (best of ${GROWTH_REPEATS:-2} by CPU time): CPU ms per output token over the"
echo "whole translation (average), and between consecutive lengths (marginal, (t_i - t_{i-1}) / (L_i - L_{i-1})):"
echo "| attention | search | output length | torch avg ms/token | fwp avg ms/token | torch / fwp | torch marginal | fwp marginal |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${growth_rows[@]}"
if [ "$mismatch" != 0 ]; then
  echo "mt_compare: the parameter counts differ (marked NO): the two networks are not the same" >&2
  exit 1
fi
