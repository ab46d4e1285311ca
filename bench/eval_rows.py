#!/usr/bin/env python3
"""Collect `specontext eval --json` outputs (JSON lines or concatenated JSON objects) into the
accuracy table `specontext reproduce` copies for its figures (configs/reproduce.json "accuracy";
analysis/attention.py reads it):

    python3 bench/eval_rows.py --what "..." --command "..." --machine "..." runs.jsonl > table.json

Each row: policy, budget, head_input, head_pooling, context, task, metric, accuracy (answer tasks: the fraction
correct; fidelity: the mean agreement with the dense model; perplexity: dense perplexity / this
perplexity, so 1 is dense and lower is worse, filled in once the file's dense row is known),
overlap_rate, attention_mass, backend, seed, trials (the count). A file that is not eval output stops
with a message naming it and the field.
"""

import argparse
import json
import sys


def read_objects(path):
    text = open(path, encoding="utf-8").read()
    decoder = json.JSONDecoder()
    i, out = 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            sys.exit("%s: not JSON at character %d: %s" % (path, i, e.msg))
        out.append(obj)


def row(path, j):
    for key in ("task", "policy", "context", "metric", "backend", "seed", "trials"):
        if key not in j:
            sys.exit("%s: field '%s' missing: not `specontext eval --json` output" % (path, key))
    metric = j["metric"]
    if "accuracy" in j:
        value = j["accuracy"]
    elif "agreement" in j:
        value = j["agreement"]["mean"]
    elif "perplexity" in j:
        value = None  # dense / this, below
    else:
        sys.exit("%s: no accuracy, agreement or perplexity in a %s row" % (path, j["task"]))
    return {"policy": j["policy"], "budget": j["budget"], "head_input": j.get("head_input"),
            "head_pooling": j.get("head_pooling"), "context": j["context"],
            "task": j["task"], "metric": metric, "accuracy": value,
            "perplexity": j["perplexity"]["mean"] if "perplexity" in j else None,
            "overlap_rate": j.get("overlap_rate"), "attention_mass": j.get("attention_mass"),
            "backend": j["backend"], "seed": j["seed"], "trials": len(j["trials"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--what", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--machine", required=True)
    a = ap.parse_args(argv)
    rows = [row(p, j) for p in a.files for j in read_objects(p)]
    for r in rows:
        if r["perplexity"] is not None:
            dense = [d["perplexity"] for d in rows if d["policy"] == "full" and d["task"] == r["task"] and d["context"] == r["context"]]
            r["accuracy"] = dense[0] / r["perplexity"] if dense and r["perplexity"] else None
    json.dump({"what": a.what, "command": a.command, "machine": a.machine, "rows": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
