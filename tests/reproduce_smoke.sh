#!/usr/bin/env bash
# The README's main job end to end: every CSV, plan, trace, figure and the report appear.
set -euo pipefail
specontext=$1
out=$2
rm -rf "$out"
"$specontext" reproduce --out "$out" --threads 2
for f in csv/cloud-throughput.csv csv/edge-throughput.csv csv/budget-sweep.csv csv/host-link-whatif.csv \
         figures/speedup-cloud-throughput.png figures/throughput-vs-budget.png figures/memory-placement.png \
         figures/host-link-whatif.png report.md \
         attention/smollm2-passkey-2k.replay.json csv/trace-sims.csv accuracy/smollm2_policies_passkey_cuda_h200.json \
         figures/attention-mass-vs-budget.png figures/overlap-vs-budget.png figures/prefetch-vs-budget.png \
         figures/pareto-recall-vs-throughput.png figures/accuracy-vs-budget.png \
         measured/specontext_r32_s16k_b1024_off4.step3.side_by_side.trace.json \
         figures/measured-vs-predicted-specontext_r32_s16k_b1024_off4.step3.side_by_side.png; do
  [ -s "$out/$f" ] || { echo "missing $out/$f"; exit 1; }
done
ls "$out"/plans/*.json "$out"/traces/*.trace.json "$out"/figures/timeline-*.svg > /dev/null
grep -q "SpeContext" "$out/report.md"
grep -q "## Attention traces and Pareto fronts" "$out/report.md"
grep -q "## Measured beside predicted: one decode step" "$out/report.md"
# 2 workloads x 4 targets x 3 policies x 4 budgets, each read from the trace at a budget within its b_max (256)
/usr/bin/python3 - "$out/csv/trace-sims.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 96, len(rows)  # and the same for [32K in, 2K out]
assert all(1 <= int(r["trace_budget"]) <= 256 for r in rows), "trace_budget outside 1..256"
assert all(0 < float(r["recall"]) <= 1.001 and 0 <= float(r["overlap"]) <= 1 for r in rows)
PY
echo "reproduce smoke: ok"
