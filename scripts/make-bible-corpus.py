#!/usr/bin/python3
"""Builds the English->Spanish Bible parallel corpus (docs/data.md, "Machine
translation corpus") from Debian's SWORD modules engKJV2006eb (package
sword-text-kjv, King James Version) and spaRV1909eb (sword-text-sparv,
Reina-Valera 1909), both public domain, read with the SWORD library's Python
bindings (python3-sword; run with Debian's /usr/bin/python3).

Every verse of the KJV versification (both modules use it) is one pair. The
markup options are turned off, the text taken with stripText(), the Strong's
tags <G1234>/<H1234> that stripText() leaves in the Spanish and the pilcrow
removed, and whitespace normalised (one space between words, none at the
ends). Pairs where either side is then empty are skipped and counted.

Whole books are held out (no verse of a valid or test book is in train, so
nothing leaks through repeated verses of one book): VALID_BOOKS and TEST_BOOKS
below, about 4% of the verses each, from both testaments and several genres.

Writes OUT_DIR/{train,valid,test}.{en,es} (line aligned, UTF-8, one verse per
line) and OUT_DIR/{train,valid,test}.ids (the OSIS reference of each line, e.g.
Gen.1.1) and prints the counts. The output depends only on the two modules, so
reruns are byte identical (tests/scripts.cmake checks it).

Usage: make-bible-corpus.py OUT_DIR
"""

import os
import re
import sys

ENGLISH_MODULE = "engKJV2006eb"
SPANISH_MODULE = "spaRV1909eb"
# The markup stripText() would otherwise keep or that adds words not in the verse.
OPTIONS_OFF = ("Strong's Numbers", "Morphological Tags", "Footnotes", "Cross-references", "Headings",
               "Words of Christ in Red", "Lemmas")
# OSIS book names. Of the 31,084 pairs: valid 1,255 (4.0%), test 1,160 (3.7%).
VALID_BOOKS = ("Ruth", "Ezra", "Mark", "Phil", "Jas")
TEST_BOOKS = ("Josh", "Jonah", "Gal", "Eph", "1Pet", "Titus")

STRONGS_TAG = re.compile(r"<[GH]\d+>")


def clean(text: str) -> str:
    """A verse's text with leftover tags and the pilcrow removed and whitespace normalised."""
    text = STRONGS_TAG.sub(" ", text).replace("\u00b6", " ")
    return " ".join(text.split())


def split_of(osis_ref: str) -> str:
    book = osis_ref.split(".")[0]
    if book in VALID_BOOKS:
        return "valid"
    if book in TEST_BOOKS:
        return "test"
    return "train"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().split("\n")[-1], file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    try:
        import Sword  # Debian's python3-sword
    except ImportError:
        print("make-bible-corpus: cannot import Sword: install python3-sword (scripts/setup.sh) and run with "
              "/usr/bin/python3", file=sys.stderr)
        return 1
    manager = Sword.SWMgr()  # kept alive while the modules are used
    for option in OPTIONS_OFF:
        manager.setGlobalOption(option, "Off")
    modules = {}
    for name, package in ((ENGLISH_MODULE, "sword-text-kjv"), (SPANISH_MODULE, "sword-text-sparv")):
        modules[name] = manager.getModule(name)
        if modules[name] is None:
            print("make-bible-corpus: the SWORD module %s is not installed: install %s (scripts/setup.sh)" %
                  (name, package), file=sys.stderr)
            return 1

    key = Sword.VerseKey()
    key.setVersificationSystem("KJV")
    key.setAutoNormalize(True)
    key.setText("Gen 1:1")
    key.popError()
    splits = {"train": [], "valid": [], "test": []}
    seen_books = set()
    skipped = 0
    total = 0
    while True:
        ref = key.getOSISRef()
        sides = []
        for name in (ENGLISH_MODULE, SPANISH_MODULE):
            modules[name].setKey(key)
            sides.append(clean(str(modules[name].stripText())))
        total += 1
        seen_books.add(ref.split(".")[0])
        if sides[0] and sides[1]:
            splits[split_of(ref)].append((ref, sides[0], sides[1]))
        else:
            skipped += 1
        if ref == "Rev.22.21":
            break
        key.increment(1)
        if key.popError() not in ("", "\x00"):  # popError() returns a one-character string, NUL when fine
            print("make-bible-corpus: the verse iteration stopped after %s" % ref, file=sys.stderr)
            return 1
    missing = [b for b in VALID_BOOKS + TEST_BOOKS if b not in seen_books]
    if missing:
        print("make-bible-corpus: held-out books not in the versification: %s" % " ".join(missing), file=sys.stderr)
        return 1

    os.makedirs(out_dir, exist_ok=True)
    print("%d verses in the KJV versification, %d skipped (a side empty)" % (total, skipped))
    for split in ("train", "valid", "test"):
        pairs = splits[split]
        for suffix, column in (("ids", 0), ("en", 1), ("es", 2)):
            path = os.path.join(out_dir, "%s.%s" % (split, suffix))
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                for pair in pairs:
                    f.write(pair[column] + "\n")
            os.replace(tmp, path)
        words_en = sum(len(p[1].split(" ")) for p in pairs)
        words_es = sum(len(p[2].split(" ")) for p in pairs)
        print("%-6s %6d pairs %8d English words %8d Spanish words" % (split, len(pairs), words_en, words_es))
    return 0


if __name__ == "__main__":
    sys.exit(main())
