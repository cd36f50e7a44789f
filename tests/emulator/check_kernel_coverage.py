#!/usr/bin/env python3
"""Every kernel of the CUDA backend runs under the emulator (issue 11).

The emulator tests (fwp_emulator_tests) append to a launch log the name of each
kernel they launch and the outcome of each test (tests/emulator/emu_runtime.cpp,
test_emulated_kernels.cpp). ctest runs this script after all of them (fixture
cleanup). It lists the kernels declared `__global__` in cuda/*.cu and fails
naming each one that no emulator test launched: a new kernel needs a test.

When not every emulator test ran (ctest -R picked some), coverage cannot be
judged: the script says so and exits 77, which ctest reports as skipped.

Usage: check_kernel_coverage.py --log FILE --tests-binary BIN CUDA_SOURCE...
       check_kernel_coverage.py --log FILE --test-list FILE CUDA_SOURCE...
(--test-list: the output of `BIN --gtest_list_tests`, saved; for the script's own test)
"""
import argparse
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The pattern by which rewrite_cu.py instruments kernel entries: what is
# required here is exactly what gets logged there.
from rewrite_cu import KERNEL  # noqa: E402

SKIP = 77


def declared_kernels(paths):
    kernels = {}
    for path in paths:
        with open(path) as f:
            text = f.read()
        # Comments may mention __global__; drop them first.
        text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
        for name in KERNEL.findall(text):
            kernels.setdefault(name, path)
    return kernels


def parse_test_list(text):
    """Full test names from `--gtest_list_tests` output."""
    tests, suite = [], None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            suite = line.split("#")[0].strip()
        else:
            tests.append(suite + line.split("#")[0].strip())
    return tests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--tests-binary")
    group.add_argument("--test-list")
    ap.add_argument("sources", nargs="+")
    args = ap.parse_args()

    if args.tests_binary:
        listing = subprocess.run([args.tests_binary, "--gtest_list_tests"], check=True, capture_output=True,
                                 text=True, env={"FWP_EMU_LAUNCH_LOG": ""}).stdout
    else:
        with open(args.test_list) as f:
            listing = f.read()
    all_tests = parse_test_list(listing)
    if not all_tests:
        sys.exit("check_kernel_coverage: no tests listed")

    launched, ran = set(), set()
    try:
        with open(args.log) as f:
            for line in f:
                kind, _, rest = line.strip().partition(" ")
                if kind == "kernel":
                    launched.add(rest)
                elif kind == "test":
                    ran.add(rest.rsplit(" ", 1)[0])
    except FileNotFoundError:
        pass

    missing_tests = [t for t in all_tests if t not in ran]
    if missing_tests:
        print(f"check_kernel_coverage: {len(missing_tests)} of {len(all_tests)} emulator tests did not run "
              f"(first: {missing_tests[0]}); kernel coverage is judged only after a run of all of them")
        sys.exit(SKIP)

    kernels = declared_kernels(args.sources)
    if not kernels:
        sys.exit("check_kernel_coverage: no __global__ kernel found in the sources given")
    missing = sorted(k for k in kernels if k not in launched)
    print(f"check_kernel_coverage: {len(kernels) - len(missing)} of {len(kernels)} kernels of the CUDA backend "
          f"ran under the emulator in {len(all_tests)} tests")
    if missing:
        for k in missing:
            print(f"  never launched: {k} ({kernels[k]})")
        print("Add a test to tests/emulator/test_emulated_kernels.cpp that reaches each of them.")
        sys.exit(1)


if __name__ == "__main__":
    main()
