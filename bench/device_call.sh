#!/usr/bin/env bash
# Everything the dense decode path's figures need, in one device call of bounded length, from
# binaries built elsewhere: the read ceiling (bench --sweep at R = 1, 2K), the engine beside
# transformers (bench/engine_vs_hf.sh), ncu of decode attention's split kernel at R = 32, and an
# interleaved A/B of any variants against the binary. Each stage runs only while LIMIT seconds
# (from the start) leave room for it, under a timeout that keeps the rest; a failed stage is logged
# and the next one runs, so what a short call did measure still comes back.
#   LIMIT=540 OUT=/tmp/res PACK=$OUT/res.tar.xz bench/device_call.sh build/specontext \
#       ["mc256=/tmp/mc256/specontext" "pers=build/specontext --persistent" ...]
# R = 32's deep point is 16K where the card has 100 GB or more (the issue's point; 68.7 GB of KV),
# else 8K. OUT (default bench/out/device_call) gets gpu.csv, log.txt, sweep.json, evh/ (engine and
# transformers JSON, table.md), ncu_decode_split.txt and ab/ (with table.txt); PACK, if set, a
# tar.xz of OUT written at exit (a device's $OUT returns a few files only). Binaries built in
# another tree find configs/ through SPECONTEXT_CONFIGS, which defaults to this tree's.
set -uo pipefail
cd "$(dirname "$0")/.."
usage="usage: [LIMIT=s] [OUT=dir] [PACK=file.tar.xz] bench/device_call.sh SPECONTEXT_BINARY [NAME=BINARY [FLAGS]] ..."
source bench/take_binary.sh
take_binary device_call.sh "$usage" "$@"
shift
limit=${LIMIT:-540}
[[ "$limit" =~ ^[1-9][0-9]*$ ]] || { echo "device_call.sh: LIMIT must be a positive number of seconds, got '$limit'" >&2; exit 2; }
for v in "$@"; do
  [[ "$v" == *=* ]] || { echo "device_call.sh: variant '$v': want NAME=BINARY [FLAGS] ($usage)" >&2; exit 2; }
done
out=${OUT:-bench/out/device_call}
mkdir -p "$out"
export SPECONTEXT_CONFIGS=${SPECONTEXT_CONFIGS:-$PWD/configs}
t0=$(date +%s)
left() { echo $(( limit - ($(date +%s) - t0) )); }
log() { echo "[device_call $(( $(date +%s) - t0 )) s] $*" | tee -a "$out/log.txt" >&2; }
# stage NAME CAP_S RESERVE_S CMD...: runs CMD under min(CAP, time left - RESERVE), if that is >= 10 s.
stage() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local budget=$(( $(left) - reserve ))
  [ "$budget" -gt "$cap" ] && budget=$cap
  if [ "$budget" -lt 10 ]; then log "$name: skipped, $(left) s left"; return; fi
  log "$name (up to $budget s)"
  timeout "$budget" "$@"
  log "$name: exit $?"
}
if [ -n "${PACK:-}" ]; then trap 'tar -cJf "$PACK" -C "$out" . && log "packed into $PACK"' EXIT; fi

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.memory,driver_version --format=csv,noheader \
  > "$out/gpu.csv" 2>&1 || log "nvidia-smi failed: $(head -1 "$out/gpu.csv")"
mib=$(cut -d, -f2 "$out/gpu.csv" | grep -o '[0-9]*' | head -1)
deep=8192
[ "${mib:-0}" -ge 95000 ] && deep=16384
log "GPU: $(head -1 "$out/gpu.csv"); R = 32's deep point: $deep"
engine=(--model llama-3.1-8b --random-weights --steps 16 --reps 5)

# The ceiling alone, beside the cheapest point: engine_vs_hf times the issue's points next, and their
# rate over hbm_sweep_Bps is their share of it (a second run of R = 32 at the deep point, filling
# its ~69 GB of KV, would only repeat that).
stage sweep 60 120 bash -c '"$1" bench "${@:3}" --requests 1 --depth 2048 --sweep --json > "$2/sweep.json" 2> "$2/sweep.err"' \
  _ "$bin" "$out" "${engine[@]}"
stage engine_vs_hf 240 30 env OUT="$out/evh" bench/engine_vs_hf.sh "$bin" --requests 1,32 --depth "2048,$deep" --rounds 2
if command -v ncu > /dev/null; then
  # launch-skip 64: past the split kernels of the first two warm-up steps (one a layer).
  stage ncu_decode_split 90 15 bash -c 'ncu --clock-control none --kernel-name regex:decode_split --launch-skip 64 \
      --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
      --section WarpStateStats "$1" bench --model llama-3.1-8b --random-weights --requests 32 --depth "$2" --warmup 3 \
      --steps 1 --reps 1 --no-graph > "$3/ncu_decode_split.txt" 2>&1' _ "$bin" "$deep" "$out"
else
  log "ncu_decode_split: skipped, no ncu on the PATH"
fi
if [ $# -gt 0 ]; then
  mkdir -p "$out/ab"
  stage ab 100000 5 bash -c 'OUT="$1/ab" ROUNDS=2 bench/interleaved_ab.sh "${@:2}" > "$1/ab/table.txt"' _ "$out" "base=$bin" "$@" -- \
    "${engine[@]}" --requests 1,32 --depth "2048,$deep"
fi
log "done"
