#!/usr/bin/env python3
"""Prints the results table of docs/results/mt.md from a run folder of
scripts/mt-experiments.sh: per model, the training summary (MODEL.json), the
test-set BLEU and chrF with beam 4 and greedy (MODEL.test-{beam4,greedy}.json,
as `fwp mt score --json` wrote them) and the translation times
(MODEL.test-*.log). Models missing a file are listed with what they lack.

Usage: mt-results-table.py RUN_DIR [--samples N]
  --samples N  also print N test sentences: source, reference and each model's
               beam-4 translation (the first N lines of the test split)
"""

import argparse
import json
import re
from pathlib import Path

MODELS = ["transformer", "linear", "performer-16", "performer-64", "dpfp-1", "dpfp-2", "linear-delta-decoder"]


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def speed(path):
    try:
        m = re.search(r"translated (\d+) sentences in ([0-9.]+)s", Path(path).read_text())
    except OSError:
        return None
    return float(m.group(2)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--samples", type=int, default=0)
    a = ap.parse_args()
    run = Path(a.run)
    print("| model | parameters | steps | train time | valid ppl | valid BLEU (greedy, 100) | "
          "test BLEU beam 4 | test chrF beam 4 | test BLEU greedy | test chrF greedy | "
          "translate s (beam 4 / greedy) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        train = load(run / f"{name}.json")
        beam = load(run / f"{name}.test-beam4.json")
        greedy = load(run / f"{name}.test-greedy.json")
        if train is None:
            print(f"| {name} | (not run) |||||||||| ")
            continue
        m = train.get("metrics", {})
        cells = [
            train.get("model", name),
            f"{train.get('parameters', 0) / 1e6:.2f}M",
            str(train.get("steps")),
            f"{train.get('seconds', 0) / 60:.0f} min",
            f"{m.get('ppl', float('nan')):.2f}",
            f"{m.get('bleu', float('nan')):.2f}",
            f"{beam['bleu']:.2f}" if beam else "-",
            f"{beam['chrf']:.2f}" if beam else "-",
            f"{greedy['bleu']:.2f}" if greedy else "-",
            f"{greedy['chrf']:.2f}" if greedy else "-",
        ]
        sb, sg = speed(run / f"{name}.test-beam4.log"), speed(run / f"{name}.test-greedy.log")
        cells.append(f"{sb:.0f} / {sg:.0f}" if sb is not None and sg is not None else "-")
        print("| " + " | ".join(cells) + " |")
    if a.samples:
        data = run / "data"
        src = (data / "test.source.txt").read_text().splitlines()
        ref = (data / "test.target.txt").read_text().splitlines()
        for i in range(min(a.samples, len(src))):
            print(f"\n**Source:** {src[i]}  \n**Reference:** {ref[i]}  ")
            for name in MODELS:
                p = run / f"{name}.test-beam4.txt"
                if p.exists():
                    lines = p.read_text().splitlines()
                    label = (load(run / f"{name}.json") or {}).get("model", name)
                    print(f"**{label}:** {lines[i] if i < len(lines) else ''}  ")


if __name__ == "__main__":
    main()
