#!/usr/bin/env bash
# Beside bench/specontext_headline.sh on the H200: (1) the sampled-depth method validated by one true
# end-to-end run of [2K, 8K] with 8 requests; (2) the prefetch's row size and grid at 32K (layer
# groups of 1, 4 and 8: rows of 512 B, 2 KiB, 4 KiB); (3) Hugging Face eager at the request counts
# that fit the [2K, 32K] workload, for the ratio. JSON into $OUT (default bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
bin=${BIN:-build-h200/specontext}
sparse=(--model llama-3.1-8b --random-weights --policy specontext --budget 2048 --dlm-config eagle3-llama-3.1-8b --overlap "${OVERLAP:-0.8}"
        --offload-layers auto --json)
$bin bench "${sparse[@]}" --requests 8 --depth 2048,4096,6144,8192 --steps 8 --reps 3 --warmup 2 --span 2048:8192 > "$OUT/span_2k_8k_r8.json"
for cfg in 4:32 8:32 8:64; do
  IFS=: read -r group blocks <<< "$cfg"
  $bin bench "${sparse[@]}" --requests 32 --depth 32768 --steps 6 --reps 3 --warmup 2 --prefetch-group "$group" --gather-blocks "$blocks" \
    > "$OUT/prefetch_g${group}_b${blocks}.json"
done
if [ "${HF:-1}" = 1 ]; then
  python3 bench/hf_baseline.py --attn eager --requests "${HF_REQUESTS:-8,16}" --depth 2048,16384,32768 --steps 2 --reps 2 --warmup 1 --json \
    > "$OUT/hf_eager.json"
fi
