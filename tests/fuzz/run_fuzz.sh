#!/usr/bin/env bash
# Fuzzes one reader (fuzz_NAME, libFuzzer with ASan and UBSan; tests/fuzz/fuzz.cmake
# lists the targets) for a bounded time, starting from its committed corpus
# tests/fuzz/corpus/NAME/. Exit status 0: no finding; otherwise libFuzzer's
# report is printed and the input that failed is kept in BUILD_DIR/findings/
# (add it to tests/fuzz/corpus/NAME/ together with the fix, so the replay test
# fuzz_NAME_replay keeps it).
#
# Usage: run_fuzz.sh [--binary FUZZ_BINARY] [--target NAME] SOURCE_DIR BUILD_DIR [SECONDS=30]
#   --target  checkpoint (default), tokenizer, token_file, pair_file, text_corpus or cli.
#   --binary  the target is already built (the ctest entry fuzz_NAME of a
#             build configured with FWP_FUZZ=ON, e.g. CI's build-asan/): only fuzz.
#   without   configure BUILD_DIR as a clang build with FWP_SANITIZE and FWP_FUZZ,
#             build only the fuzz target there, then fuzz (for a developer whose
#             build directory is a GCC one).
set -euo pipefail
usage="usage: $0 [--binary FUZZ_BINARY] [--target NAME] SOURCE_DIR BUILD_DIR [SECONDS=30]"
binary=""
name=checkpoint
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; binary=$2; shift 2 ;;
    --target) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; name=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
src=$1
build=$2
seconds=${3:-30}
corpus="$src/tests/fuzz/corpus/$name"
[ -d "$corpus" ] || { echo "run_fuzz: FAILED: no corpus $corpus (unknown target '$name'?)"; exit 1; }

if [ -z "$binary" ]; then
  for tool in clang clang++; do
    command -v "$tool" >/dev/null || { echo "run_fuzz: FAILED: $tool not found (scripts/setup.sh installs it)"; exit 1; }
  done
  if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
      clang++ -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
    echo "run_fuzz: FAILED: clang cannot link libFuzzer (-fsanitize=fuzzer; scripts/setup.sh installs libclang-rt-dev)"
    exit 1
  fi
  # Only the fuzz target is built; examples, benchmarks and docs are configured off
  # (the tools stay on: the cli target is their argument parser).
  cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFWP_ENABLE_CUDA=OFF -DFWP_SANITIZE=ON -DFWP_FUZZ=ON \
    -DFWP_BUILD_TOOLS=ON -DFWP_BUILD_EXAMPLES=OFF -DFWP_BUILD_BENCH=OFF -DFWP_BUILD_DOCS=OFF >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log"; echo "run_fuzz: FAILED: configuring the clang build"; exit 1; }
  cmake --build "$build" -j "${FWP_FUZZ_JOBS:-2}" --target "fuzz_$name"
  binary="$build/tests/fuzz_$name"
fi
[ -x "$binary" ] || { echo "run_fuzz: FAILED: no fuzz target at $binary"; exit 1; }

# Longest input: a SentencePiece model seed is about 240 KB (its normalizer
# table), a command line is short; 64 KiB covers the other formats' seeds.
case "$name" in
  tokenizer) max_len=262144 ;;
  cli) max_len=4096 ;;
  *) max_len=65536 ;;
esac

work=$(mktemp -d /tmp/fwp_fuzz_corpus_XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/findings"
# New inputs go to $work (the committed corpus is only read). -timeout: one
# input taking 10 s is a hang; -malloc_limit_mb: one allocation that large
# from a small file is a finding (every read is bounded by the file size).
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=1024 \
  -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$build/findings/$name-" "$work" "$corpus"
echo "run_fuzz: fuzz_$name ran ${seconds}s without a finding"
