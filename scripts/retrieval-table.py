#!/usr/bin/env python3
"""Prints a sweep CSV of `fwp retrieval --sweep-csv` as a Markdown table.

    scripts/retrieval-table.py results/retrieval/setting1.csv

One row per (model, S), models in the order they first appear: the pairs per
evaluation sequence (where the CSV records them), final and best eval loss,
steps, what stopped the run and its wall time. "solved" marks runs
that reached the target loss (the paper's 0.001).
"""
import csv
import sys

STOPS = {"target": "solved", "patience": "patience", "max_steps": "cap"}


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} SWEEP.csv")
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    order = []
    for r in rows:
        if r["model"] not in order:
            order.append(r["model"])
    # Sweep CSVs written since --eval-pairs record the evaluation length; show it.
    eval_len = bool(rows) and "eval_pairs" in rows[0]
    print("| model | S |" + (" eval pairs |" if eval_len else "") + " final eval loss | best | steps | stopped | seconds |")
    print("|---|---:|" + ("---:|" if eval_len else "") + "---:|---:|---:|---|---:|")
    for model in order:
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: int(r["keys"]))
        for i, r in enumerate(mine):
            name = model if i == 0 else ""
            pairs = f" {r['eval_pairs']} |" if eval_len else ""
            print(f"| {name} | {r['keys']} |{pairs} {float(r['final_eval_loss']):.3g} | {float(r['best_eval_loss']):.3g} "
                  f"| {r['steps']} | {STOPS.get(r['stopped_by'], r['stopped_by'])} | {float(r['seconds']):.0f} |")


if __name__ == "__main__":
    main()
