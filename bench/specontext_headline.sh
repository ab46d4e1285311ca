#!/usr/bin/env bash
# The paper's headline workload on the H200 at the Llama-3.1-8B shape (random bf16 weights), in one run:
#   - specontext, 32 requests, B = 2048, the EAGLE-3 draft's shape (random weights) with a synthetic
#     selection stream of stated overlap (random weights choose nearly random sets), at sampled
#     depths with the memory model's placement there (--offload-layers auto): c1+c2+c3;
#   - the synchronous-prefetch ablation (c1) where layers are offloaded;
#   - our dense decoding where it fits, and Hugging Face eager at 16 requests (the most that fit its
#     cache at 32K) at 2K, 16K and 34K.
# bench/integrate_workload.py turns the JSON (into $OUT, default bench/out) into [2K, 32K] throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
bin=${BIN:-build-h200/specontext}
common=(--model llama-3.1-8b --random-weights --requests 32 --steps "${STEPS:-6}" --reps "${REPS:-3}" --warmup 2 --json)
sparse=(--policy specontext --budget 2048 --dlm-config eagle3-llama-3.1-8b --overlap "${OVERLAP:-0.8}")
$bin bench "${common[@]}" "${sparse[@]}" --offload-layers auto --depth "${DEPTHS:-2048,8192,16384,24576,28672,34816}" > "$OUT/specontext_c1c2c3.json"
$bin bench "${common[@]}" "${sparse[@]}" --offload-layers auto --sync-prefetch --depth 34816 > "$OUT/specontext_c1_sync.json"
$bin bench "${common[@]}" --depth 2048,8192,16384 > "$OUT/dense.json"
if [ "${HF:-1}" = 1 ]; then
  python3 bench/hf_baseline.py --attn eager --requests 16 --depth 2048,16384,34816 --steps 2 --reps 2 --warmup 1 --json > "$OUT/hf_eager.json"
fi
