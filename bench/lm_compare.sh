#!/usr/bin/env bash
# Training tokens/s of the whole language model, fwp (bench/lm_train_bench.cpp
# through the C API) against the same network in PyTorch (bench/lm_torch.py),
# run one after the other in this one invocation with the same shapes, the
# same thread count and the same kind of step (forward, backward, clipping
# 0.25, Adam), for softmax attention, the sum rule and the delta rule on
#   (a) the cpu-small shapes (4 layers, d_model 128, 4 heads of 32, d_ff 512; batch 16 x 64) and
#   (b) the paper-small shapes (16 layers, d_model 128, 8 heads of 16, d_ff 2048; batch 8 x 256),
# both with a reduced vocabulary (VOCAB, default 8000). PyTorch's fast-weight
# rows come in two forms: "loop", the authors' recurrent formulation (one
# rank-1 update per token), and "chunked" (the chunkwise form). Prints a
# markdown table with fwp / torch per row (tokens/s, wall time; and the ratio of
# the process CPU times per step, torch / fwp, which other processes on a shared
# machine disturb less: > 1 means fwp does the step with less CPU time) and
# checks that both sides count the same parameters (a mismatch is printed and
# makes the script exit 1).
# A benchmark, not a test: run it on an idle machine; figures on a shared one are noisy.
#
# Usage: [PYTHON=~/venv-torch/bin/python] bash bench/lm_compare.sh [BUILD_DIR] [THREADS]
#   BUILD_DIR  default build (needs BUILD_DIR/bench/fwp_bench_lm_train)
#   THREADS    default 2; fwp gets --threads THREADS, PyTorch torch.set_num_threads(THREADS)
# Environment: VOCAB (8000), STEPS (10 timed steps), WARMUP (2), PRESETS ("cpu-small paper-small"),
#   ATTENTIONS ("softmax sum delta"), TORCH_FORMS ("loop chunked"),
#   EXTRA_ARGS (passed to both programs, e.g. "--layers 2 --batch 4" for a quick check).
# PyTorch is not a dependency of fwp; install it in a virtual environment:
#   python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
threads=${2:-2}
python=${PYTHON:-python3}
vocab=${VOCAB:-8000}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
presets=${PRESETS:-cpu-small paper-small}
attentions=${ATTENTIONS:-softmax sum delta}
torch_forms=${TORCH_FORMS:-loop chunked}
extra=${EXTRA_ARGS:-}
fwp=$build/bench/fwp_bench_lm_train

[ -x "$fwp" ] || { echo "lm_compare: no $fwp (configure with -DFWP_BUILD_BENCH=ON and build fwp_bench_lm_train)" >&2; exit 2; }
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "lm_compare: PyTorch is not installed for $python. Install it in a virtual environment:" >&2
  echo "  python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch" >&2
  echo "and run: PYTHON=~/venv-torch/bin/python bash bench/lm_compare.sh $build $threads" >&2
  exit 3
fi

# The value of key in the RESULT line of a program's output.
field() { sed -n 's/^RESULT .*[[:space:]]'"$1"'=\([^[:space:]]*\).*/\1/p' <<<"$2"; }

common=(--vocab "$vocab" --threads "$threads" --steps "$steps" --warmup "$warmup")
rows=()
mismatch=0
for preset in $presets; do
  for attention in $attentions; do
    # shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
    out=$("$fwp" --preset "$preset" --attention "$attention" "${common[@]}" $extra)
    echo "$out" | grep -v '^RESULT'
    fwp_tps=$(field tokens_per_s "$out")
    fwp_params=$(field params "$out")
    fwp_ms=$(field step_ms "$out")
    fwp_cpu=$(field cpu_ms "$out")
    forms=$torch_forms
    [ "$attention" = softmax ] && forms=sdpa
    for form in $forms; do
      form_flag=()
      [ "$form" != sdpa ] && form_flag=(--form "$form")
      # shellcheck disable=SC2086
      out=$("$python" "$here/lm_torch.py" --preset "$preset" --attention "$attention" "${form_flag[@]}" \
        "${common[@]}" $extra)
      echo "$out" | grep -v '^RESULT'
      torch_tps=$(field tokens_per_s "$out")
      torch_params=$(field params "$out")
      torch_ms=$(field step_ms "$out")
      torch_cpu=$(field cpu_ms "$out")
      same=yes
      if [ "$fwp_params" != "$torch_params" ]; then same="NO"; mismatch=1; fi
      ratio=$(awk -v a="$fwp_tps" -v b="$torch_tps" 'BEGIN { printf "%.2f", a / b }')
      cpu_ratio=$(awk -v a="$fwp_cpu" -v b="$torch_cpu" 'BEGIN { printf "%.2f", b / a }')
      rows+=("| $preset | $attention | $form | $torch_ms | $torch_tps | $fwp_ms | $fwp_tps | **${ratio}x** | ${cpu_ratio}x | $fwp_params / $torch_params $same |")
    done
  done
done

torch_version=$("$python" -c 'import torch; print(torch.__version__)')
echo
echo "LM training step (forward + backward + clip + Adam), vocab $vocab, $threads thread(s), mean of $steps steps after $warmup warm-up; torch $torch_version${extra:+; extra flags: $extra}"
echo "| shapes | attention | torch form | torch ms/step | torch tokens/s | fwp ms/step | fwp tokens/s | fwp / torch | torch CPU / fwp CPU | params fwp / torch |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ "$mismatch" != 0 ]; then
  echo "lm_compare: the parameter counts differ (marked NO): the two networks are not the same" >&2
  exit 1
fi
