#!/usr/bin/env python3
"""End-to-end check of `fwp mt score`: writes the hypotheses and references of
fixture cases (tests/fixtures/mt_metrics.json, sacrebleu's scores) to files,
runs `fwp mt score --json` and compares BLEU, chrF and BLEU's statistics with
sacrebleu's to 0.01; checks the text output's layout; and refuses bad input
(missing file, unaligned files, invalid UTF-8, no --ref) with exit code 2 and
one line on stderr. Standard library only.

Usage: check_mt_score.py FWP_PROGRAM FIXTURE_JSON WORKDIR
"""

import json
import os
import shutil
import subprocess
import sys


def run(program, args, expect):
    p = subprocess.run([program] + args, capture_output=True)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    print("fwp %s -> %d\n%s%s" % (" ".join(args), p.returncode, out, err))
    if p.returncode != expect:
        raise SystemExit("FAILED: exit code %d, expected %d" % (p.returncode, expect))
    if expect != 0 and (not err.strip() or "\n" in err.strip()):
        raise SystemExit("FAILED: expected one error line on stderr")
    return out, err


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")


def main() -> int:
    program, fixture, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(fixture, encoding="utf-8") as f:
        cases = {c["name"]: c for c in json.load(f)["cases"]}
    checked = 0
    for name in ("bible", "two_references", "non_ascii", "numbers", "no_4gram_matches", "empty_hypotheses"):
        case = cases[name]
        hyp = os.path.join(work, name + ".hyp")
        write_lines(hyp, case["hypotheses"])
        args = ["mt", "score", "--hyp", hyp, "--json"]
        for r, stream in enumerate(case["references"]):
            ref = os.path.join(work, "%s.ref%d" % (name, r))
            write_lines(ref, stream)
            args += ["--ref", ref]
        out, _ = run(program, args, 0)
        got = json.loads(out)
        bleu, chrf = case["bleu"][0], case["chrf"][0]
        assert bleu["options"] == {} and chrf["options"] == {}, "the first entries are the defaults"
        problems = []
        if abs(got["bleu"] - bleu["score"]) > 0.01:
            problems.append("bleu %r vs sacrebleu %r" % (got["bleu"], bleu["score"]))
        if abs(got["chrf"] - chrf["score"]) > 0.01:
            problems.append("chrf %r vs sacrebleu %r" % (got["chrf"], chrf["score"]))
        details = got["bleu_details"]
        for key, expected in (("counts", bleu["counts"]), ("totals", bleu["totals"]), ("hyp_len", bleu["sys_len"]),
                              ("ref_len", bleu["ref_len"])):
            if details[key] != expected:
                problems.append("%s %r vs sacrebleu %r" % (key, details[key], expected))
        if got["sentences"] != len(case["hypotheses"]) or got["num_refs"] != len(case["references"]):
            problems.append("sentences/num_refs %r/%r" % (got["sentences"], got["num_refs"]))
        if problems:
            raise SystemExit("FAILED: %s: %s" % (name, "; ".join(problems)))
        checked += 1

    # The text output: sacrebleu's layout.
    bible = cases["bible"]
    out, _ = run(program, ["mt", "score", "--hyp", os.path.join(work, "bible.hyp"), "--ref",
                           os.path.join(work, "bible.ref0")], 0)
    expected_first = "BLEU = %.2f " % bible["bleu"][0]["score"]
    if not out.startswith(expected_first) or "chrF2 = %.2f" % bible["chrf"][0]["score"] not in out or \
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" not in out:
        raise SystemExit("FAILED: unexpected text output")

    # Bad input: exit code 2, one line naming the problem.
    write_lines(os.path.join(work, "short.ref"), ["only one line"])
    with open(os.path.join(work, "bad.hyp"), "wb") as f:
        f.write(b"good line\nbad \xff line\n")
    hyp = os.path.join(work, "bible.hyp")
    _, err = run(program, ["mt", "score", "--hyp", hyp, "--ref", os.path.join(work, "short.ref")], 2)
    assert "line aligned" in err, err
    _, err = run(program, ["mt", "score", "--hyp", os.path.join(work, "missing.hyp"), "--ref", hyp], 2)
    assert "no such file" in err, err
    _, err = run(program, ["mt", "score", "--hyp", os.path.join(work, "bad.hyp"), "--ref",
                           os.path.join(work, "empty_hypotheses.ref0")], 2)
    assert "line 2 is not valid UTF-8" in err, err
    run(program, ["mt", "score", "--hyp", hyp], 2)
    run(program, ["mt"], 2)
    print("check_mt_score: %d fixture cases match sacrebleu; bad inputs refused" % checked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
