#!/usr/bin/env bash
# Builds broken copies of a golden fixture for the command-line error tests: each folder has
# exactly one defect.
set -euo pipefail
src=$1   # a good checkpoint folder
out=$2
gguf=${3:-}  # optionally, a good GGUF file
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
if [ -n "$gguf" ]; then
  head -c 100000 "$gguf" > "$out/truncated.gguf"
  { printf 'GGUX'; tail -c +5 "$gguf"; } > "$out/bad-magic.gguf"
fi
echo "bad checkpoints in $out"
