#!/usr/bin/env python3
"""The tables of bench/head_pooling_study.sh's outputs (bench/README.md shows them).

usage: head_pooling_table.py DIR [--budgets 64,128,256,512,1024] [--policy specontext]

Table 1: per task and pooling variant, the LLM attention mass the head's budget-B set captures (mean
over steps, layers and KV heads) and the overlap of adjacent steps' sets, from replay_<task>_<v>.json.
Table 2: passkey accuracy, attention mass and overlap of sparse decoding, from eval_passkey_<v>_b<B>_s<seed>.json
(summed over the seeds), beside dense accuracy on the same trials (eval_passkey_full_s<seed>.json).
Missing files are reported on stderr and left out; a directory with none of either is an error.
"""
import argparse
import glob
import json
import os
import re
import sys

VARIANTS = ["none", "max3", "mean3", "mean3-recent32"]
FLAGS = {"none": "none (the paper)", "max3": "max:3", "mean3": "mean:3", "mean3-recent32": "mean:3, recent 32"}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: {e}")


def variant_docs(d, pattern):
    """(variant, document) for each variant whose file exists (pattern formats {v}); missing ones on stderr."""
    for v in VARIANTS:
        path = os.path.join(d, pattern.format(v=v))
        if os.path.exists(path):
            yield v, load(path)
        else:
            print(f"{path}: missing", file=sys.stderr)


def replay_table(d, budgets, policy):
    tasks = sorted({re.match(r"replay_([a-z]+)_", os.path.basename(p)).group(1) for p in glob.glob(os.path.join(d, "replay_*_*.json"))})
    if not tasks:
        return None
    head = "| task | pooling | " + " | ".join(f"mass B={b}" for b in budgets) + " | " + " | ".join(f"overlap B={b}" for b in budgets) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(budgets))]
    for task in tasks:
        for v, j in variant_docs(d, f"replay_{task}_{{v}}.json"):
            rows = {r["budget"]: r for r in j["results"] if r["policy"] == policy}
            trials = j["trace"]["requests"]
            mass = [f"{rows[b]['recall']['mean']:.3f}" if b in rows else "" for b in budgets]
            overlap = [f"{rows[b]['overlap']:.2f}" if b in rows and rows[b]["overlap"] is not None else "" for b in budgets]
            lines.append(f"| {task} ({trials}) | {FLAGS[v]} | " + " | ".join(mass) + " | " + " | ".join(overlap) + " |")
    return "\n".join(lines)


def eval_table(d):
    files = glob.glob(os.path.join(d, "eval_passkey_*_s*.json"))
    if not files:
        return None
    budgets = sorted({int(m.group(1)) for p in files for m in [re.search(r"_b(\d+)_s\d+\.json$", p)] if m})
    seeds = sorted({int(re.search(r"_s(\d+)\.json$", p).group(1)) for p in files})
    lines = ["| policy | pooling | B | accuracy | correct | attention mass | overlap |", "|---|---|---:|---:|---:|---:|---:|"]

    def row(label, pooling, budget, docs):
        trials = sum(len(j["trials"]) for j in docs)
        correct = sum(j["correct"] for j in docs)
        mean = lambda k: sum(j[k] * len(j["trials"]) for j in docs) / trials if all(j.get(k) is not None for j in docs) else None
        mass, overlap = mean("attention_mass"), mean("overlap_rate")
        lines.append(f"| {label} | {pooling} | {budget} | {correct / trials:.2f} | {correct}/{trials} | " +
                     (f"{mass:.3f}" if mass is not None else "—") + " | " + (f"{overlap:.3f}" if overlap is not None else "—") + " |")

    dense = [load(p) for s in seeds for p in [os.path.join(d, f"eval_passkey_full_s{s}.json")] if os.path.exists(p)]
    if dense:
        row("full (dense)", "", "", dense)
    for b in budgets:
        for v in VARIANTS:
            docs = [load(p) for s in seeds for p in [os.path.join(d, f"eval_passkey_{v}_b{b}_s{s}.json")] if os.path.exists(p)]
            if len(docs) < len(seeds):
                print(f"{d}: eval_passkey_{v}_b{b}: {len(docs)} of {len(seeds)} seeds", file=sys.stderr)
            if docs:
                row("specontext", FLAGS[v], b, docs)
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--budgets", default="64,128,256,512,1024")
    ap.add_argument("--policy", default="specontext", help="specontext (head-level) or specontext-batch")
    a = ap.parse_args(argv)
    budgets = [int(b) for b in a.budgets.split(",")]
    t1, t2 = replay_table(a.dir, budgets, a.policy), eval_table(a.dir)
    if t1 is None and t2 is None:
        raise SystemExit(f"{a.dir}: no replay_*.json or eval_passkey_*.json (bench/head_pooling_study.sh writes them)")
    for t in (t1, t2):
        if t:
            print(t + "\n")


if __name__ == "__main__":
    main()
