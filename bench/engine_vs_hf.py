#!/usr/bin/env python3
"""The engine's decode step beside Hugging Face transformers' at the same points (bench/engine_vs_hf.sh
runs both in one call and then this):

    python3 bench/engine_vs_hf.py ENGINE.json [ENGINE2.json ...] --hf HF.json [--json]

ENGINE.json are `specontext bench --json` runs (one per round), HF.json one `bench/hf_baseline.py
--json` run. Per (R, depth) of the engine's runs: the engine's median over the rounds of each round's
median ms/step, the min-max over every repetition (bench_rounds.py), its share of the HBM roofline
and tokens/s; then each attention implementation of the HF run, its median ms/step and min-max over
its repetitions, or "out of memory"; then each one's step over the engine's (how many times faster
the engine is). The engine's runs and the HF run must name the same GPU: figures from two machines
are not a comparison. A file that is not the right output, or a GPU mismatch, stops with a message
naming the file.
"""

import argparse
import json
import sys

from bench_rounds import cell, read_round
from json_file import read_json

TOOL = "engine_vs_hf.py"


def read_hf(path):
    doc = read_json(path, TOOL)
    points = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(points, list) or "gpu" not in doc:
        sys.exit("%s: %s: not `bench/hf_baseline.py --json` output (no 'gpu' and 'points')" % (TOOL, path))
    by_point = {}
    for p in points:
        for field in ("attn", "requests", "depth", "status"):
            if field not in p:
                sys.exit("%s: %s: a point has no '%s'" % (TOOL, path, field))
        if p["status"] == "ok" and not ("median_ms" in p and "spread_ms" in p):
            sys.exit("%s: %s: an 'ok' point has no 'median_ms' and 'spread_ms'" % (TOOL, path))
        by_point[(p["requests"], p["depth"], p["attn"])] = p
    attns = list(dict.fromkeys(p["attn"] for p in points))
    return by_point, attns, doc


def rows(engine_paths, hf_path):
    rounds, gpus = [], set()
    for path in engine_paths:
        by_point, doc = read_round(path, TOOL)
        rounds.append(by_point)
        gpus.add(doc.get("gpu"))
    if len(gpus) != 1:
        sys.exit("%s: the engine's runs name different GPUs (%s)" % (TOOL, ", ".join(sorted(map(str, gpus)))))
    gpu = gpus.pop()
    hf, attns, hf_doc = read_hf(hf_path)
    if hf_doc["gpu"] != gpu:
        sys.exit("%s: %s ran on '%s', the engine's runs on '%s': not one machine" % (TOOL, hf_path, hf_doc["gpu"], gpu))
    out = []
    for key in sorted({k for r in rounds for k in r}):
        e = cell(rounds, key)
        row = {"requests": key[0], "depth": key[1], "engine_ms": e["median"], "engine_min_ms": e["min"],
               "engine_max_ms": e["max"], "roofline_pct": 100.0 * e["roofline_ms"] / e["median"],
               "tokens_per_s": key[0] * 1000.0 / e["median"], "rounds": e["rounds"], "hf": {}}
        for attn in attns:
            p = hf.get((key[0], key[1], attn))
            if p is None:
                continue
            if p["status"] != "ok":
                row["hf"][attn] = {"status": p["status"]}
            else:
                row["hf"][attn] = {"status": "ok", "median_ms": p["median_ms"], "spread_ms": p["spread_ms"],
                                   "engine_speedup": p["median_ms"] / e["median"]}
        out.append(row)
    return gpu, attns, hf_doc, out


def print_table(gpu, attns, hf_doc, out):
    print("%s; transformers %s, torch %s" % (gpu, hf_doc.get("transformers", "?"), hf_doc.get("torch", "?")))
    head = ["R", "depth", "engine ms (min–max)", "% of roofline", "tokens/s"]
    head += ["HF %s ms (min–max)" % a for a in attns] + ["× %s" % a for a in attns] + ["rounds"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for r in out:
        cells = [str(r["requests"]), "{:,}".format(r["depth"]),
                 "%.3f (%.3f–%.3f)" % (r["engine_ms"], r["engine_min_ms"], r["engine_max_ms"]),
                 "%.1f%%" % r["roofline_pct"], "{:,.0f}".format(r["tokens_per_s"])]
        for a in attns:
            h = r["hf"].get(a)
            if h is None:
                cells.append("—")
            elif h["status"] != "ok":
                cells.append("out of memory" if h["status"] == "oom" else h["status"])
            else:
                cells.append("%.1f (%.1f–%.1f)" % (h["median_ms"], h["spread_ms"][0], h["spread_ms"][1]))
        for a in attns:
            h = r["hf"].get(a)
            cells.append("%.1f×" % h["engine_speedup"] if h and h["status"] == "ok" else "—")
        cells.append(str(r["rounds"]))
        print("| " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", nargs="+", help="`specontext bench --json` files, one per round")
    ap.add_argument("--hf", required=True, help="`bench/hf_baseline.py --json` file of the same machine")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    gpu, attns, hf_doc, out = rows(args.engine, args.hf)
    if args.json:
        print(json.dumps({"gpu": gpu, "transformers": hf_doc.get("transformers"), "torch": hf_doc.get("torch"),
                          "attn": attns, "points": out}, indent=1))
    else:
        print_table(gpu, attns, hf_doc, out)


if __name__ == "__main__":
    main()
