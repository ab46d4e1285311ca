#!/usr/bin/env python3
"""The kernels of a `specontext profile` Chrome trace by name: launches, total and mean duration.

    specontext profile --out run.json -- bench --model llama-3.1-8b --random-weights --requests 1 --depth 2048 --steps 8 --reps 1
    python3 bench/kernel_table.py run.json [--top 25]

Counts the whole trace (engine set-up, prefill, warm-up and timed steps alike), so compare kernels
by their mean duration, or two runs of the same command; a graph run's kernels are listed too, which
is what the per-range breakdown cannot give without --no-graph. Names drop their parameter lists
and anonymous namespaces. A file without kernel events stops with a message naming it.
"""
import argparse
import collections
import sys

from json_file import read_json


def kernel_rows(path):
    doc = read_json(path, "kernel_table.py")
    events = doc.get("traceEvents", []) if isinstance(doc, dict) else doc
    total, launches = collections.Counter(), collections.Counter()
    for e in events:
        if isinstance(e, dict) and e.get("cat") == "kernel" and e.get("ph") == "X":
            if not isinstance(e.get("name"), str) or not isinstance(e.get("dur"), (int, float)):
                sys.exit(f"kernel_table.py: {path}: a kernel event without a name or a duration: {e}")
            name = e["name"].replace("(anonymous namespace)::", "").split("(")[0]
            total[name] += e["dur"]
            launches[name] += 1
    if not launches:
        sys.exit(f"kernel_table.py: {path}: no kernel events (cat 'kernel', ph 'X'); is it a specontext profile trace?")
    return total, launches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", help="a specontext profile --out file")
    ap.add_argument("--top", type=int, default=25, help="kernels listed, by total time")
    args = ap.parse_args()
    total, launches = kernel_rows(args.trace)
    print("| kernel | launches | total ms | mean µs |")
    print("|---|---:|---:|---:|")
    for name, us in total.most_common(args.top):
        print(f"| {name} | {launches[name]} | {us / 1000:.3f} | {us / launches[name]:.2f} |")


if __name__ == "__main__":
    main()
