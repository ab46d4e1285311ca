#!/usr/bin/env python3
"""How good the draft is, on held-out documents: as a draft (top-1 agreement with the LLM) and as the
retrieval head SpeContext needs (the share of the LLM's attention its selections capture).

Attention mass captured (the paper's Tables 1–2 in spirit): for a decode query at LLM position p, the
LLM's attention in layer l, KV head g is a_{l,g} (the mean over the group's query heads of the causal
softmax over positions 0..p). A policy selects B positions per KV head; captured = Σ_{i∈S} a_{l,g,i}.
  * `draft-head`:  the draft's attention at its position p−1 (it sees token p's embedding and the
    LLM's features of position p−1, exactly the retrieval head's input at that decode step), max over
    the group's query heads, top-B per KV head (head-level selection).
  * `draft-batch`: the same scores, max over all heads: one set shared by every head (batch-level).
  * `oracle`:      the LLM's own top-B per layer and head (the upper bound).
  * `streaming`:   4 sink tokens and the most recent B−4.
Draft key j is computed from token j+1's embedding, so it stands for LLM position j+1 (alignment
`next`, the default); position 0 (no draft key of its own) is always kept, as the sink it is. The
alternative reading, draft key j for LLM position j (alignment `same`), is measured beside it.

Usage (GPU machine, repository root):
    python3 models/train/evaluate_draft.py --draft models/smollm2-eagle3 --out metrics.json
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_tokens import document_windows, read_documents, tokenize_documents  # noqa: E402
from eagle3_draft import causal_softmax_rows, load_draft  # noqa: E402
from teacher import layer_attention_rows, load_teacher, teacher_forward  # noqa: E402

BUDGETS = (256, 512, 1024, 2048)
SINKS = 4


@torch.no_grad()
def top1_agreement(draft, teacher, windows, aux_ids, device):
    """Fraction of positions where the draft's argmax (as a target id) is the LLM's argmax of the next
    position, and the draft's cross-entropy against the LLM's distribution over the draft vocabulary."""
    d2t = draft.draft_to_target_ids()
    agree = total = 0
    ce_sum = 0.0
    for ids in windows.split(1):
        ids = ids.to(device)
        features, logits, _ = teacher_forward(teacher, ids, aux_ids)
        embeds = teacher.get_input_embeddings()(ids[:, 1:])
        with torch.autocast(ids.device.type, dtype=torch.bfloat16):
            dl = draft(embeds, features[:, :-1]).float()
        target_next = logits[:, 1:].float()
        agree += (d2t[dl.argmax(-1)] == target_next.argmax(-1)).sum().item()
        total += dl.shape[0] * dl.shape[1]
        p = target_next[..., d2t].softmax(-1)
        ce_sum += -(p * dl.log_softmax(-1)).sum(-1).sum().item()
    return {"top1_agreement": agree / total, "draft_ce": ce_sum / total, "positions": total}


def select_topk(scores, budget, length):
    """scores [..., L] -> bool mask [..., L] of the top-`budget` positions (all when budget ≥ L)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if budget >= length:
        return ~mask
    return mask.scatter(-1, scores.topk(budget, dim=-1).indices, True)


def draft_scores(draft, teacher, ids, features, query_positions, alignment):
    """Per draft query head, scores over LLM positions 0..L-1 for each LLM query position p."""
    embeds = teacher.get_input_embeddings()(ids[:, 1:])
    q, k = draft.retrieval_qk(embeds.float(), features[:, :-1].float())
    dpos = [p - 1 for p in query_positions]
    probs = causal_softmax_rows(q[:, :, dpos], k, dpos)  # [1, heads, Q, L-1] over draft keys
    if alignment == "next":  # draft key j -> LLM position j+1; position 0 always kept
        keep0 = torch.full_like(probs[..., :1], float("inf"))
        return torch.cat((keep0, probs), dim=-1)
    return torch.cat((probs, torch.zeros_like(probs[..., :1])), dim=-1)  # draft key j -> LLM position j


def mass_captured(draft, teacher, windows, aux_ids, queries, budgets, device):
    policies = ("draft-head", "draft-head-same", "draft-batch", "oracle", "streaming")
    sums = {p: {b: [] for b in budgets} for p in policies}
    cfg = teacher.config
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    if len(windows) == 0:
        return None
    for ids in windows.split(1):
        ids = ids.to(device)
        length = ids.shape[1]
        qpos = list(range(length - queries, length))
        features, _, hidden = teacher_forward(teacher, ids, aux_ids)
        scores = {}
        for alignment in ("next", "same"):
            s = draft_scores(draft, teacher, ids, features, qpos, alignment)[0]  # [heads, Q, L]
            s = s.view(cfg.num_key_value_heads, group, queries, length).amax(1)  # max over each group
            scores[alignment] = s
        batch_scores = scores["next"].amax(0, keepdim=True).expand_as(scores["next"])
        positions = torch.arange(length, device=device).float()
        recency = positions.expand(queries, length).clone()
        recency[positions[None, :] > torch.tensor(qpos, device=device)[:, None].float()] = float("-inf")
        recency[:, :SINKS] = float("inf")
        for layer in range(cfg.num_hidden_layers):
            a = layer_attention_rows(teacher, hidden, layer, qpos)[0]  # [heads, Q, L]
            a = a.view(cfg.num_key_value_heads, group, queries, length).mean(1)
            for b in budgets:
                chosen = {
                    "draft-head": select_topk(scores["next"], b, length),
                    "draft-head-same": select_topk(scores["same"], b, length),
                    "draft-batch": select_topk(batch_scores, b, length),
                    "oracle": select_topk(a, b, length),
                    "streaming": select_topk(recency.expand_as(a), b, length),
                }
                for p, mask in chosen.items():
                    sums[p][b].append((a * mask).sum(-1).flatten())
    out = {}
    for p in policies:
        out[p] = {}
        for b in budgets:
            v = torch.cat(sums[p][b])
            out[p][str(b)] = {"mean": v.mean().item(), "p10": v.quantile(0.1).item(), "min": v.min().item()}
    return out


def evaluate(draft, teacher, tokenizer, aux_ids, device, heldout_ids=None):
    """heldout_ids: the held-out documents as token id lists (tokenized here when not given)."""
    if heldout_ids is None:
        heldout_ids = tokenize_documents(tokenizer, read_documents("heldout"))
    t0 = time.time()
    result = {"agreement_2k": top1_agreement(draft, teacher, document_windows(heldout_ids, 2048, 24), aux_ids, device)}
    for length, count in ((2048, 12), (8192, 6)):
        w = document_windows(heldout_ids, length, count)
        result[f"attention_mass_{length}"] = {
            "windows": len(w), "queries_per_window": 8,
            "budgets": mass_captured(draft, teacher, w, aux_ids, 8, [b for b in BUDGETS if b < length], device),
        }
    result["eval_seconds"] = time.time() - t0
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draft", default="models/smollm2-eagle3")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tokenizer, teacher = load_teacher(args.device)  # bf16, as in training
    draft = load_draft(args.draft, args.device).eval()
    metrics = evaluate(draft, teacher, tokenizer, draft.cfg["eagle_aux_hidden_state_layer_ids"], args.device)
    Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
