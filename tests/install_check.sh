#!/usr/bin/env bash
# The install tree works from wherever it was installed (issue 10): install
# the build to a fresh prefix with `cmake --install --prefix`, then compile and
# run a C program against it with the flags `pkg-config --cflags --libs fwp`
# gives, and again after moving the whole tree elsewhere.
#   install_check.sh <build dir> <work dir> <C compiler>
set -euo pipefail
build=$1
work=$2
cc=$3
command -v pkg-config >/dev/null || { echo "SKIPPED: pkg-config not found"; exit 77; }
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
[[ -f $prefix/share/doc/fwp/LICENSE ]] || { echo "FAIL: the LICENSE was not installed"; exit 1; }

cat >"$work/use_fwp.c" <<'C'
#include <fwp/fwp.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  fwp_context_config config;
  fwp_context* ctx = NULL;
  fwp_context_config_init(&config);
  config.num_threads = 1;
  if (fwp_context_create(&config, &ctx) != FWP_OK) return 1;
  fwp_context_destroy(ctx);
  printf("fwp %s\n", fwp_version_string());
  return strcmp(fwp_version_string(), FWP_VERSION_STRING_EXPECTED) == 0 ? 0 : 2;
}
C

# check_prefix DIR: builds and runs the program against the install tree in DIR.
check_prefix() {
  local pc_dir
  pc_dir=$(dirname "$(find "$1" -name fwp.pc | head -n 1)")
  [[ -f $pc_dir/fwp.pc ]] || { echo "FAIL: no fwp.pc under $1"; exit 1; }
  local flags
  flags=$(PKG_CONFIG_PATH=$pc_dir pkg-config --cflags --libs fwp)
  local version
  version=$(PKG_CONFIG_PATH=$pc_dir pkg-config --modversion fwp)
  # Every folder pkg-config names must lie inside the tree (not the configure-time prefix).
  for flag in $flags; do
    case $flag in
      -I*|-L*) dir=$(realpath -m "${flag:2}")
               [[ $dir == "$(realpath "$1")"/* ]] || { echo "FAIL: $flag is outside $1"; exit 1; } ;;
    esac
  done
  # shellcheck disable=SC2086 # the flags are words
  "$cc" "$work/use_fwp.c" -o "$work/use_fwp" -DFWP_VERSION_STRING_EXPECTED="\"$version\"" $flags
  LD_LIBRARY_PATH=$(dirname "$(find "$1" -name 'libfwp.so' | head -n 1)") "$work/use_fwp"
}

check_prefix "$prefix"
mv "$prefix" "$work/moved"
check_prefix "$work/moved"

# The Rust crates copied out of the repository build against the (moved)
# install tree through pkg-config alone, and their example runs.
repo=$(cd "$(dirname "$0")/.." && pwd)
cargo_bin=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
if [[ -x $cargo_bin ]]; then
  rm -rf "$work/rust"
  mkdir -p "$work/rust"
  cp -r "$repo/bindings/rust/Cargo.toml" "$repo/bindings/rust/Cargo.lock" "$repo/bindings/rust/fwp" \
    "$repo/bindings/rust/fwp-sys" "$work/rust/"
  pc_dir=$(dirname "$(find "$work/moved" -name fwp.pc | head -n 1)")
  (cd "$work/rust" && env -u FWP_LIB_DIR -u FWP_INCLUDE_DIR PKG_CONFIG_PATH="$pc_dir" \
     CARGO_TARGET_DIR="$work/rust/target" "$cargo_bin" run --offline --locked --quiet -p fwp --example lm -- --steps 60 --out-dir "$work/rust" \
     > "$work/rust.log" 2>&1) || { echo "FAIL: the Rust crate outside the repository:"; tail -20 "$work/rust.log"; exit 1; }
  grep -q "$(realpath "$work/moved")" "$work/rust/target/debug/build/"fwp-sys-*/output ||
    { echo "FAIL: fwp-sys did not take the library from the install tree"; exit 1; }
  echo "install_check: the Rust crate outside the repository built and ran against the install tree"
else
  echo "install_check: cargo not found: the Rust crate outside the repository was not checked"
fi
echo "install_check: OK (pkg-config flags from the installed fwp.pc, before and after moving the tree)"
