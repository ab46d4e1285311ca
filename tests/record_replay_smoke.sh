#!/usr/bin/env bash
# specontext record on SmolLM2 with its draft (a short passkey prompt, every policy), then replay:
# the trace reads back, every policy appears with the budgets asked for, and recall lies in (0, 1].
# Skipped (77) without the GGUF that scripts/fetch_smollm2.sh fetches.
source "$(dirname "$0")/smollm2_smoke_setup.sh"
"$specontext" record --model "$gguf" --dlm "$root/models/smollm2-eagle3" --task passkey --context 512 --trials 1 --max-new 3 \
  --b-max 32 --out "$out/t.trace"
"$specontext" replay "$out/t.trace" --budgets 8,32 --json > "$out/replay.json"
/usr/bin/python3 - "$out/replay.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
got = sorted({(r["policy"], r["budget"]) for r in j["results"]})
want = sorted((p, b) for p in ["oracle", "specontext", "specontext-batch", "quest", "streaming"] for b in (8, 32))
assert got == want, got
for r in j["results"]:
    assert 0 < r["recall"]["mean"] <= 1.0 + 1e-3, r
    assert r["overlap"] is not None and 0 <= r["overlap"] <= 1, r
assert j["trace"]["requests"] == 1 and j["trace"]["b_max"] == 32
print("record/replay smoke: ok")
PY
