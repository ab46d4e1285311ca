#!/usr/bin/env python3
"""The simulator's per-row floor for gathers from mapped pinned host memory (the hardware field
"gather_row_seconds_by_footprint", sim/hardware.hpp), from bench/gather_footprint's JSON lines:

    build/bench/gather_footprint > footprint.jsonl
    python3 bench/footprint_curve.py footprint.jsonl --date 2026-12-05 --machine "the H200"

Of the row sizes measured it takes the smallest (there the rows, not the bytes, bind as the buffer
grows) and prints {"value": [[footprint_bytes, seconds_per_row], ...], "source": text}, the median
gather time over the rows gathered, for the hardware file. The larger rows' rates are listed in the
source as a check: the simulator takes max(bytes / byte rate, rows x floor), which predicts them
flat where their byte time stays above the floor. A line that is not gather_footprint output stops
with a message naming the file, the line and the field.
"""

import argparse
import json
import sys

FIELDS = ("gpu", "footprint_bytes", "row_bytes", "rows", "median_ms", "gbps")


def read_points(path):
    points = []
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        sys.exit("%s: cannot read: %s" % (path, e))
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            p = json.loads(line)
        except ValueError as e:
            sys.exit("%s:%d: not a JSON line: %s" % (path, n, e))
        for field in FIELDS:
            if not isinstance(p, dict) or field not in p:
                sys.exit("%s:%d: field '%s' missing: not bench/gather_footprint output" % (path, n, field))
        points.append(p)
    if not points:
        sys.exit("%s: no points" % path)
    gpus = sorted({p["gpu"] for p in points})
    if len(gpus) > 1:
        sys.exit("%s: points from several GPUs (%s): one machine per curve" % (path, ", ".join(gpus)))
    return points


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jsonl", help="bench/gather_footprint output")
    ap.add_argument("--date", required=True, help="when it was measured")
    ap.add_argument("--machine", required=True, help="where, in words (e.g. 'the H200 of H200.md')")
    ap.add_argument("--file", help="the committed path to name in the source (default: the argument)")
    a = ap.parse_args()
    points = read_points(a.jsonl)
    smallest = min(p["row_bytes"] for p in points)
    curve = sorted((p["footprint_bytes"], p["median_ms"] * 1e-3 / p["rows"]) for p in points if p["row_bytes"] == smallest)
    if len({f for f, _ in curve}) != len(curve):
        sys.exit("%s: a footprint measured twice at %d B rows" % (a.jsonl, smallest))
    def rates(row):
        return ", ".join("%.3g GiB %.1f" % (p["footprint_bytes"] / 2**30, p["gbps"])
                         for p in sorted(points, key=lambda p: p["footprint_bytes"]) if p["row_bytes"] == row)
    others = sorted({p["row_bytes"] for p in points} - {smallest})
    source = ("our measurement: bench/gather_footprint on %s (%s, %s), %s: the engine's elastic gather kernel alone "
              "reading %d random rows of %d B from a mapped pinned buffer of the given size, median of the repetitions "
              "over the rows. GB/s at %d B: %s" % (a.machine, points[0]["gpu"], a.date, a.file or a.jsonl, points[0]["rows"],
                                                  smallest, smallest, rates(smallest)))
    for row in others:
        source += "; at %d B: %s" % (row, rates(row))
    json.dump({"value": [[f, float("%.4g" % s)] for f, s in curve], "source": source}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
