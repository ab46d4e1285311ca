#!/usr/bin/env bash
# Does pooling the retrieval head's scores help? (engine/retrieval_head.hpp --head-pool/--head-recent;
# the paper has none.) On the CPU reference with SmolLM2-135M and its EAGLE-3 draft, any machine:
#  1. attention traces of the three answer tasks at 2K under each pooling variant, replayed: the
#     LLM attention mass the head's budget-B set captures, and the overlap of adjacent steps' sets;
#  2. passkey accuracy of sparse decoding under the variants at small budgets (eval; 10 trials per
#     seed, EVAL_SEEDS="0 1"), and dense accuracy on the same trials.
# Writes $OUT/replay_<task>_<variant>.json, $OUT/eval_passkey_<variant>_b<B>_s<seed>.json and
# $OUT/eval_passkey_full_s<seed>.json (RECORD=0 or EVAL=0 skips a part); then
#   python3 bench/head_pooling_table.py $OUT     prints the tables bench/README.md shows.
# About 60 minutes on 2 cores (JOBS=2 runs two variants at once).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/head_pooling}
BIN=${BIN:-build/specontext}
MODEL=${MODEL:-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
DLM=${DLM:-models/smollm2-eagle3}
JOBS=${JOBS:-2}
mkdir -p "$OUT"
# name and flags of each variant ("none" is the paper's plain top-B)
variants=("none|--head-pool none" "max3|--head-pool max:3" "mean3|--head-pool mean:3" "mean3-recent32|--head-pool mean:3 --head-recent 32")

record_one() {  # task trials variant-name flags...
  local task=$1 trials=$2 name=$3; shift 3
  "$BIN" record --model "$MODEL" --dlm "$DLM" --task "$task" --context 2048 --trials "$trials" --seed 0 --max-new 8 --b-max 1024 \
    --policies specontext,specontext-batch "$@" --out "$OUT/$task-$name.trace" > /dev/null
  "$BIN" replay "$OUT/$task-$name.trace" --target none --json > "$OUT/replay_${task}_$name.json"
  rm "$OUT/$task-$name.trace"
}

eval_one() {  # seed budget variant-name flags...; budget 0: dense
  local seed=$1 budget=$2 name=$3; shift 3
  if [ "$budget" = 0 ]; then
    "$BIN" eval passkey --model "$MODEL" --context 2048 --trials "${EVAL_TRIALS:-10}" --seed "$seed" --backend cpu --json \
      > "$OUT/eval_passkey_full_s$seed.json"
  else
    "$BIN" eval passkey --model "$MODEL" --context 2048 --trials "${EVAL_TRIALS:-10}" --seed "$seed" --backend cpu --policy specontext \
      --budget "$budget" --dlm "$DLM" "$@" --json > "$OUT/eval_passkey_${name}_b${budget}_s$seed.json"
  fi
}

jobs_running() { jobs -rp | wc -l; }
throttle() { while [ "$(jobs_running)" -ge "$JOBS" ]; do sleep 1; done; }

[ "${RECORD:-1}" = 1 ] && for task_trials in "passkey 20" "multikey 10" "vartrack 10"; do
  for v in "${variants[@]}"; do
    throttle
    # shellcheck disable=SC2086
    record_one $task_trials "${v%%|*}" ${v#*|} &
  done
done
[ "${EVAL:-1}" = 1 ] && for seed in ${EVAL_SEEDS:-0 1}; do
  throttle
  eval_one "$seed" 0 full &
  for budget in ${EVAL_BUDGETS:-64 128 256}; do
    for v in "${variants[@]}"; do
      throttle
      # shellcheck disable=SC2086
      eval_one "$seed" "$budget" "${v%%|*}" ${v#*|} &
    done
  done
done
wait
echo "wrote $OUT"
