#!/usr/bin/env bash
# `fwp retrieval --resume FILE` with a file that is not a readable checkpoint
# fails at once (exit 1, one clear line on stderr, nothing on stdout), never
# hangs: a FIFO without a writer, a header nested far deeper than any fwp
# header, and header lengths far beyond the file. Each run is under `timeout`.
#   check_bad_checkpoint.sh <fwp> <work dir>
set -euo pipefail
fwp=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cd "$work"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# safetensors FILE LENGTH HEADER: an 8-byte little-endian LENGTH, then HEADER.
safetensors() {
  python3 -c 'import struct, sys; sys.stdout.buffer.write(struct.pack("<Q", int(sys.argv[1])) + sys.argv[2].encode())' \
    "$2" "$3" >"$1"
}
# expect_refused FILE REGEX: resuming from FILE exits 1 within 20 s with one
# line on stderr matching REGEX and naming FILE, and prints nothing on stdout.
expect_refused() {
  local rc=0
  timeout 20 "$fwp" retrieval --resume "$1" --json >out.txt 2>err.txt || rc=$?
  [[ $rc != 124 ]] || fail "$1: fwp hung (killed after 20 s)"
  [[ $rc == 1 ]] || fail "$1: exit code $rc, not 1 ($(cat err.txt))"
  [[ $(wc -l <err.txt) == 1 ]] || fail "$1: not exactly one line on stderr: $(head -c 600 err.txt)"
  [[ $(wc -c <err.txt) -lt 400 ]] || fail "$1: the message quotes the file: $(head -c 600 err.txt)"
  grep -q -- "$1" err.txt || fail "$1: the message does not name the file: $(cat err.txt)"
  grep -Eq -- "$2" err.txt || fail "$1: the message does not match '$2': $(cat err.txt)"
  [[ ! -s out.txt ]] || fail "$1: something was printed on stdout"
  echo "ok $1: $(cat err.txt)"
}

command -v python3 >/dev/null || { echo "python3 is needed to write the test files" >&2; exit 1; }

mkfifo fifo.safetensors
expect_refused fifo.safetensors "not a regular file"

deep=$(python3 -c 'print("[" * 50000 + "]" * 50000)')
header="{\"__metadata__\":{\"user\":\"{}\"},\"deep\":$deep}"
safetensors nested.safetensors "${#header}" "$header"
expect_refused nested.safetensors "nests deeper than"

# The run metadata (a JSON string inside the header) is bounded the same way.
header="{\"__metadata__\":{\"user\":\"$deep\"}}"
safetensors nested-user.safetensors "${#header}" "$header"
expect_refused nested-user.safetensors "nests deeper than"

small='{"__metadata__":{"user":"{}"}}'
for length in 18446744073709551615 1099511627776 4096; do
  safetensors "huge-$length.safetensors" "$length" "$small"
  expect_refused "huge-$length.safetensors" "header|truncated|exceed|longer|size"
done
echo "PASS"
