#!/usr/bin/env python3
"""Rows of the calibration measurements CSV (sim/calibration.hpp) from `specontext bench --json` outputs.

usage: bench_to_calibration_csv.py FILE.json [FILE.json ...] [--components LABEL ...] [--date YYYY-MM-DD] [--out CSV]

One row per point that fits: gpu, driver, cuda, date, system (full or specontext), components, model,
draft, requests, depth, budget, overlap, offloaded_layers (as measured), prefetch (async or sync),
steps, reps, median_ms, min_ms, max_ms. --components gives the ablation label of each file (once per
file, in order, '-' for none, or once for all the specontext files); without it a file's label comes from its own JSON: none for policy
full, the "components" bench was run with, else "c1" when its prefetch was synchronous. A copy-stream
file without that key needs the label: c1,c2 (a fixed --offload-layers N) and c1,c2,c3 (--offload-layers
auto) look alike in the JSON. The simulator describes the engine as bench runs it by default, so files
run with another --prefetch-group, without the CUDA graph, or with the policy's own selection (no
stated overlap) are refused; so are policies other than full and specontext.
"""
import argparse
import csv
import datetime
import json
import os
import re
import sys

COLUMNS = ["gpu", "driver", "cuda", "date", "system", "components", "model", "draft", "requests", "depth", "budget", "overlap",
           "offloaded_layers", "prefetch", "steps", "reps", "median_ms", "min_ms", "max_ms"]
LABELS = {"c1", "c1,c2", "c1,c2,c3"}
PREFETCH_GROUP = 4  # engine_system_params() in sim/calibration.cpp models bench's default


class ConversionError(Exception):
    pass


def cuda_version(v):
    """13000 -> '13.0' (the CUDA API's encoding: 1000 * major + 10 * minor)."""
    if not isinstance(v, int) or v <= 0:
        return ""
    return f"{v // 1000}.{(v % 1000) // 10}"


def stated_overlap(selection, where):
    m = re.match(r"synthetic stream, stated overlap ([0-9.eE+-]+)$", selection or "")
    if not m:
        raise ConversionError(f"{where}: 'selection' is {selection!r}: the calibration needs bench --overlap X "
                              "(a synthetic stream whose overlap the simulator is told)")
    return float(m.group(1))


def file_label(doc, given, where):
    """The ablation label of one file's points: given, else what the JSON records."""
    synchronous = str(doc.get("prefetch", "")).startswith("synchronous")
    recorded = doc.get("components") or ""
    label = given or recorded
    if not label:
        if not synchronous:
            raise ConversionError(f"{where}: copy-stream prefetch without a recorded 'components': pass --components "
                                  "c1,c2 (a fixed --offload-layers N) or c1,c2,c3 (--offload-layers auto)")
        label = "c1"
    if label not in LABELS:
        raise ConversionError(f"{where}: components {label!r}: expected one of {sorted(LABELS)}")
    if recorded and given and recorded != given:
        raise ConversionError(f"{where}: --components {given} contradicts the file's components {recorded}")
    if ("c2" in label) == synchronous:
        raise ConversionError(f"{where}: components {label} contradict its prefetch {doc.get('prefetch')!r} (c2 is the copy-stream prefetch)")
    return label


def rows(doc, where, label, date, shared_label=False):
    policy = doc.get("policy")
    if policy not in ("full", "specontext"):
        raise ConversionError(f"{where}: policy {policy!r}: the calibration covers full and specontext")
    if doc.get("cuda_graph") is False:
        raise ConversionError(f"{where}: run with --no-graph; the simulator describes the engine replaying one CUDA graph per step")
    sparse = policy == "specontext"
    if sparse and doc.get("prefetch_group", PREFETCH_GROUP) != PREFETCH_GROUP:
        raise ConversionError(f"{where}: --prefetch-group {doc.get('prefetch_group')}: the simulator models bench's default {PREFETCH_GROUP}")
    if not sparse and label and not shared_label:
        raise ConversionError(f"{where}: --components {label} given for a policy full file (give '-' for it)")
    components = file_label(doc, label, where) if sparse else ""
    overlap = stated_overlap(doc.get("selection"), where) if sparse else None
    common = {
        "gpu": doc.get("gpu", ""),
        "driver": doc.get("driver_release") or cuda_version(doc.get("driver_version")),
        "cuda": cuda_version(doc.get("cuda_runtime_version")),
        "date": date,
        "system": policy,
        "components": components,
        "model": os.path.splitext(os.path.basename(doc.get("model", "")))[0],
        "draft": doc.get("draft", "") if sparse else "",
        "budget": doc.get("budget") if sparse else "",
        "overlap": overlap if sparse else "",
        "prefetch": ("sync" if components == "c1" else "async") if sparse else "",
        "steps": doc.get("steps"),
        "reps": doc.get("reps"),
    }
    if not common["gpu"] or not common["model"]:
        raise ConversionError(f"{where}: no 'gpu' or 'model': not a specontext bench --json output")
    out = []
    for i, p in enumerate(doc.get("points", [])):
        if not p.get("fits", True):
            print(f"{where}: point {i} (R={p.get('requests')}, depth {p.get('depth')}) did not fit: {p.get('reason', '')}", file=sys.stderr)
            continue
        try:
            row = dict(common, requests=p["requests"], depth=p["depth"], offloaded_layers=p.get("offloaded_layers", 0),
                       median_ms=p["median_ms"], min_ms=p["min_ms"], max_ms=p["max_ms"])
        except KeyError as e:
            raise ConversionError(f"{where}: point {i} has no {e}") from None
        if not sparse and row["offloaded_layers"]:
            raise ConversionError(f"{where}: point {i}: policy full with offloaded layers")
        out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="specontext bench --json outputs")
    ap.add_argument("--components", action="append", default=[], help="ablation label: once per file in order, or once for all")
    ap.add_argument("--date", default=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), help="day of the measurement (default today, UTC)")
    ap.add_argument("--out", help="write the CSV here instead of stdout")
    a = ap.parse_args(argv)
    if a.components and len(a.components) not in (1, len(a.files)):
        ap.error(f"--components given {len(a.components)} times for {len(a.files)} files: give it once, or once per file")
    if not re.match(r"\d{4}-\d{2}-\d{2}$", a.date):
        ap.error(f"--date {a.date!r}: expected YYYY-MM-DD")
    # One label for all files applies to the specontext ones; '-' leaves a file's label to its JSON.
    shared = len(a.components) == 1 and len(a.files) > 1
    labels = [("" if c == "-" else c) for c in (a.components * len(a.files) if len(a.components) == 1 else a.components or [""] * len(a.files))]
    all_rows = []
    try:
        for path, label in zip(a.files, labels):
            try:
                with open(path) as f:
                    doc = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise ConversionError(f"{path}: {e}") from None
            all_rows += rows(doc, path, label, a.date, shared)
    except ConversionError as e:
        print(f"bench_to_calibration_csv.py: error: {e}", file=sys.stderr)
        return 2
    gpus = {r["gpu"] for r in all_rows}
    if len(gpus) > 1:
        print(f"bench_to_calibration_csv.py: error: the files come from several GPUs {sorted(gpus)}: one machine per CSV", file=sys.stderr)
        return 2
    if a.out and os.path.dirname(a.out):
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
    out = open(a.out, "w", newline="") if a.out else sys.stdout
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(all_rows)
    if a.out:
        out.close()
        print(f"{a.out}: {len(all_rows)} points", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
