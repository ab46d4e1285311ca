#!/usr/bin/env python3
"""The long-context tasks through Hugging Face transformers, on the identical token ids our engine
runs, so that `specontext eval` and transformers can be put side by side (issue: the model pair's
acceptance — SmolLM2's passkey accuracy and held-out perplexity must agree between the two).

    specontext eval passkey --model M.gguf --context 8192 --trials 10 --dump-tasks X.tasks.json --json > X.ours.json
    python3 bench/hf_eval.py --model M.gguf X.tasks.json [Y.tasks.json ...] [--dtype bfloat16]
writes X.hf.json beside each X.tasks.json (the model loads once for all of them).

Task semantics follow engine/task_dump.hpp: answer tasks greedy-decode `max_new` tokens after the
prompt (stopping after an EOS) and are correct iff the first run of ASCII digits in the decoded
text is the answer;
perplexity scores each forced token by the logits after the prompt and the forced tokens before it
(one causal forward over prompt + forced: the same conditional distributions as decode steps);
fidelity is the share of forced tokens that are the argmax there. Where X.ours.json exists, the
per-trial outcomes are put beside ours.
"""
import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ANSWER_TASKS = ("passkey", "multikey", "vartrack")


def first_number(text):
    m = re.search(r"[0-9]+", text)
    return m.group(0) if m else ""


@torch.no_grad()
def greedy(model, ids, max_new, eos_ids):
    """At most max_new greedy tokens with the KV cache, stopping after the first EOS (as the engine)."""
    out, past, cur = [], None, ids
    for _ in range(max_new):
        step = model(cur, past_key_values=past, use_cache=True)
        past = step.past_key_values
        nxt = step.logits[0, -1].argmax()
        out.append(nxt.item())
        if out[-1] in eos_ids:
            break
        cur = nxt.view(1, 1)
    return out


@torch.no_grad()
def forced_scores(model, prompt, forced, device):
    """(sum of NLL, argmax matches) of the forced tokens after the prompt."""
    ids = torch.tensor([prompt + forced], device=device)
    logits = model(ids, use_cache=False).logits[0, len(prompt) - 1:-1].float()
    target = torch.tensor(forced, device=device)
    nll = torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
    return nll, (logits.argmax(-1) == target).sum().item()


def run(model, tokenizer, tasks, device):
    task = tasks["task"]
    trials = []
    for inst in tasks["instances"]:
        prompt = inst["prompt_ids"]
        if task in ANSWER_TASKS:
            generated = greedy(model, torch.tensor([prompt], device=device), tasks["max_new"], tasks["eos_ids"])
            text = tokenizer.decode(generated)
            trials.append({"trial": inst["trial"], "output": text, "answer": inst["answer"],
                           "correct": first_number(text) == inst["answer"]})
        else:
            nll, matches = forced_scores(model, prompt, inst["forced_ids"], device)
            n = len(inst["forced_ids"])
            trials.append({"trial": inst["trial"], "tokens": n, "mean_nll": nll / n,
                           "perplexity": math.exp(nll / n), "agreement": matches / n})
    summary = {"task": task, "context": tasks["context"], "trials": trials}
    if task in ANSWER_TASKS:
        summary["accuracy"] = sum(t["correct"] for t in trials) / len(trials)
    else:
        tokens = sum(t["tokens"] for t in trials)
        summary["mean_nll"] = sum(t["mean_nll"] * t["tokens"] for t in trials) / tokens
        summary["perplexity"] = math.exp(summary["mean_nll"])
        summary["agreement"] = sum(t["agreement"] * t["tokens"] for t in trials) / tokens
    return summary


def compare(ours, hf):
    """Per-trial agreement between the engine's --json and this script's results."""
    by_trial = {t["trial"]: t for t in ours["trials"]}
    rows = []
    for t in hf["trials"]:
        o = by_trial.get(t["trial"], {})
        if "correct" in t:
            rows.append({"trial": t["trial"], "ours": o.get("correct"), "hf": t["correct"],
                         "ours_output": o.get("output"), "hf_output": t["output"]})
        else:
            key = "perplexity" if ours["task"] == "perplexity" else "agreement"
            rows.append({"trial": t["trial"], "ours": o.get(key), "hf": t[key]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a .gguf file (needs the gguf package) or a HF folder")
    ap.add_argument("tasks", nargs="+", help="X.tasks.json files from specontext eval --dump-tasks")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    path = Path(args.model)
    kw = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    folder = path.parent if path.suffix == ".gguf" else path
    tokenizer = AutoTokenizer.from_pretrained(folder, **kw)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, args.dtype), attn_implementation="sdpa",
                                                 **kw).to(args.device).eval()
    for tasks_file in args.tasks:
        if not tasks_file.endswith(".tasks.json"):
            raise SystemExit(f"{tasks_file}: expected a name ending in .tasks.json")
        tasks = json.loads(Path(tasks_file).read_text())
        t0 = time.time()
        result = run(model, tokenizer, tasks, args.device)
        result.update({"engine": "transformers", "dtype": args.dtype, "seconds": round(time.time() - t0, 2),
                       "generator": f"transformers {transformers.__version__}, torch {torch.__version__}"})
        ours_file = Path(tasks_file.replace(".tasks.json", ".ours.json"))
        if ours_file.exists():
            result["compared_with_ours"] = compare(json.loads(ours_file.read_text()), result)
        Path(tasks_file.replace(".tasks.json", ".hf.json")).write_text(json.dumps(result, indent=1) + "\n")
        keys = [k for k in ("accuracy", "perplexity", "agreement") if k in result]
        print(tasks_file, json.dumps({k: result[k] for k in ["task", "context"] + keys}), file=sys.stderr)

if __name__ == "__main__":
    main()
