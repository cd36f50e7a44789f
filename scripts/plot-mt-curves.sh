#!/usr/bin/env bash
# Learning curves of scripts/mt-experiments.sh in one PNG: validation
# perplexity (left, log scale) and greedy validation BLEU on the first 100
# valid sentences (right) against training steps, one line per model CSV.
# Usage: bash scripts/plot-mt-curves.sh RUN_DIR OUT.png
set -euo pipefail
dir=${1:?usage: plot-mt-curves.sh RUN_DIR OUT.png}
out=${2:?usage: plot-mt-curves.sh RUN_DIR OUT.png}
command -v gnuplot > /dev/null || { echo "plot-mt-curves: gnuplot not found (scripts/setup.sh installs it)" >&2; exit 2; }
shopt -s nullglob
csvs=("$dir"/*.csv)
[ ${#csvs[@]} -gt 0 ] || { echo "plot-mt-curves: no CSV in $dir" >&2; exit 2; }
colours=(black '#d62728' '#1f77b4' '#2ca02c' '#ff7f0e' '#9467bd' '#8c564b' '#e377c2' '#17becf')
# plot_list COLUMN: one line per CSV (columns: model,step,eval_loss,best,seconds,ppl,bleu,chrf,lr).
plot_list() {
  local column=$1 n=0 plots=() csv label
  for csv in "${csvs[@]}"; do
    label=$(awk -F, 'NR == 2 { print $1 }' "$csv")
    [ -n "$label" ] || continue
    plots+=("'$csv' using 2:$column every ::1 with linespoints lw 1.5 pt $((n % 12 + 1)) lc rgb '${colours[n % ${#colours[@]}]}' title '$label'")
    n=$((n + 1))
  done
  (IFS=,; echo "${plots[*]}")
}
{
  echo "set terminal pngcairo size 1300,520 enhanced font 'sans,10'"
  echo "set output '$out'"
  echo "set datafile separator ','"
  echo "set multiplot layout 1,2"
  echo "set grid"
  echo "set xlabel 'training step (<= 2048 tokens per side each)'"
  echo "set logscale y"
  echo "set ylabel 'validation perplexity (all valid pairs)'"
  echo "set key top right"
  echo "plot $(plot_list 6)"
  echo "unset logscale y"
  echo "set ylabel 'validation BLEU (greedy, first 100 valid sentences)'"
  echo "set key top left"
  echo "plot $(plot_list 7)"
  echo "unset multiplot"
} | gnuplot
echo "plot-mt-curves: wrote $out"
