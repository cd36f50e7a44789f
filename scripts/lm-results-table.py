#!/usr/bin/env python3
"""The table of docs/results/lm.md from the files scripts/lm-experiments.sh writes.

Usage: python3 scripts/lm-results-table.py RUN_DIR
Prints one markdown row per finished model: parameters, training wall time,
tokens/s, and the perplexities of every evaluation file found (sliding window
and segments, valid and test; carry for the carried-memory model), with the
number of tokens each scored. Models not finished are listed as such.
"""
import json
import os
import sys

MODELS = [
    ("transformer", "Transformer (softmax)"),
    ("linear-sum", "Linear, sum"),
    ("linear-delta", "Linear, delta"),
    ("performer-sum", "Performer m=16, sum"),
    ("performer-delta", "Performer m=16, delta"),
    ("dpfp-sum", "DPFP nu=1, sum"),
    ("dpfp-delta", "DPFP nu=1, delta"),
    ("linear-delta-carry", "Linear, delta, memory carried"),
    ("linear-delta-nopos", "Linear, delta, no positions"),
    ("linear-delta-carry-pos", "Linear, delta, memory carried, positions"),
]
EVALS = [("valid", "sliding"), ("test", "sliding"), ("valid", "segments"), ("test", "segments"),
         ("valid", "carry"), ("test", "carry")]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run = sys.argv[1]
    head = ["model", "params", "train s", "tokens/s"] + [f"{s} {m}" for s, m in EVALS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for key, label in MODELS:
        train = load(os.path.join(run, key + ".json"))
        if train is None:
            print(f"| {label} | not finished |" + " |" * (len(head) - 2))
            continue
        cells = [label, f"{train['parameters'] / 1e6:.2f}M", f"{train['seconds']:.0f}",
                 f"{train['tokens_per_second']:.0f}"]
        for split, mode in EVALS:
            e = load(os.path.join(run, f"{key}.eval-{split}-{mode}.json"))
            cells.append("-" if e is None else f"{e['ppl']:.1f} ({e['tokens']})")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
