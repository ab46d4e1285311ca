#!/usr/bin/env bash
# bench/eval_accuracy.sh on SmolLM2 with its draft (a short passkey, specontext and streaming) through
# the CPU prefill cache: the lead run prefills both instances, the others restore them (hits 2, misses
# 0), and a run without the cache gives the same outputs, overlap and attention mass. Where a GPU is
# there, eval on CUDA with offloaded layers reports their elastic loads (h2d_bytes_per_step).
# Skipped (77) without the GGUF that scripts/fetch_smollm2.sh fetches.
source "$(dirname "$0")/smollm2_smoke_setup.sh"
OUT="$out" BIN="$specontext" GGUF="$gguf" JOBS=2 POLICIES="streaming specontext" BUDGETS=64 \
  "$root/bench/eval_accuracy.sh" passkey:384:2
"$specontext" eval passkey --model "$gguf" --context 384 --trials 2 --batch 2 --seed 0 --policy streaming --budget 64 --json \
  > "$out/uncached.json"
/usr/bin/python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
part = lambda name: json.load(open(os.path.join(out, "accuracy_parts", name)))
lead = part("cpu-passkey-384-t2-specontext-b64.json")
assert lead["timing"]["prefill_cache"]["misses"] == 2 and lead["timing"]["prefill_cache"]["hits"] == 0, lead["timing"]
for name in ("cpu-passkey-384-t2-full.json", "cpu-passkey-384-t2-streaming-b64.json"):
    c = part(name)["timing"]["prefill_cache"]
    assert c["hits"] == 2 and c["misses"] == 0, (name, c)
cached, plain = part("cpu-passkey-384-t2-streaming-b64.json"), json.load(open(os.path.join(out, "uncached.json")))
assert [t["output_ids"] for t in cached["trials"]] == [t["output_ids"] for t in plain["trials"]]
for key in ("accuracy", "overlap_rate", "attention_mass"):
    assert cached[key] == plain[key], (key, cached[key], plain[key])
assert plain["timing"]["prefill_cache"] is None
assert plain["h2d_bytes_per_step"] is None and plain["offloaded_layers"] is None  # no host link on the CPU
lines = open(os.path.join(out, "accuracy_passkey-384.jsonl")).read().count('"task"')
assert lines == 3, lines
print("eval prefill cache smoke: ok")
PY
if "$specontext" devices --json | /usr/bin/python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["devices"] else 1)'; then
  "$specontext" eval passkey --model "$gguf" --context 384 --trials 2 --backend cuda --policy streaming --budget 64 \
    --offload-layers 2 --json > "$out/cuda_offload.json"
  /usr/bin/python3 - "$out/cuda_offload.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["offloaded_layers"] == 2, j["offloaded_layers"]
# The streaming window slides a position a step: its newest row crosses the link every step.
assert j["h2d_bytes_per_step"] > 0, j["h2d_bytes_per_step"]
print("eval on CUDA with offloaded layers: h2d_bytes_per_step %.0f" % j["h2d_bytes_per_step"])
PY
fi
