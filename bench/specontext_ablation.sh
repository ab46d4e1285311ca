#!/usr/bin/env bash
# Issue 5's remaining measurements on the H200 at the Llama-3.1-8B shape (random bf16 weights, the
# EAGLE-3 draft's shape, B = 2048, a synthetic selection stream of overlap 0.8), JSON into $OUT:
#   breakdown   the step's phases at 32K with 32 requests and the memory model's placement (CUDA
#               events kernel by kernel: retrieval head, select, prefetch, prefetch wait, attention,
#               MLP, other), beside the same points timed as a CUDA graph;
#   components  the paper's ablation with 8 requests (every layer offloaded needs R x S x 128 KiB of
#               pinned host memory: 36 GB at 34K), c1 / c1,c2 / c1,c2,c3, at 8K and 34K;
#   adaptive    c3 for real with 16 requests (the engine moves layers as the caches grow) under a --gpu-mem hard limit,
#               with the device memory it held at the end;
#   quest       Quest's page selection at 32 requests beside our dense step at the same depths.
# Usage: bench/specontext_ablation.sh [breakdown] [components] [adaptive] [quest]  (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
bin=${BIN:-build-h200/specontext}
common=(--model llama-3.1-8b --random-weights --steps "${STEPS:-6}" --reps "${REPS:-3}" --warmup 2 --json)
sparse=(--policy specontext --budget 2048 --dlm-config eagle3-llama-3.1-8b --overlap "${OVERLAP:-0.8}")
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(breakdown components adaptive quest)
for part in "${parts[@]}"; do
  case "$part" in
    breakdown)
      $bin bench "${common[@]}" "${sparse[@]}" --requests 32 --offload-layers auto --depth 16384,32768 --breakdown > "$OUT/breakdown_r32.json"
      $bin bench "${common[@]}" "${sparse[@]}" --requests 32 --offload-layers auto --depth 16384,32768 > "$OUT/breakdown_r32_graph.json"
      ;;
    components)
      for c in c1 c1,c2 c1,c2,c3; do
        $bin bench "${common[@]}" "${sparse[@]}" --requests 8 --components "$c" --depth 8192,34816 > "$OUT/components_r8_${c//,/}.json"
      done
      ;;
    adaptive)
      $bin bench "${common[@]}" "${sparse[@]}" --requests 16 --adaptive --gpu-mem "${GPU_MEM:-60GB}" --depth 8192,16384,32768 > "$OUT/adaptive_r16_60gb.json"
      ;;
    quest)
      $bin bench "${common[@]}" --policy quest --budget 2048 --requests 32 --depth 2048,16384,24576 > "$OUT/quest_r32.json"
      $bin bench "${common[@]}" --requests 32 --depth 2048,16384,24576 > "$OUT/dense_r32.json"
      ;;
    *) echo "unknown part '$part' (breakdown, components, adaptive, quest)" >&2; exit 2 ;;
  esac
done
