#!/usr/bin/env bash
# ABI check of libfwp: the shared library exports exactly the functions that
# include/fwp/fwp.h declares with FWP_API, nothing else (no C++ symbols, no
# helpers), and its SONAME carries the header's major version.
#
# Usage: tests/abi_check.sh LIBRARY [HEADER]
#   LIBRARY  path to libfwp.so (the build's, e.g. build/libfwp.so)
#   HEADER   default: include/fwp/fwp.h next to this script's directory
#
# The header is run through the C preprocessor (so comments and #if branches
# are handled by the compiler, not by a regex), and every declaration marked
# with the expansion of FWP_API gives one expected symbol.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 LIBRARY [HEADER]" >&2
  exit 2
fi
lib=$1
here=$(cd "$(dirname "$0")/.." && pwd)
header=${2:-$here/include/fwp/fwp.h}
cc=${CC:-cc}

for tool in nm objdump "$cc"; do
  command -v "$tool" >/dev/null || { echo "abi_check: FAILED: $tool not found" >&2; exit 2; }
done
[ -f "$lib" ] || { echo "abi_check: FAILED: no library at $lib" >&2; exit 2; }
[ -f "$header" ] || { echo "abi_check: FAILED: no header at $header" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Symbols the header declares. On GCC/Clang FWP_API expands to
# __attribute__((visibility("default"))); the declarator name is the last word
# before the parameter list.
"$cc" -E -P -x c -I "$(dirname "$(dirname "$header")")" "$header" \
  | tr '\n' ' ' | sed 's/;/;\n/g' \
  | grep -F '__attribute__((visibility("default")))' \
  | sed -E 's/^.*visibility\("default"\)\)\)//' \
  | sed -E 's/\(.*$//' | awk '{print $NF}' | tr -d '*' | sort -u > "$tmp/declared"

# Symbols the library exports (defined dynamic symbols; 'A' entries are
# version-node names of a version script, not symbols).
nm -D --defined-only "$lib" | awk '$2 != "A" && $2 != "a" {print $3}' | sed 's/@.*$//' | sort -u > "$tmp/exported"

status=0
n_declared=$(wc -l < "$tmp/declared")
n_exported=$(wc -l < "$tmp/exported")
if [ "$n_declared" -eq 0 ]; then
  echo "abi_check: FAILED: no FWP_API declarations found in $header" >&2
  exit 1
fi

missing=$(comm -23 "$tmp/declared" "$tmp/exported")
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
if [ -n "$missing" ]; then
  echo "abi_check: declared in fwp.h but not exported by $(basename "$lib"):" >&2
  printf '  %s\n' $missing >&2
  status=1
fi
if [ -n "$extra" ]; then
  cxx=$(printf '%s\n' $extra | grep -c '^_Z' || true)
  echo "abi_check: exported but not declared in fwp.h ($cxx of them C++):" >&2
  printf '%s\n' $extra | head -n 40 | while read -r s; do
    demangled=$(echo "$s" | c++filt 2>/dev/null || echo "$s")
    if [ "$demangled" != "$s" ]; then echo "  $s ($demangled)"; else echo "  $s"; fi
  done >&2
  [ "$(printf '%s\n' $extra | wc -l)" -gt 40 ] && echo "  ..." >&2
  status=1
fi

# SONAME: libfwp.so.<major> on ELF platforms.
major=$(printf '#include "fwp/fwp.h"\nFWP_VERSION_MAJOR\n' | "$cc" -E -P -x c -I "$(dirname "$(dirname "$header")")" - | tail -n 1 | tr -d ' ')
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
if [ "$soname" != "libfwp.so.$major" ]; then
  echo "abi_check: SONAME is '${soname:-<none>}', expected libfwp.so.$major" >&2
  status=1
fi

if [ $status -ne 0 ]; then
  echo "abi_check: FAILED ($n_declared declared, $n_exported exported)" >&2
  exit 1
fi
echo "abi_check: OK: $n_exported symbols exported, all $n_declared declared in fwp/*.h, SONAME $soname"
