#!/usr/bin/env python3
"""What each kernel adds to a decode step, from a `specontext profile` Chrome trace.

    specontext profile --out run.json -- bench --model llama-3.1-8b --random-weights --requests 8 --depth 8192 --steps 8 --reps 1
    python3 bench/step_increments.py run.json [--skip 1] [--after] [--grid]

Under programmatic dependent launch a kernel starts (and is timed from) while the one before it
still runs, so kernel durations overlap and do not add up to the step (bench/kernel_table.py
shows them). This script orders each step's kernels by their end time and charges every kernel
the time from the previous kernel's end to its own: the increments add up to the step's GPU span
(from its first kernel's start), whatever overlaps. A kernel that waits on the one before it is
charged only for what it adds after that one ends, and launch gaps go to the kernel after them.
Steps are the kernels' NVTX ranges "step N/..." (a run with --steps S --reps K has S*K timed steps
plus warm-up); --skip drops the first steps. Names are the bare function names (no namespace, template or parameter list);
--after names each kernel with the one that ends before it too ("small_gemm_kernel after
decode_merge_kernel" is the O projection), since one kernel often serves several roles; --grid adds
each kernel's grid, which tells apart projections of one kernel after the same one (QKV and gate_up
both follow a norm; at R = 1, 8B their small_gemm grids are 384 and 1792 blocks).
"""
import argparse
import collections
import re
import sys

from json_file import read_json

STEP = re.compile(r"^step (\d+)(/|$)")


def step_kernels(path, with_grid=False):
    doc = read_json(path, "step_increments.py")
    events = doc.get("traceEvents", []) if isinstance(doc, dict) else doc
    steps = collections.defaultdict(list)
    for e in events:
        if not (isinstance(e, dict) and e.get("cat") == "kernel" and e.get("ph") == "X"):
            continue
        nvtx = (e.get("args") or {}).get("nvtx", "")
        m = STEP.match(nvtx) if isinstance(nvtx, str) else None
        if not m:
            continue
        if not isinstance(e.get("ts"), (int, float)) or not isinstance(e.get("dur"), (int, float)) or not isinstance(e.get("name"), str):
            sys.exit(f"step_increments.py: {path}: a kernel event without ts, dur or name: {e}")
        name = e["name"].replace("(anonymous namespace)::", "").split("(")[0].split("<")[0].split("::")[-1]
        if with_grid:
            grid = (e.get("args") or {}).get("grid")
            if not isinstance(grid, list):
                sys.exit(f"step_increments.py: {path}: --grid, but a kernel event has no grid: {e}")
            name += " [" + ",".join(str(g) for g in grid) + "]"
        steps[int(m.group(1))].append((e["ts"], e["ts"] + e["dur"], name))
    if not steps:
        sys.exit(f"step_increments.py: {path}: no kernel events inside 'step N' NVTX ranges; is it a specontext profile trace of bench or generate?")
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", help="a specontext profile --out file")
    ap.add_argument("--skip", type=int, default=1, help="first steps left out (warm-up), default 1")
    ap.add_argument("--after", action="store_true", help="label each kernel with the kernel that ends before it")
    ap.add_argument("--grid", action="store_true", help="add each kernel's grid to its name")
    args = ap.parse_args()
    steps = step_kernels(args.trace, args.grid)
    kept = sorted(steps)[args.skip:]
    if not kept:
        sys.exit(f"step_increments.py: {args.trace}: only {len(steps)} steps, all skipped (--skip {args.skip})")
    added, launches, spans = collections.Counter(), collections.Counter(), []
    for s in kept:
        ks = sorted(steps[s], key=lambda k: k[1])  # by end: each increment is >= 0
        start = min(k[0] for k in ks)
        prev, before = start, "step start"
        for ts, end, name in ks:
            label = f"{name} after {before}" if args.after else name
            added[label] += end - prev
            launches[label] += 1
            prev, before = end, name
        spans.append(prev - start)
    n = len(kept)
    print(f"{n} steps, GPU span {sum(spans) / n / 1000:.3f} ms a step (min {min(spans) / 1000:.3f}, max {max(spans) / 1000:.3f})")
    print("| kernel | launches a step | ms a step added | µs a launch |")
    print("|---|---:|---:|---:|")
    for name, us in added.most_common():
        print(f"| {name} | {launches[name] / n:g} | {us / n / 1000:.3f} | {us / launches[name]:.2f} |")


if __name__ == "__main__":
    main()
