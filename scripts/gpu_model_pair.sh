#!/usr/bin/env bash
# What runs on the GPU machine for the model pair (SmolLM2 + our EAGLE-3 draft), in the stages the
# device's limits impose (64 MiB of tree per call, 10 minutes per command, ignored files kept while
# the machine stays warm). The 98 MB GGUF travels as four parts (carry/gguf.part00..03, made by
# `split -n 4 -d`: with the committed draft the tree is ~35 MB), the corpus as carry/corpus.tar.xz, the wheels as models/wheels/.
#
#   scripts/gpu_model_pair.sh build    wheels into build-h200/pyextra, corpus unpacked, engine built
#   scripts/gpu_model_pair.sh gpu-tests   the GPU tests that need no GGUF
#   scripts/gpu_model_pair.sh goldens  GGUF assembled and checked; transformers' golden references
#   scripts/gpu_model_pair.sh train [train_draft.py flags]   the draft trained and evaluated
#   scripts/gpu_model_pair.sh evaluate  goldens/draft restored; every test; eval beside transformers
#   scripts/gpu_model_pair.sh accuracy  multikey, vartrack, perplexity and fidelity per policy x budget on CUDA (JSON lines)
#   scripts/gpu_model_pair.sh policies [CTX ...]  GGUF assembled from the parts stashed by earlier calls
#                                       (`mv carry/gguf.part0* $STASH/`) and this one's; the SmolLM2 GPU tests;
#                                       `eval passkey` per policy x budget on CUDA (JSON lines per context)
# Results go to $OUT (the device's return folder) and are committed from there by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
GGUF=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
STASH=build-h200/stash  # ignored: survives between calls while the machine is warm
export PYTHONPATH=$PWD/build-h200/pyextra${PYTHONPATH:+:$PYTHONPATH}

case "${1:-}" in
  build)
    python3 -m pip install --quiet --no-deps --target build-h200/pyextra models/wheels/*.whl
    mkdir -p models/train/corpus && tar -xJf carry/corpus.tar.xz -C models/train/corpus
    cmake -S . -B build-h200 -DCMAKE_BUILD_TYPE=Release > /dev/null
    cmake --build build-h200 -j "$(nproc)" 2>&1 | tail -2
    ;;
  gpu-tests)
    ctest --test-dir build-h200 -j 4 -E 'SmolLM2' 2>&1 | tail -5
    ;;
  goldens)
    mkdir -p "$(dirname "$GGUF")" "$STASH"
    cat carry/gguf.part0* > "$GGUF"
    echo "$SHA256  $GGUF" | sha256sum -c -
    python3 tests/fixtures/smollm2/make_smollm2_goldens.py --device cuda 2>&1 | grep -v 'Converting\|Loading weights'
    cp tests/fixtures/smollm2/expected.json "$STASH/" && cp tests/fixtures/smollm2/expected.json "$OUT/"
    ;;
  train)
    mkdir -p "$STASH"
    python3 models/train/train_draft.py --out "$STASH/smollm2-eagle3" "${@:2}" 2>&1 | grep -v 'Converting\|Loading weights' \
      | tee "$OUT/train_stdout.txt"
    cp -r "$STASH/smollm2-eagle3" "$OUT/"
    ;;
  evaluate)
    cp "$STASH/expected.json" tests/fixtures/smollm2/expected.json
    ctest --test-dir build-h200 -j 4 2>&1 | tail -4
    bin=build-h200/specontext
    for spec in passkey:2048:20 passkey:8192:20 multikey:4096:10 vartrack:4096:10 perplexity:2048:6 perplexity:8192:4; do
      IFS=: read -r task ctx trials <<< "$spec"
      name="$OUT/$task-$ctx"
      $bin eval "$task" --model "$GGUF" --backend cuda --context "$ctx" --trials "$trials" --seed 0 \
        --dump-tasks "$name.tasks.json" --json > "$name.ours.json"
    done
    python3 bench/hf_eval.py --model "$GGUF" "$OUT"/*.tasks.json 2>&1 | grep -v 'Converting\|Loading weights'
    ;;
  policies)
    # policies [CTX ...] (default 2048 8192); SMOLLM2_TESTS=0 skips the tests. Each eval's JSON has
    # accuracy, overlap_rate and attention_mass.
    mkdir -p "$(dirname "$GGUF")"
    mkdir -p "$STASH" && mv carry/gguf.part0* "$STASH"/ 2>/dev/null || true  # each call stashes the part it carried
    [ -f "$GGUF" ] || cat "$STASH"/gguf.part0* > "$GGUF"
    echo "$SHA256  $GGUF" | sha256sum -c -
    if [ "${SMOLLM2_TESTS:-1}" = 1 ]; then
      ctest --test-dir build-h200 -R 'SmolLM2|smollm2' --output-on-failure 2>&1 | grep -E 'SmolLM2|smollm2|Jaccard|h2d_bytes|tests passed|Failed|Passed' | tee "$OUT/smollm2_tests.txt"
    fi
    contexts=("${@:2}")
    [ ${#contexts[@]} -eq 0 ] && contexts=(2048 8192)
    for ctx in "${contexts[@]}"; do
      # specontext:embed feeds the head the embedding alone; specontext:pooled pools its scores
      # (bench/README.md, "Pooling the retrieval head's scores")
      BACKEND=cuda BIN=build-h200/specontext OUT="$OUT" GGUF="$GGUF" BATCH=8 BUDGETS="256 512 1024" \
        POLICIES="streaming oracle quest specontext specontext-batch specontext:embed specontext:pooled" \
        bench/eval_accuracy.sh "passkey:$ctx:20"
      mv "$OUT/accuracy_passkey-$ctx.jsonl" "$OUT/policies_$ctx.jsonl"
    done
    ;;
  accuracy)
    # The eval tasks beyond passkey per policy x budget on CUDA (issue 6's accuracy axis, normalised
    # to dense by the analysis), through bench/eval_accuracy.sh as on the CPU. Needs the GGUF
    # assembled by an earlier `policies` call in this warm session (or all four parts stashed).
    [ -f "$GGUF" ] || cat "$STASH"/gguf.part0* > "$GGUF"
    echo "$SHA256  $GGUF" | sha256sum -c -
    BACKEND=cuda BIN=build-h200/specontext OUT="$OUT" GGUF="$GGUF" BATCH=8 bench/eval_accuracy.sh \
      multikey:4096:10 vartrack:2048:16:--hops,1 perplexity:2048:6 fidelity:2048:6:--generate,64
    ;;
  *)
    echo "usage: scripts/gpu_model_pair.sh build|gpu-tests|goldens|train [train_draft.py flags]|evaluate|policies [CTX ...]|accuracy" >&2
    exit 2
    ;;
esac
