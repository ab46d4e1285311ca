#!/usr/bin/env bash
# The engine's dense decode step and Hugging Face transformers' at the same points in one call on one
# machine, then their table with the ratios (bench/engine_vs_hf.py): the issue-3 comparison.
#   bench/engine_vs_hf.sh build/specontext [--requests 1,32] [--depth 2048,16384] [--rounds 2]
# The Llama-3.1-8B shape with random bf16 weights, KV on the GPU. The engine runs `bench --steps 16
# --reps 5` ROUNDS times first (rounds spread drift), then hf_baseline.py (eager and sdpa, --steps 8
# --reps 3: eager at R = 32, 16K takes ~0.5 s a step) with the roofline peak the engine used (its
# --hw auto file), so both tables share one bandwidth. Writes OUT (default bench/out/engine_vs_hf):
# engine_<round>.json, hf.json, each one's stderr as .err, and table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bench/engine_vs_hf.sh SPECONTEXT_BINARY [--requests LIST] [--depth LIST] [--rounds N]"
source bench/take_binary.sh
take_binary engine_vs_hf.sh "$usage" "$@"
shift
requests=1,32 depth=2048,16384 rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) requests=${2:?--requests needs a value}; shift 2 ;;
    --depth) depth=${2:?--depth needs a value}; shift 2 ;;
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    *) echo "engine_vs_hf.sh: unknown argument '$1' ($usage)" >&2; exit 2 ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "engine_vs_hf.sh: --rounds must be a positive integer, got '$rounds'" >&2; exit 2; }
OUT=${OUT:-bench/out/engine_vs_hf}
mkdir -p "$OUT"
engine_runs=()
for round in $(seq 1 "$rounds"); do
  echo "[engine_vs_hf] engine, round $round" >&2
  out="$OUT/engine_$round.json"
  "$bin" bench --model llama-3.1-8b --random-weights --requests "$requests" --depth "$depth" --steps 16 --reps 5 \
    --json > "$out" 2> "$OUT/engine_$round.err" ||
    { echo "engine_vs_hf.sh: the engine's round $round failed ($OUT/engine_$round.err):" >&2; tail -5 "$OUT/engine_$round.err" >&2; exit 1; }
  engine_runs+=("$out")
done
peak_gbps=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["hbm_peak_Bps"] / 1e9)' "${engine_runs[0]}")
echo "[engine_vs_hf] transformers (eager, sdpa), roofline at $peak_gbps GB/s" >&2
PYTHONUNBUFFERED=1 python3 bench/hf_baseline.py --requests "$requests" --depth "$depth" --steps 8 --reps 3 \
  --attn eager,sdpa --peak-gbps "$peak_gbps" --json > "$OUT/hf.json" 2> "$OUT/hf.err" ||
  { echo "engine_vs_hf.sh: hf_baseline.py failed ($OUT/hf.err):" >&2; tail -5 "$OUT/hf.err" >&2; exit 1; }
python3 bench/engine_vs_hf.py "${engine_runs[@]}" --hf "$OUT/hf.json" | tee "$OUT/table.md"
