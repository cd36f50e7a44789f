#!/usr/bin/env bash
# scripts/setup.sh --no-pip (what scripts/demo.sh runs) installs no Python
# module: with every Debian package reported present and a python3 whose
# modules are missing, it must finish without calling pip, and without the
# flag it must call pip (so the check can fail). Runs setup.sh with stub
# dpkg-query / python3 / apt-get / sudo first in PATH; nothing is installed.
#
#   setup_no_pip_check.sh <source dir> <work dir>
set -euo pipefail
src=$1
work=$2
rm -rf "$work"
mkdir -p "$work/bin"
log="$work/calls.log"
: >"$log"
for tool in dpkg-query apt-get sudo; do
  printf '#!/bin/sh\necho "%s $*" >>"%s"\n[ "%s" = dpkg-query ] && printf "install ok installed"\nexit 0\n' \
    "$tool" "$log" "$tool" >"$work/bin/$tool"
done
# python3: every import fails (the modules are missing); "-m pip" is logged.
printf '#!/bin/sh\necho "python3 $*" >>"%s"\nexit 1\n' "$log" >"$work/bin/python3"
chmod +x "$work/bin/"*

PATH="$work/bin:$PATH" bash "$src/scripts/setup.sh" --no-pip >"$work/no_pip.out" 2>&1 ||
  { cat "$work/no_pip.out"; echo "FAIL: setup.sh --no-pip failed"; exit 1; }
if grep -q -- '-m pip' "$log"; then
  cat "$log"; echo "FAIL: setup.sh --no-pip called pip"; exit 1
fi
grep -q 'scripts/setup.sh --no-pip' "$src/scripts/demo.sh" ||
  { echo "FAIL: scripts/demo.sh does not run setup.sh --no-pip"; exit 1; }

: >"$log"
PATH="$work/bin:$PATH" bash "$src/scripts/setup.sh" >"$work/with_pip.out" 2>&1 || true  # the stub pip fails
grep -q -- '-m pip' "$log" || { cat "$log"; echo "FAIL: setup.sh without --no-pip did not try pip"; exit 1; }
echo "setup.sh --no-pip: no pip call; the demo uses it"
