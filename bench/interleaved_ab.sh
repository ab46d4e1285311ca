#!/usr/bin/env bash
# An A/B (or A/B/C...) of `specontext bench` in interleaved rounds on one machine, then its table
# (bench/ab_table.py). Each variant is "NAME=BINARY [FLAGS...]"; the arguments after -- go to every
# bench call. Round r runs every variant once, in the order given, so drift spreads over all alike.
#   ROUNDS=3 OUT=bench/out/ab bench/interleaved_ab.sh "off=build-h200/specontext --no-pdl" \
#       "chain=build-h200/specontext" -- --model llama-3.1-8b --random-weights --requests 1,32 \
#       --depth 2048,16384 --steps 16 --reps 5
#   (two builds: "old=/tmp/old/specontext" "new=build-h200/specontext" -- ...)
# Writes OUT/bench_NAME_R.json (bench's stderr beside it as .err) and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/ab}
ROUNDS=${ROUNDS:-3}
variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  variants+=("$1")
  shift
done
[ $# -gt 0 ] || { echo "interleaved_ab.sh: usage: NAME=BINARY [FLAGS] ... -- BENCH ARGS" >&2; exit 2; }
shift
[ ${#variants[@]} -ge 2 ] || { echo "interleaved_ab.sh: need at least two variants before --" >&2; exit 2; }
names=()
for v in "${variants[@]}"; do
  name=${v%%=*}
  [[ "$v" == *=* && "$name" =~ ^[A-Za-z0-9-]+$ ]] || { echo "interleaved_ab.sh: variant '$v': want NAME=BINARY [FLAGS] (NAME letters, digits, -)" >&2; exit 2; }
  read -r -a cmd <<< "${v#*=}"
  [ -x "${cmd[0]}" ] || { echo "interleaved_ab.sh: variant '$name': '${cmd[0]}' is not an executable" >&2; exit 2; }
  names+=("$name")
done
mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for v in "${variants[@]}"; do
    name=${v%%=*}
    read -r -a cmd <<< "${v#*=}"
    echo "[interleaved_ab] round $round: $name" >&2
    err="$OUT/bench_${name}_${round}.err"
    "${cmd[0]}" bench "${cmd[@]:1}" "$@" --json > "$OUT/bench_${name}_${round}.json" 2> "$err" ||
      { echo "interleaved_ab.sh: variant '$name', round $round failed ($err):" >&2; tail -5 "$err" >&2; exit 1; }
  done
done
python3 bench/ab_table.py "$OUT" "$(IFS=,; echo "${names[*]}")"
