#!/usr/bin/python3
"""Builds a WikiText-format corpus from Spurgeon's *Treasury of David*
(Debian's sword-comm-tdavid, public domain), read with the SWORD library's
Python module (python3-sword). Both packages are installed by scripts/setup.sh;
nothing is downloaded.

Writes OUT_DIR/wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens:

  * one paragraph (or section title) per line: the OSIS markup is stripped,
    entities are unescaped, paragraph and title elements end lines, blank
    lines are dropped;
  * tokenised like WikiText: case is kept, punctuation is split off words
    ("Lord," -> "Lord ,"), possessive and contraction endings are split off
    ("psalmist's" -> "psalmist 's"), hyphens and dashes are tokens of their
    own; tokens are separated by single spaces;
  * split by Psalm, deterministically: Psalms whose number mod 20 is 0 (20,
    40, ..., 140) are the validation set, mod 20 = 10 (10, 30, ..., 150) the
    test set, the other 135 (Psalm 119, an eighth of the text, among them) the
    training set. Psalms are written in order.

Prints the lines, tokens and distinct tokens of each file. Run it with
Debian's Python (/usr/bin/python3): an interpreter earlier on PATH may not
see the Sword module.

Usage: make-tdavid-corpus.py OUT_DIR
"""

import html
import os
import re
import sys
from collections import Counter

VALID_REMAINDER, TEST_REMAINDER, MODULUS = 0, 10, 20

# Elements that end a line: paragraph milestones, titles, chapters, list items, poetry lines.
LINE_BREAK = re.compile(r"</?(?:div|title|chapter|item|list|lg|l)\b[^>]*>")
ANY_TAG = re.compile(r"<[^>]*>")
# A word (letters, digits, underscores, with inner apostrophes) or one other non-space character.
TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")
# Endings split off as WikiText does ("David's" -> "David 's", "don't" -> "don 't").
ENDING = re.compile(r"^(\w+?)(['\u2019](?:s|t|ll|re|ve|d|m))$", re.IGNORECASE)


def split_of(psalm: int) -> str:
    if psalm % MODULUS == VALID_REMAINDER:
        return "valid"
    if psalm % MODULUS == TEST_REMAINDER:
        return "test"
    return "train"


def tokenize(line: str) -> list:
    tokens = []
    for token in TOKEN.findall(line):
        m = ENDING.match(token)
        tokens.extend([m.group(1), m.group(2)] if m else [token])
    return tokens


def paragraphs(raw: str) -> list:
    """The tokenised lines of one commentary entry."""
    text = LINE_BREAK.sub("\n", raw)
    text = html.unescape(ANY_TAG.sub(" ", text))
    lines = []
    for line in text.split("\n"):
        tokens = tokenize(line)
        if tokens:
            lines.append(" ".join(tokens))
    return lines


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().split("\n")[-1], file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    try:
        import Sword  # Debian's python3-sword
    except ImportError:
        print("make-tdavid-corpus: cannot import Sword: install python3-sword (scripts/setup.sh) and run with "
              "/usr/bin/python3", file=sys.stderr)
        return 1
    manager = Sword.SWMgr()  # kept alive while the module is used
    module = manager.getModule("TDavid")
    if module is None:
        print("make-tdavid-corpus: the SWORD module TDavid is not installed: install sword-comm-tdavid "
              "(scripts/setup.sh)", file=sys.stderr)
        return 1

    splits = {"train": [], "valid": [], "test": []}
    for psalm in range(1, 151):
        module.setKey(Sword.VerseKey("Ps %d:1" % psalm))  # one entry per Psalm, at its first verse
        raw = str(module.getRawEntry())
        lines = paragraphs(raw)
        if not lines:
            print("make-tdavid-corpus: Psalm %d has no commentary text" % psalm, file=sys.stderr)
            return 1
        splits[split_of(psalm)].extend(lines)

    os.makedirs(out_dir, exist_ok=True)
    train_vocab = Counter()
    for name in ("train", "valid", "test"):
        lines = splits[name]
        path = os.path.join(out_dir, "wiki.%s.tokens" % name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
        os.replace(tmp, path)
        counts = Counter(t for line in lines for t in line.split(" "))
        if name == "train":
            train_vocab = counts
        unseen = sum(c for t, c in counts.items() if t not in train_vocab)
        print("%-22s %6d lines %9d tokens %6d distinct%s" %
              (os.path.basename(path), len(lines), sum(counts.values()), len(counts),
               "" if name == "train" else ", %d tokens not in train" % unseen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
