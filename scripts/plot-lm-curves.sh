#!/usr/bin/env bash
# Learning curves of scripts/lm-experiments.sh in one PNG: validation
# perplexity (log scale) against training steps, one line per model CSV.
# Usage: bash scripts/plot-lm-curves.sh RUN_DIR OUT.png
set -euo pipefail
dir=${1:?usage: plot-lm-curves.sh RUN_DIR OUT.png}
out=${2:?usage: plot-lm-curves.sh RUN_DIR OUT.png}
command -v gnuplot > /dev/null || { echo "plot-lm-curves: gnuplot not found (scripts/setup.sh installs it)" >&2; exit 2; }
shopt -s nullglob
csvs=("$dir"/*.csv)
[ ${#csvs[@]} -gt 0 ] || { echo "plot-lm-curves: no CSV in $dir" >&2; exit 2; }
plots=()
# Distinct colours and point shapes (gnuplot's default colours repeat similar hues).
colours=(black '#d62728' '#1f77b4' '#2ca02c' '#ff7f0e' '#9467bd' '#8c564b' '#e377c2' '#17becf' '#bcbd22' '#7f7f7f')
n=0
for csv in "${csvs[@]}"; do
  # The model label is the first field of the data rows (e.g. "Linear delta").
  label=$(awk -F, 'NR == 2 { print $1 }' "$csv")
  [ -n "$label" ] || continue
  plots+=("'$csv' using 2:6 every ::1 with linespoints lw 1.5 pt $((n % 12 + 1)) lc rgb '${colours[n % ${#colours[@]}]}' title '$label'")
  n=$((n + 1))
done
{
  echo "set terminal pngcairo size 900,600 enhanced font 'sans,10'"
  echo "set output '$out'"
  echo "set datafile separator ','"
  echo "set logscale y"
  echo "set xlabel 'training step (16 x 64 tokens each)'"
  echo "set ylabel 'validation perplexity (first 20k tokens; segments of 64, or carried memory)'"
  echo "set key top right"
  echo "set grid"
  printf 'plot %s\n' "$(IFS=,; echo "${plots[*]}")"
} | gnuplot
echo "plot-lm-curves: wrote $out"
