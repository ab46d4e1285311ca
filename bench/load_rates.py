#!/usr/bin/env python3
"""The synchronous elastic loads' own time and rate: a c1 point's step minus the resident step at
the same R, S and B (every layer on the GPU), both from `specontext bench --json`.

    python3 bench/load_rates.py --loads DIR/json/fresh_*_sync.json --resident DIR/json/fresh_resident_b*.json

For each point of the load files with layers on the host it finds the resident point (offloaded_layers
0) of the same requests, depth and budget, and prints load ms = step - resident step, the H2D bytes
the step moves, and their rate. Both sides should come from one engine build (bench/README, "The R = 1
regression": a kernel change of 0.6 ms a step at R = 8 reads as a slower link otherwise). A point
without its resident twin is listed as missing; a file that is not bench JSON, or load files without
a point on the host, stop with a message naming them.
"""
import argparse
import sys

from json_file import read_json


def points(path):
    doc = read_json(path, "load_rates.py")
    if not isinstance(doc, dict) or "points" not in doc or "budget" not in doc:
        sys.exit(f"load_rates.py: {path}: not `specontext bench --json` output of a sparse policy (no 'points' or 'budget')")
    for p in doc["points"]:
        for field in ("requests", "depth", "offloaded_layers", "median_ms", "h2d_bytes_per_step"):
            if field not in p:
                sys.exit(f"load_rates.py: {path}: a point lacks '{field}'")
        yield doc["budget"], doc.get("prefetch", ""), p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", nargs="+", required=True, help="bench JSON with layers on the host")
    ap.add_argument("--resident", nargs="+", required=True, help="bench JSON of the same points with --offload-layers 0")
    args = ap.parse_args()
    resident = {}
    for path in args.resident:
        for budget, _, p in points(path):
            if p["offloaded_layers"] == 0:
                resident[(p["requests"], p["depth"], budget)] = p["median_ms"]
    rows = []
    for path in args.loads:
        for budget, prefetch, p in points(path):
            if p["offloaded_layers"] == 0:
                continue
            key = (p["requests"], p["depth"], budget)
            head = f"| {p['requests']} | {p['depth']} | {budget} | {p['offloaded_layers']} | {prefetch} | {p['median_ms']:.3f} |"
            if key not in resident:
                rows.append(head + " missing | | | |")
                continue
            load_ms = p["median_ms"] - resident[key]
            mb = p["h2d_bytes_per_step"] / 1e6
            rate = f"{mb / load_ms:.1f}" if load_ms > 0 else "n/a"
            rows.append(head + f" {resident[key]:.3f} | {load_ms:.3f} | {mb:.1f} | {rate} |")
    if not rows:
        sys.exit(f"load_rates.py: no point of {', '.join(args.loads)} has layers on the host (offloaded_layers > 0)")
    print("| R | S | B | layers on the host | prefetch | step ms | resident ms | load ms | H2D MB/step | GB/s |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
