#!/usr/bin/env python3
"""Our engine's `specontext eval` results beside transformers' on the identical tasks
(X.ours.json and X.hf.json pairs, as scripts/gpu_model_pair.sh evaluate writes them), as a Markdown
table and a JSON summary: per task the metric of each, and how many trials agree.

    python3 bench/compare_eval.py DIR [--json OUT.json] [--label TEXT]
"""
import argparse
import glob
import json
import os
import sys


def summarise(ours, hf):
    row = {"task": ours["task"], "context": ours["context"], "trials": len(hf["trials"]),
           "backend": ours["backend"], "hf_dtype": hf["dtype"]}
    pairs = hf["compared_with_ours"]
    if "accuracy" in hf:
        row.update(metric="accuracy", ours=ours["accuracy"], hf=hf["accuracy"],
                   trials_agreeing=sum(p["ours"] == p["hf"] for p in pairs))
    else:
        row.update(metric="perplexity", ours=ours["pooled_perplexity"], hf=hf["perplexity"],
                   max_trial_rel_diff=max(abs(p["ours"] - p["hf"]) / p["hf"] for p in pairs))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    for hf_file in sorted(glob.glob(os.path.join(args.dir, "*.hf.json"))):
        ours_file = hf_file.replace(".hf.json", ".ours.json")
        if not os.path.exists(ours_file):
            sys.exit(f"{ours_file}: missing beside {hf_file}")
        with open(ours_file) as o, open(hf_file) as h:
            rows.append(summarise(json.load(o), json.load(h)))
    if not rows:
        sys.exit(f"{args.dir}: no *.hf.json files")
    print("| task | context | trials | metric | specontext | transformers | agreement |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        agree = (f"{r['trials_agreeing']}/{r['trials']} trials" if "trials_agreeing" in r
                 else f"per-trial ≤ {100 * r['max_trial_rel_diff']:.2f}%")
        print(f"| {r['task']} | {r['context']} | {r['trials']} | {r['metric']} | {r['ours']:.4g} | {r['hf']:.4g} | {agree} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
