#!/usr/bin/env bash
# The paper's headline workload on the H200 at the Llama-3.1-8B shape (random bf16 weights): 32
# requests, B = 2048, specontext with the EAGLE-3 draft's shape (random weights) and a synthetic
# selection stream of stated overlap (random weights choose nearly random sets), at sampled depths
# with the memory model's placement (--offload-layers auto), beside dense decoding where it fits and
# the synchronous-prefetch ablation (c1). JSON per configuration into $OUT (default bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
bin=${BIN:-build-h200/specontext}
common=(--model llama-3.1-8b --random-weights --requests 32 --steps "${STEPS:-8}" --reps "${REPS:-3}" --warmup 2 --json)
sparse=(--policy specontext --budget 2048 --dlm-config eagle3-llama-3.1-8b --overlap "${OVERLAP:-0.8}")
$bin bench "${common[@]}" --depth 2048,8192,16384 > "$OUT/dense.json"
$bin bench "${common[@]}" "${sparse[@]}" --offload-layers auto --depth "${DEPTHS:-2048,8192,16384,24576,32768}" > "$OUT/specontext_c1c2c3.json"
$bin bench "${common[@]}" "${sparse[@]}" --offload-layers auto --sync-prefetch --depth 16384,32768 > "$OUT/specontext_c1_sync.json"
