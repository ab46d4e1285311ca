#!/usr/bin/env bash
# Builds broken copies of a golden fixture for the command-line error tests: each folder has
# exactly one defect.
set -euo pipefail
src=$1   # a good checkpoint folder
out=$2
rm -rf "$out"
mkdir -p "$out"
mk() { mkdir -p "$out/$1"; cp "$src/config.json" "$src/model.safetensors" "$out/$1/"; }
mk truncated
head -c 4096 "$src/model.safetensors" > "$out/truncated/model.safetensors"
mk wrong-shape
sed -i 's/"intermediate_size": [0-9]*/"intermediate_size": 192/' "$out/wrong-shape/config.json"
mk unknown-architecture
sed -i 's/"LlamaForCausalLM"/"GPT2LMHeadModel"/' "$out/unknown-architecture/config.json"
mk no-weights
rm "$out/no-weights/model.safetensors"
echo "bad checkpoints in $out"
