#!/usr/bin/env python3
"""Distil the EAGLE-3 draft of SmolLM2-135M-Instruct (the distilled LM SpeContext's retrieval head is
built from) on the GPU machine, with fixed seeds, in one command of at most 10 minutes.

Per step: windows of the training token stream go through the frozen LLM (bf16), which yields the
features the draft is fed (the residual streams entering layers 2, 15 and 27: EAGLE-3's low/middle/
high choice) and its next-token distribution; the draft (embedding of token t+1 ⊕ fc(features at t))
predicts the LLM's distribution at t+1, restricted to the draft vocabulary and renormalised; the
loss is the cross-entropy to it (the KL divergence up to the LLM's constant entropy). Windows are
2,048 tokens for the first part of the run and 8,192 (the LLM's whole context) for the rest, with
the same number of tokens per step. One-step prediction only: EAGLE-3's multi-step "training-time
test" unrolling serves multi-token drafting, which SpeContext does not use.

Usage (GPU machine, repository root; the corpus from models/train/build_corpus.py, the GGUF from
scripts/fetch_smollm2.sh, the wheels from scripts/fetch_gpu_wheels.sh):
    python3 models/train/train_draft.py --out models/smollm2-eagle3
See models/train/README.md for the recipe's numbers and models/smollm2-eagle3/ for the logs.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_tokens import (  # noqa: E402
    CORPUS, document_windows, read_documents, sample_windows, token_stream, tokenize_documents)
from eagle3_draft import Eagle3Draft, default_aux_layer_ids, draft_config, parameter_bytes, save_draft  # noqa: E402
from evaluate_draft import evaluate  # noqa: E402
from teacher import load_teacher, teacher_forward  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models/smollm2-eagle3")
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--time-budget", type=float, default=420.0,
                    help="seconds of training after which the run stops early (and says so in the log)")
    ap.add_argument("--tokens-per-step", type=int, default=32768)
    ap.add_argument("--short-len", type=int, default=2048)
    ap.add_argument("--long-len", type=int, default=8192)
    ap.add_argument("--long-fraction", type=float, default=0.3, help="share of the steps at --long-len (last)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--draft-vocab", type=int, default=8192)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--val-every", type=int, default=200)
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    return ap.parse_args()


def learning_rate(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def draft_vocabulary(stream, vocab, size):
    """The `size` most frequent target ids in the training stream (ties: lower id), ascending."""
    counts = np.bincount(stream.astype(np.int64), minlength=vocab)
    order = np.lexsort((np.arange(vocab), -counts))[:size]
    covered = counts[order].sum() / counts.sum()
    return np.sort(order), float(covered)


def distillation_loss(draft, teacher, ids, aux_ids, draft_ids):
    """Cross-entropy of the draft to the LLM's next-token distribution over the draft vocabulary, and
    the share of positions where their argmaxes agree."""
    features, logits, _ = teacher_forward(teacher, ids, aux_ids)
    embeds = teacher.get_input_embeddings()(ids[:, 1:])
    with torch.autocast(ids.device.type, dtype=torch.bfloat16):
        dl = draft(embeds, features[:, :-1])
    target = logits[:, 1:, draft_ids].float().softmax(-1)
    log_q = dl.float().log_softmax(-1)
    loss = -(target * log_q).sum(-1).mean()
    agree = (dl.argmax(-1) == target.argmax(-1)).float().mean()
    return loss, agree


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    device = args.device
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    t_start = time.time()
    tokenizer, teacher = load_teacher(device)
    cfg_t = teacher.config
    aux_ids = default_aux_layer_ids(cfg_t.num_hidden_layers)
    stream = token_stream(tokenizer, "train", args.seed, args.corpus)
    draft_vocab_ids, covered = draft_vocabulary(stream, cfg_t.vocab_size, args.draft_vocab)
    cfg = draft_config(cfg_t, args.draft_vocab, aux_ids)
    draft = Eagle3Draft(cfg)
    draft.init_weights(torch.Generator().manual_seed(args.seed))
    draft.set_vocabulary(draft_vocab_ids)
    draft = draft.to(device)
    draft_ids = torch.as_tensor(draft_vocab_ids, device=device)
    optimizer = torch.optim.AdamW(draft.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    heldout_ids = tokenize_documents(tokenizer, read_documents("heldout", args.corpus))  # once, for both uses
    val_windows = document_windows(heldout_ids, args.short_len, 4).to(device)
    print(f"setup {time.time() - t_start:.1f} s: {len(stream):,} training tokens, draft vocabulary covers "
          f"{covered:.2%} of them, draft {parameter_bytes(draft) / 2**20:.1f} MiB in bf16", flush=True)

    gen = torch.Generator().manual_seed(args.seed + 1)
    curve, val_curve = [], []
    t0 = time.time()
    stopped_by = "steps"
    tokens_seen = 0
    long_from = int(args.steps * (1 - args.long_fraction))
    step = 0
    for step in range(args.steps):
        if time.time() - t0 > args.time_budget:
            stopped_by = "time"
            break
        length = args.long_len if step >= long_from else args.short_len
        ids = sample_windows(stream, length, max(1, args.tokens_per_step // length), gen).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        loss, agree = distillation_loss(draft, teacher, ids, aux_ids, draft_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
        optimizer.step()
        tokens_seen += ids.numel()
        if step % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.time() - t0
            curve.append({"step": step, "len": length, "loss": round(loss.item(), 4),
                          "top1": round(agree.item(), 4), "grad_norm": round(grad_norm.item(), 3),
                          "lr": learning_rate(step, args), "tokens": tokens_seen, "seconds": round(elapsed, 1)})
            print(json.dumps(curve[-1]), flush=True)
        if step % args.val_every == 0 or step == args.steps - 1:
            with torch.no_grad():
                vloss, vagree = distillation_loss(draft, teacher, val_windows, aux_ids, draft_ids)
            val_curve.append({"step": step, "loss": round(vloss.item(), 4), "top1": round(vagree.item(), 4)})
            print("val", json.dumps(val_curve[-1]), flush=True)
    steps_done = step + (stopped_by == "steps")
    train_seconds = time.time() - t0
    save_draft(draft.cpu(), args.out)
    draft = draft.to(device).eval()
    log = {
        "args": vars(args),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "training_tokens_in_corpus": int(len(stream)),
        "draft_vocab_coverage": covered,
        "aux_layer_ids": aux_ids,
        "steps_done": steps_done,
        "stopped_by": stopped_by,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_seconds, 1),
        "tokens_per_second": round(tokens_seen / train_seconds),
        "draft_bytes": parameter_bytes(draft),
        "curve": curve,
        "validation": val_curve,
    }
    out = Path(args.out)
    (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"trained {steps_done} steps ({tokens_seen:,} tokens) in {train_seconds:.0f} s, stopped by {stopped_by}",
          flush=True)
    if not args.no_eval:
        metrics = evaluate(draft, teacher, tokenizer, aux_ids, device, heldout_ids)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps(metrics, indent=2), flush=True)
    print(f"total {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
