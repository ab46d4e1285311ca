#!/usr/bin/env python3
"""Collect bench/pareto_engine.sh's `specontext bench --json` outputs (one policy x budget each)
into the measured-throughput table `specontext reproduce` reads for the accuracy-vs-throughput
Pareto fronts (configs/reproduce.json "engine_pareto"; analysis/engine_pareto.py):

    python3 bench/engine_pareto_rows.py --what "..." --command "..." OUT/pareto_*.json > table.json

Each row: policy, budget (None for full), depth, requests, median_ms, min_ms, max_ms, tokens_per_s,
overlap (the measured overlap of the synthetic selection stream, None for the policy's own),
selection (bench's description of it), offloaded_layers, gpu. A file that is not bench output, or a
point that did not fit, stops with a message naming the file and the field.
"""

import argparse
import json
import sys


def need(path, obj, key, where=""):
    if key not in obj:
        sys.exit("%s: field '%s%s' missing: not `specontext bench --json` output" % (path, where, key))
    return obj[key]


def rows_of(path):
    try:
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("%s: cannot read: %s" % (path, e))
    if not isinstance(j, dict):
        sys.exit("%s: expected a JSON object (`specontext bench --json`)" % path)
    policy = need(path, j, "policy")
    out = []
    for i, p in enumerate(need(path, j, "points")):
        where = "points[%d]." % i
        if not need(path, p, "fits", where):
            sys.exit("%s: field '%sfits' is false: the point did not fit in GPU memory" % (path, where))
        out.append({"policy": policy, "budget": j.get("budget") if policy != "full" else None,
                    "depth": need(path, p, "depth", where), "requests": need(path, p, "requests", where),
                    "median_ms": need(path, p, "median_ms", where), "min_ms": need(path, p, "min_ms", where),
                    "max_ms": need(path, p, "max_ms", where), "tokens_per_s": need(path, p, "tokens_per_s", where),
                    "overlap": p.get("synthetic_overlap"), "selection": j.get("selection", ""),
                    "offloaded_layers": p.get("offloaded_layers", 0), "gpu": j.get("gpu", "")})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--what", required=True)
    ap.add_argument("--command", required=True)
    a = ap.parse_args(argv)
    rows = [r for p in a.files for r in rows_of(p)]
    gpus = sorted({r["gpu"] for r in rows})
    json.dump({"what": a.what, "command": a.command, "machine": ", ".join(gpus), "rows": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
