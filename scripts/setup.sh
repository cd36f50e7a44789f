#!/usr/bin/env bash
# Installs everything fwp needs to build and test on Debian bookworm.
# Idempotent: packages already present are skipped by apt-get. Needs root (or sudo).
#
#   setup.sh             Debian packages, then the Python modules of the tests (pip)
#   setup.sh --no-pip    Debian packages only: what building and running need
#                        (scripts/demo.sh; a machine without pip or network to PyPI)
set -euo pipefail
with_pip=1
case "${1:-}" in
  "") ;;
  --no-pip) with_pip=0 ;;
  *) echo "usage: $0 [--no-pip]" >&2; exit 2 ;;
esac

packages=(
  build-essential cmake pkg-config
  libeigen3-dev libgtest-dev libgmock-dev libcmocka-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  doxygen graphviz gnuplot-nox
  libopenmpi-dev openmpi-bin  # data-parallel training (MPI engine; mpirun for the distributed tests)
  libsentencepiece-dev python3-sword sword-comm-tdavid  # subword tokenizers; the Debian LM corpus (scripts/make-tdavid-corpus.py)
  sword-text-kjv sword-text-sparv  # the English-Spanish MT corpus (scripts/make-bible-corpus.py)
  clang libclang-rt-dev libomp-dev ccache ninja-build  # build-asan/: clang, ASan, UBSan, libFuzzer, OpenMP for clang; ccache, ninja: every build (scripts/test.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# Python modules for the binding check (scripts/check_bindings.py parses the
# Julia sources with tree-sitter). Installed for the user running the tests.
if [ "$with_pip" = 0 ]; then
  echo "setup: --no-pip: the Python modules of the tests are not installed"
elif ! python3 -c "import tree_sitter, tree_sitter_julia" 2>/dev/null; then
  echo "setup: installing tree_sitter and tree_sitter_julia (pip, --user)"
  python3 -m pip install --user -q tree_sitter tree_sitter_julia ||
    python3 -m pip install --user -q --break-system-packages tree_sitter tree_sitter_julia
fi
