#!/usr/bin/env python3
"""An A/B table of `specontext bench --json` runs made in interleaved rounds (bench/interleaved_ab.sh):

    python3 bench/ab_table.py DIR off,chain

reads DIR/bench_<variant>_<round>.json for each variant (every round found) and prints, per (R, depth),
each variant's median over the rounds of the round's median ms/step, the min-max over every repetition
of every round, the change against the first variant and the share of the HBM roofline (bench's
roofline_ms over the median). Interleaving the rounds spreads clock and thermal drift over all
variants alike; the table says how many rounds each cell has. A file that is not bench output, or a
variant without files, stops with a message naming it.
"""

import argparse
import glob
import os
import re
import sys

from bench_rounds import cell, read_round


def read_rounds(directory, variant):
    paths = sorted(glob.glob(os.path.join(directory, "bench_%s_*.json" % variant)))
    paths = [p for p in paths if re.fullmatch(r"bench_%s_\d+\.json" % re.escape(variant), os.path.basename(p))]
    if not paths:
        sys.exit("%s: no bench_%s_<round>.json" % (directory, variant))
    return [read_round(path, "ab_table.py")[0] for path in paths]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory")
    ap.add_argument("variants", help="comma-separated; the first is the baseline")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if len(variants) < 2:
        sys.exit("variants: need at least two, comma-separated (got '%s')" % args.variants)
    data = {v: read_rounds(args.directory, v) for v in variants}
    keys = sorted({k for rounds in data.values() for r in rounds for k in r})
    head = ["R", "depth"] + ["%s ms (min–max)" % v for v in variants] + ["vs %s: %s" % (variants[0], v) for v in variants[1:]]
    head += ["%% of roofline (%s)" % variants[-1], "rounds"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for key in keys:
        cells = [cell(data[v], key) for v in variants]
        row = [str(key[0]), "{:,}".format(key[1])]
        row += ["%.3f (%.3f–%.3f)" % (c["median"], c["min"], c["max"]) if c else "—" for c in cells]
        base = cells[0]
        row += ["%+.1f%%" % (100.0 * (c["median"] - base["median"]) / base["median"]) if c and base else "—" for c in cells[1:]]
        last = cells[-1]
        row.append("%.1f%%" % (100.0 * last["roofline_ms"] / last["median"]) if last else "—")
        row.append("/".join(str(c["rounds"]) if c else "0" for c in cells))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
