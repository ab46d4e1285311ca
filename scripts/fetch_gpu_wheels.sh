#!/usr/bin/env bash
# Pure-Python wheels (and their few binary dependencies) that the GPU machine's Python lacks and
# cannot download itself (it has no network): `gguf` and `accelerate`, which Hugging Face
# transformers needs to read the SmolLM2 GGUF for the golden references and the draft's training.
# Fetched here into the git-ignored models/wheels/, carried to the GPU machine, and installed there
# with `pip install --no-index --find-links models/wheels gguf accelerate`.
# Packages the GPU machine already has (torch, numpy, transformers, huggingface_hub, safetensors,
# packaging) are not fetched. Python 3.12 on x86-64, as ../shared/H200.md lists.
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/wheels
mkdir -p "$out"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --implementation cp \
  --dest "$out" gguf==0.19.0 accelerate psutil requests charset_normalizer idna urllib3 certifi \
  pyyaml tqdm
ls "$out"
