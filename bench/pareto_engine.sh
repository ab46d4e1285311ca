#!/usr/bin/env bash
# The engine's side of the accuracy-vs-throughput Pareto fronts (issue 6), on the H200: decode steps at
# the Llama-3.1-8B shape (random bf16 weights), 32 requests at 16K (every layer resident), for each
# policy x budget (specontext, quest, streaming), with the retrieval head's selection
# stream given the overlap a recorded attention trace
# measured for it at that budget (sim/trace_replay.hpp; random weights would choose nearly random
# sets); quest runs its own page selection; dense beside them. JSON per point into $OUT.
#   REPLAY=bench/results/smollm2_passkey2k_attention_mass_cpu.json bench/pareto_engine.sh
# The trace's budget is read at the same fraction of the context (B x trace context / 16K), as
# `reproduce` does for the simulator (cli/trace_experiments.hpp).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
bin=${BIN:-build-h200/specontext}
replay=${REPLAY:-bench/results/smollm2_passkey2k_attention_mass_cpu.json}
depth=${DEPTH:-16384}
common=(--model llama-3.1-8b --random-weights --requests "${REQUESTS:-32}" --depth "$depth" --steps "${STEPS:-6}" --reps "${REPS:-3}" --warmup 2 --json)
$bin bench "${common[@]}" > "$OUT/pareto_dense.json"
# The default budgets are the accuracy runs' fractions of their contexts (1/32 .. 1/2 of 16K), so
# that analysis/engine_pareto.py pairs each with a measured accuracy at the same fraction.
for budget in ${BUDGETS:-512 1024 2048 4096 8192}; do
  # bench's synthetic stream stands in for the head-level choice (--overlap acts on specontext only)
  overlap=$(/usr/bin/env python3 - "$replay" "$budget" "$depth" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
budget, depth = int(sys.argv[2]), int(sys.argv[3])
ctx = j["trace"]["prompt_tokens"] + j["trace"]["max_new"] / 2
want = max(1, round(budget * ctx / depth))
rows = [r for r in j["results"] if r["policy"] == "specontext" and r["overlap"] is not None]
best = min(rows, key=lambda r: abs(r["budget"] - want))  # the nearest replayed budget
print(best["overlap"])
PY
)
  $bin bench "${common[@]}" --policy specontext --budget "$budget" --dlm-config eagle3-llama-3.1-8b --overlap "$overlap" \
    > "$OUT/pareto_specontext_b$budget.json"
  for policy in quest streaming; do
    $bin bench "${common[@]}" --policy "$policy" --budget "$budget" > "$OUT/pareto_${policy}_b$budget.json"
  done
done
python3 bench/engine_pareto_rows.py --what "specontext bench on the Llama-3.1-8B shape (random bf16 weights), R = ${REQUESTS:-32}, depth $depth, every layer resident, per policy x budget; specontext's selection a synthetic stream with the overlap $replay measured at the same fraction of its context" \
  --command "REPLAY=$replay DEPTH=$depth bench/pareto_engine.sh" "$OUT"/pareto_*.json > "$OUT/engine_pareto.json"
