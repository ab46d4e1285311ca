#!/usr/bin/env bash
# The simulator's calibration grid on the H200 at the Llama-3.1-8B shape (random bf16 weights), JSON
# and the measurements CSV (sim/calibration.hpp) into $OUT:
#   dense   R = 1, 4, 16, 32 x S = 2K, 8K, 16K (12 points; all fit: R = 32 at 16K holds 69 GB of KV);
#   b1024, b2048   specontext with B = 1024 or 2048: the EAGLE-3 draft's shape with a synthetic
#           selection stream of overlap 0.8, R = 8, 32 x S = 8K, 16K, 24K, 32K, each
#             --offload-layers auto                c1,c2,c3 (the memory model's placement: none at
#                                                  R = 8, up to 8 layers at R = 32, 32K),
#             --offload-layers 4 and 8             c1,c2 (copy-stream elastic prefetch),
#             --offload-layers 4 --sync-prefetch   c1 (elastic loads on the compute stream);
#           32 points each.
# 76 points in all, 25 of them held out by `specontext calibrate`.
#   fresh   points the grid does not have, to validate a model change made after the grid's held-out
#           errors were seen (run it alone, into an OUT of its own): R = 8, 16, 32 x S = 12K, 20K,
#           28K, synchronous loads (c1) with 4 layers on the host at B = 2048 and 1024, and with 8
#           at B = 2048; 27 points.
#   fresh2  a second unseen set, for a model change made after `fresh` was seen (an OUT of its own):
#           R = 4, 12, 24 x S = 10K, 18K, 26K, synchronous loads (c1) with 6 layers on the host at
#           B = 1536, 8 at B = 1024 and 2 at B = 2048; 27 points.
#   fresh3  a third unseen set, for the synchronous-load model made after `fresh2` and the
#           re-measured grid were seen (an OUT of its own): R = 6, 20, 28 x S = 14K, 22K, 30K,
#           synchronous loads (c1) with 4 layers on the host at B = 1536 and 6 at B = 2048, and
#           copy-stream prefetch (c1,c2) with 6 at B = 1024; 27 points.
#   fresh_resident   the same R, S and B with every layer on the GPU (18 points) into $OUT/resident/,
#           outside the CSV: `bench/load_rates.py --loads $OUT/json/fresh_*.json --resident
#           $OUT/resident/*.json` gives the loads' own time and rate with one engine build.
# Then every $OUT/json/*.json there is
# goes through bench/bench_to_calibration_csv.py into $OUT/h200_grid.csv (the machine's details in
# each row), and `specontext devices --json` into $OUT/devices.json. Each point builds its own engine
# (random weights; for offloaded layers pinned host memory, ~0.5 s per GiB, up to 34 GB at R = 32,
# 32K, 8 layers), which dominates: an estimated 6 minutes in all, of which the timed steps take under
# half a minute. Parts may run in separate calls (each rewrites the CSV from all JSON so far).
# Usage: bench/calibration_grid.sh [dense] [b1024] [b2048] [fresh] [fresh2] [fresh3] [fresh_resident]  (default: the first three)
# Commit $OUT/h200_grid.csv as bench/results/calibration/h200_grid.csv, with json/ and devices.json
# beside it; then `specontext calibrate` and `specontext calibrate --check` (sim/VALIDATION.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/calibration}
J="$OUT/json"
mkdir -p "$J"
bin=${BIN:-build-h200/specontext}
common=(--model llama-3.1-8b --random-weights --steps "${STEPS:-6}" --reps "${REPS:-3}" --warmup 2 --json)
head_flags=(--policy specontext --dlm-config eagle3-llama-3.1-8b --overlap "${OVERLAP:-0.8}")
sparse=("${head_flags[@]}" --requests 8,32 --depth 8192,16384,24576,32768)
fresh=("${head_flags[@]}" --requests 8,16,32 --depth 12288,20480,28672)
fresh2=("${head_flags[@]}" --requests 4,12,24 --depth 10240,18432,26624)
fresh3=("${head_flags[@]}" --requests 6,20,28 --depth 14336,22528,30720)
start=$SECONDS
step() {  # name, bench flags...: one bench call into ${DIR:-$J}/name.json
  local name=$1
  shift
  echo "[calibration_grid] $name ($((SECONDS - start)) s so far)" >&2
  $bin bench "${common[@]}" "$@" > "${DIR:-$J}/$name.json"
}

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(dense b1024 b2048)
$bin devices --json > "$OUT/devices.json"
for part in "${parts[@]}"; do
  case "$part" in
    dense) step dense --requests 1,4,16,32 --depth 2048,8192,16384 ;;
    b1024 | b2048)
      B=${part#b}
      step "specontext_b${B}_auto" "${sparse[@]}" --budget "$B" --offload-layers auto
      step "specontext_b${B}_off4" "${sparse[@]}" --budget "$B" --offload-layers 4
      step "specontext_b${B}_off8" "${sparse[@]}" --budget "$B" --offload-layers 8
      step "specontext_b${B}_off4_sync" "${sparse[@]}" --budget "$B" --offload-layers 4 --sync-prefetch
      ;;
    fresh)
      step fresh_b2048_off4_sync "${fresh[@]}" --budget 2048 --offload-layers 4 --sync-prefetch
      step fresh_b1024_off4_sync "${fresh[@]}" --budget 1024 --offload-layers 4 --sync-prefetch
      step fresh_b2048_off8_sync "${fresh[@]}" --budget 2048 --offload-layers 8 --sync-prefetch
      ;;
    fresh2)  # a second unseen set (other R, S, B and host layers), for a model change judged after `fresh` was seen
      step fresh2_b1536_off6_sync "${fresh2[@]}" --budget 1536 --offload-layers 6 --sync-prefetch
      step fresh2_b1024_off8_sync "${fresh2[@]}" --budget 1024 --offload-layers 8 --sync-prefetch
      step fresh2_b2048_off2_sync "${fresh2[@]}" --budget 2048 --offload-layers 2 --sync-prefetch
      ;;
    fresh3)  # a third unseen set, for the synchronous-load model (c1,c2 points beside it, as a control)
      step fresh3_b1536_off4_sync "${fresh3[@]}" --budget 1536 --offload-layers 4 --sync-prefetch
      step fresh3_b2048_off6_sync "${fresh3[@]}" --budget 2048 --offload-layers 6 --sync-prefetch
      step fresh3_b1024_off6 "${fresh3[@]}" --budget 1024 --offload-layers 6
      ;;
    fresh_resident)  # the fresh points with every layer on the GPU, for bench/load_rates.py (not calibration rows)
      mkdir -p "$OUT/resident"
      DIR="$OUT/resident" step fresh_resident_b2048 "${fresh[@]}" --budget 2048 --offload-layers 0
      DIR="$OUT/resident" step fresh_resident_b1024 "${fresh[@]}" --budget 1024 --offload-layers 0
      ;;
    *) echo "unknown part '$part' (dense, b1024, b2048, fresh, fresh2, fresh3, fresh_resident)" >&2; exit 2 ;;
  esac
done
echo "[calibration_grid] measured in $((SECONDS - start)) s" >&2

# The ablation label of each file, from its name: the JSON cannot tell c1,c2 from c1,c2,c3.
files=()
labels=()
for f in "$J"/*.json; do
  case "$(basename "$f")" in
    dense.json) l=- ;;
    *_auto.json) l=c1,c2,c3 ;;
    *_sync.json) l=c1 ;;
    *_off[0-9]*.json) l=c1,c2 ;;
    *) echo "[calibration_grid] $f: no label for it, left out of the CSV" >&2; continue ;;
  esac
  files+=("$f")
  labels+=(--components "$l")
done
python3 bench/bench_to_calibration_csv.py "${files[@]}" "${labels[@]}" --date "$(date -u +%F)" --out "$OUT/h200_grid.csv"
