#!/usr/bin/env bash
# The README's main job end to end: every CSV, plan, trace, figure and the report appear.
set -euo pipefail
specontext=$1
out=$2
rm -rf "$out"
"$specontext" reproduce --out "$out" --threads 2
for f in csv/cloud-throughput.csv csv/edge-throughput.csv csv/budget-sweep.csv csv/host-link-whatif.csv \
         figures/speedup-cloud-throughput.png figures/throughput-vs-budget.png figures/memory-placement.png \
         figures/host-link-whatif.png report.md; do
  [ -s "$out/$f" ] || { echo "missing $out/$f"; exit 1; }
done
ls "$out"/plans/*.json "$out"/traces/*.trace.json "$out"/figures/timeline-*.svg > /dev/null
grep -q "SpeContext" "$out/report.md"
echo "reproduce smoke: ok"
