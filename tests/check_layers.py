#!/usr/bin/env python3
"""Checks the include arrows between the folders of src/ that the architecture
fixes (docs: ../shared/spec/architecture.md, "Arrows run api -> models -> nn ->
ops -> core only"):

  * nothing below the models (core, ops, nn, io, data, text) includes models/;
  * train/ may use the Model interface and the registry (models/*.h) but no
    model kind's own folder (models/<kind>/...), so checkpoints and the
    optimizer stay generic;
  * dist/ (the communication engines) includes neither models nor modules;
  * only api/ includes api/.

Prints every offending #include with its file and line; exit status 1 if any.
Usage: check_layers.py [SRC_DIR]   (default: src/ next to this script's parent)
"""

import re
import sys
from pathlib import Path

# folder -> (include prefix pattern, why) pairs it must not match
RULES = {
    "core": [(r"models/", "core is below the models"), (r"api/", "only api includes api")],
    "ops": [(r"models/", "ops are below the models"), (r"api/", "only api includes api")],
    "nn": [(r"models/", "modules are below the models"), (r"api/", "only api includes api")],
    "io": [(r"models/", "file formats know no model"), (r"api/", "only api includes api")],
    "data": [(r"models/", "data sources know no model"), (r"api/", "only api includes api")],
    "text": [(r"models/", "tokenizers know no model"), (r"data/", "token files know no data source"),
             (r"api/", "only api includes api")],
    "train": [(r"models/[^/]+/", "training code knows models only through models/*.h"),
              (r"api/", "only api includes api")],
    "models": [(r"api/", "only api includes api")],
    "dist": [(r"models/", "communication engines know no model (api/ applies them to models)"),
             (r"nn/", "communication engines know no module"), (r"api/", "only api includes api")],
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    if not src.is_dir():
        print(f"check_layers: FAILED: no source folder {src}", file=sys.stderr)
        return 2
    problems = []
    checked = 0
    for folder, rules in RULES.items():
        for path in sorted((src / folder).rglob("*")):
            if path.suffix not in (".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh"):
                continue
            checked += 1
            for lineno, line in enumerate(path.read_text(errors="replace").split("\n"), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                for pattern, why in rules:
                    if re.match(pattern, m.group(1)):
                        problems.append(f"{path.relative_to(src.parent)}:{lineno}: includes \"{m.group(1)}\" ({why})")
    for p in problems:
        print(f"check_layers: {p}", file=sys.stderr)
    if problems:
        print(f"check_layers: FAILED with {len(problems)} include(s) against the arrows", file=sys.stderr)
        return 1
    print(f"check_layers: OK ({checked} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
