#!/usr/bin/env bash
# The accuracy axis of the Pareto fronts (issue 6): `specontext eval` on SmolLM2 with its draft for
# each task x policy x budget, beside the dense run of the same instances. One JSON object per run;
# per task spec one file $OUT/accuracy_<task>-<context>[-<extra flags>].jsonl (dense first, then
# policy x budget), which bench/eval_rows.py turns into the table configs/reproduce.json "accuracy" lists.
#
#   BACKEND=cpu JOBS=2 bench/eval_accuracy.sh                     # the default task specs
#   BACKEND=cuda bench/eval_accuracy.sh multikey:4096:10          # one spec
#
# A spec is TASK:CONTEXT:TRIALS[:EXTRA], EXTRA being eval flags joined by commas
# (vartrack:2048:16:--hops,1). JOBS runs that many evals at once (each is one process; the CPU
# reference is mostly single-threaded at these sizes). POLICIES and BUDGETS override the sweep; a
# policy specontext*:embed feeds the head the embedding alone, specontext*:pooled pools its scores
# (bench/README.md, "Pooling the retrieval head's scores").
# BATCH sets eval's --batch (default: all the trials at once). A part already in OUT is kept (a
# finished run of an interrupted sweep); parts are named by backend, task, context, trials and extra
# flags, so use one OUT per model. Paths must not hold spaces or quotes.
# On the CPU every run shares a prefill cache (PREFILL_CACHE, default $OUT/prefill_cache; eval
# --prefill-cache): a spec's first run, alone, prefills its instances (with the retrieval head's
# features when POLICIES has a specontext policy, which then runs first), the others restore them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
BIN=${BIN:-build/specontext}
BACKEND=${BACKEND:-cpu}
GGUF=${GGUF:-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
DLM=${DLM:-models/smollm2-eagle3}
POLICIES=${POLICIES:-streaming oracle quest specontext specontext-batch}
POLICIES=$(for p in $POLICIES; do [ "$p" != full ] && echo "$p"; done; true)  # full always runs, once
BUDGETS=${BUDGETS:-256 1024}
specs=("$@")
[ ${#specs[@]} -eq 0 ] && specs=(multikey:4096:10 vartrack:2048:16:--hops,1 perplexity:2048:4)
for f in "$BIN" "$GGUF" "$DLM/config.json"; do
  [ -e "$f" ] || { echo "eval_accuracy.sh: $f not found (build the engine, fetch the GGUF: README)" >&2; exit 1; }
done
parts="$OUT/accuracy_parts"
mkdir -p "$parts"
cache=()
[ "$BACKEND" = cpu ] && cache=(--prefill-cache "${PREFILL_CACHE:-$OUT/prefill_cache}")
# The head's policies first: the cache entries they store hold the features the head reads.
ordered=$(for p in $POLICIES; do [[ $p == specontext* ]] && echo "$p"; done; for p in full $POLICIES; do [[ $p != specontext* ]] && echo "$p"; done; true)

# A spec's extra flags in its file names: "-" and their alphanumerics, or nothing.
extra_slug() { [ -z "$1" ] || echo "-${1//[^A-Za-z0-9]/}"; }

# One line per run: the part file it writes, then the eval's arguments; a spec's first run is a lead.
leads=() runs=()
for spec in "${specs[@]}"; do
  IFS=: read -r task ctx trials extra <<< "$spec"
  [ -n "$task" ] && [ -n "$ctx" ] && [ -n "$trials" ] || { echo "eval_accuracy.sh: spec '$spec' is not TASK:CONTEXT:TRIALS[:EXTRA]" >&2; exit 2; }
  key="$parts/$BACKEND-$task-$ctx-t$trials$(extra_slug "$extra")"
  common="$task --model $GGUF --backend $BACKEND --context $ctx --trials $trials --batch ${BATCH:-$trials} --seed 0 ${extra//,/ } ${cache[*]} --json"
  first=1
  for policy in $ordered; do
    if [ "$policy" = full ]; then
      line="$key-full.json $common"
      if [ $first = 1 ]; then leads+=("$line"); else runs+=("$line"); fi
      first=0
      continue
    fi
    base=${policy%%:*} flags=""
    case $policy in  # the retrieval head's variants: the embedding alone as input, pooled scores
      *:embed) flags="--head-input embed" ;;
      *:pooled) flags="--head-pool mean:3 --head-recent 32" ;;
    esac
    [[ $base == specontext* ]] && flags="--dlm $DLM $flags"
    for budget in $BUDGETS; do
      line="$key-${policy//:/_}-b$budget.json $common --policy $base --budget $budget $flags"
      if [ $first = 1 ]; then leads+=("$line"); else runs+=("$line"); fi
      first=0
    done
  done
done

# A part already written (a finished run of an interrupted sweep) is kept, not re-run.
one_run() {
  set -- $1; local part=$1; shift
  [ -s "$part" ] && return 0
  "$BIN" eval "$@" > "$part.tmp" && mv "$part.tmp" "$part" && echo "done: $part" >&2
}
export -f one_run; export BIN
for line in "${leads[@]}"; do one_run "$line"; done
[ ${#runs[@]} -eq 0 ] || printf '%s\n' "${runs[@]}" | xargs -d '\n' -P "${JOBS:-1}" -I{} bash -c 'one_run "$1"' _ {}

for spec in "${specs[@]}"; do
  IFS=: read -r task ctx trials extra <<< "$spec"
  key="$parts/$BACKEND-$task-$ctx-t$trials$(extra_slug "$extra")"
  log="$OUT/accuracy_$task-$ctx$(extra_slug "$extra").jsonl"
  cat "$key-full.json" > "$log"
  for policy in $POLICIES; do
    for budget in $BUDGETS; do cat "$key-${policy//:/_}-b$budget.json" >> "$log"; done
  done
  echo "$log: $(grep -c '"task"' "$log") runs"
done
